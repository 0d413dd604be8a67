"""Run every benchmark, record the run under benchmarks/results/<date-time>/ and rewrite benchmarks/README.md.

    .venv/bin/python benchmarks/run_all.py [--only NAME ...] [--quick] [--render]

Each benchmark runs as a subprocess with ``--json`` into the run's directory, its output streamed here (prefixed
with its name and elapsed time) and kept in a log beside its JSON. The sandbox is started first when a selected
benchmark needs a running one, and stopped at the end only if this command started it. A failing benchmark is
recorded in run.json and the next one runs; the exit status is then 1. --quick: fewer runs and requests, scale at
N = 100 only, for trying the command out; such runs are marked quick and never stand in for a full run in the
README. --render only rewrites the README from the runs already recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import readme  # noqa: E402 - needs the repository root on sys.path

BENCHMARKS_DIR = ROOT / "benchmarks"
RESULTS = BENCHMARKS_DIR / "results"
TEMPLATE = BENCHMARKS_DIR / "README.template.md"
README = BENCHMARKS_DIR / "README.md"
ENGINE_VENV = ROOT / "images" / "vllm" / "scripts" / "engine-venv.sh"
QUIET_S = 60.0  # a line saying a silent benchmark still runs, this often


@dataclasses.dataclass(frozen=True)
class Invocation:
    suffix: str  # distinguishes several invocations of one benchmark: "scale-100.json"
    args: tuple[str, ...]
    quick_args: tuple[str, ...] | None  # None: left out of a --quick run
    timeout_s: float


@dataclasses.dataclass(frozen=True)
class Benchmark:
    name: str  # the script is benchmarks/<name>.py; its section in the template is {{history <name>}}
    invocations: tuple[Invocation, ...]
    needs_sandbox: bool = False  # the shared sandbox must be running (scale and sandbox_up run their own)
    engine: bool = False  # runs under the engine venv's python (vLLM CPU), not this one
    real_node: bool = False  # needs the sandbox's real node and the images built for it (started here if not)

    @property
    def script(self) -> Path:
        return BENCHMARKS_DIR / f"{self.name}.py"


BENCHMARKS = (
    Benchmark("validate_throughput", (Invocation("", (), ("--seconds", "1"), 300),)),
    # Issue #21: `llama-operator validate` end to end on 5,000 manifests, against parsing them with libyaml alone.
    Benchmark("validate_cli", (Invocation("", (), ("--runs", "1", "--manifests", "1000"), 900),)),
    Benchmark("sandbox_up", (Invocation("", ("--runs", "3", "--also-nodes", "1000"), ("--runs", "1"), 900),)),
    Benchmark(
        "admission_latency", (Invocation("", (), ("--requests", "40", "--blocks", "4"), 1800),), needs_sandbox=True
    ),
    Benchmark("crashloop_times", (Invocation("", (), ("--runs", "2"), 2400),), needs_sandbox=True),
    # Issue #22: a 4-replica progressive rollout to a crashing vLLM version, crash to halted rollout.
    Benchmark("rollout_halt", (Invocation("", (), ("--runs", "1"), 1800),), needs_sandbox=True),
    # Issue #22: real load on a real vLLM engine, KEDA and the HPA scaling out; reaction vs KEDA's polling interval.
    Benchmark("autoscale_reaction", (Invocation("", (), ("--runs", "1"), 1800),), needs_sandbox=True),
    Benchmark(
        "plugin_guard",
        (Invocation("", (), ("--rounds", "2", "--requests", "8", "--guard-calls", "2000"), 3600),),
        engine=True,
    ),
    Benchmark(
        "scale",
        (
            Invocation("100", ("--n", "100", "--nodes", "1000"), ("--n", "100", "--nodes", "1000"), 3600),
            Invocation("1000", ("--n", "1000", "--nodes", "1000"), None, 7200),
        ),
    ),
    # Issue #21: one crash loop among 1,000 healthy deployments; Prometheus queries, idle CPU and RSS as N grows.
    Benchmark(
        "fleet",
        (
            Invocation(
                "",
                ("--sizes", "10", "100", "1000", "--nodes", "1000"),
                ("--sizes", "10", "50", "--nodes", "1000", "--trials", "3", "--idle", "30"),
                2400,
            ),
        ),
    ),
    # Issue #12's failover time (two peered operators, the active one killed).
    Benchmark("failover", (Invocation("", (), ("--runs", "2"), 1800),), needs_sandbox=True),
    # Issue #17: time to Available and crash-to-recovered on a real engine, against its own cold start.
    Benchmark(
        "realnode", (Invocation("", ("--runs", "3"), ("--runs", "1"), 3600),), needs_sandbox=True, real_node=True
    ),
)


def elapsed_text(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{seconds:.1f}s"


def machine() -> dict[str, Any]:
    """CPU model, cores, memory and the load average now."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    memory_kib = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0)
    return {
        "cpu": cpu or "unknown CPU",
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "load_at_start": round(os.getloadavg()[0], 2),
    }


def git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + (" with uncommitted changes" if dirty else "")


def stream(name: str, argv: list[str], log: Path, timeout_s: float, env: dict[str, str] | None = None) -> str:
    """Run ``argv``, its output prefixed and echoed and kept in ``log``. Returns "" or why it failed."""
    began = time.monotonic()
    lines: queue.Queue[str | None] = queue.Queue()
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,  # its own process group, so a timeout stops its children too
        )
        assert process.stdout is not None
        pipe = process.stdout

        def read() -> None:
            for line in pipe:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        last = time.monotonic()
        while True:
            try:
                line = lines.get(timeout=5)
            except queue.Empty:
                now = time.monotonic()
                if now - began > timeout_s:
                    stop(process)
                    return f"timed out after {elapsed_text(timeout_s)}"
                if now - last >= QUIET_S:
                    print(f"[{name} {elapsed_text(now - began)}] ... still running", flush=True)
                    last = now
                continue
            if line is None:
                break
            out.write(line)
            out.flush()
            print(f"[{name} {elapsed_text(time.monotonic() - began)}] {line}", end="", flush=True)
            last = time.monotonic()
        rc = process.wait()
    return f"exit {rc}" if rc else ""


def stop(process: subprocess.Popen[str]) -> None:
    """SIGINT first (the benchmarks' finally blocks stop their operators and private sandboxes), then SIGKILL
    for what is left of its process group (children that ignore SIGINT, or all of it after the grace time)."""
    for sig, grace in ((signal.SIGINT, 120), (signal.SIGKILL, 30)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)


def sandbox_status() -> int:
    """0: running and healthy; 1: partly running; 3: not running (`llamaops-sandbox status`)."""
    argv = [sys.executable, "-m", "llamaops_sandbox", "status"]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, check=False).returncode


def sandbox(command: str, *flags: str) -> str:
    argv = [sys.executable, "-m", "llamaops_sandbox", command, *flags]
    return stream(f"sandbox {command}", argv, Path(os.devnull), 900)


def real_node() -> str:
    """The sandbox's real node (added to a running sandbox) and its images in its registry; "" or why not."""
    error = sandbox("up", "--real-node")
    if error:
        return error
    env = subprocess.run(
        [sys.executable, "-m", "llamaops_sandbox", "env"], capture_output=True, text=True, check=False
    ).stdout
    registry = next((line.split("=", 1)[1] for line in env.splitlines() if "LLAMAOPS_REGISTRY=" in line), "")
    argv = ["bash", str(ROOT / "scripts" / "images-build.sh"), "--registry", registry]
    return stream("images-build", argv, Path(os.devnull), 3600)


def engine_python() -> tuple[str, str]:
    """The engine venv's python (built once by engine-venv.sh), or "" and why not."""
    result = subprocess.run(["bash", str(ENGINE_VENV)], cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return "", f"engine venv: exit {result.returncode}: {result.stderr.strip()[-300:]}"
    return str(Path(result.stdout.strip().splitlines()[-1]) / "bin" / "python"), ""


class Recorder:
    """run.json of one run, rewritten after every invocation so an interrupted run still says what it did."""

    def __init__(self, directory: Path, quick: bool, command: str) -> None:
        self.directory = directory
        self.document: dict[str, Any] = {
            "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "quick": quick,
            "hand_recorded": False,
            "command": command,
            "git": git_revision(),
            "machine": machine(),
            "sandbox": "not needed",
            "invocations": [],
        }
        self.save()

    def save(self) -> None:
        (self.directory / readme.RUN_FILE).write_text(json.dumps(self.document, indent=2) + "\n", encoding="utf-8")

    def invocation(self, record: dict[str, Any]) -> None:
        self.document["invocations"].append(record)
        self.save()


def run_one(benchmark: Benchmark, invocation: Invocation, args: tuple[str, ...], run: Recorder, python: str) -> bool:
    stem = f"{benchmark.name}-{invocation.suffix}" if invocation.suffix else benchmark.name
    result, log = run.directory / f"{stem}.json", run.directory / f"{stem}.log"
    argv = [python, str(benchmark.script.relative_to(ROOT)), *args, "--json", str(result.relative_to(ROOT))]
    load = round(os.getloadavg()[0], 2)
    print(f"== {stem}: {' '.join(argv[1:])} (load {load})", flush=True)
    began = time.monotonic()
    error = stream(stem, argv, log, invocation.timeout_s)
    elapsed = round(time.monotonic() - began, 1)
    if not error and not result.exists():
        error = "no figures written"
    if result.exists():
        document = json.loads(result.read_text(encoding="utf-8"))
        document["context"].update({"quick": run.document["quick"], "load_at_start": load, "elapsed_s": elapsed})
        result.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    status = f"FAILED ({error})" if error else "ok"
    print(f"== {stem}: {status} after {elapsed_text(elapsed)}", flush=True)
    run.invocation(
        {
            "benchmark": benchmark.name,
            "argv": argv[1:],
            "json": result.name if result.exists() else "",
            "log": log.name,
            "load_at_start": load,
            "elapsed_s": elapsed,
            "error": error,
        }
    )
    return not error


def render(results: Path = RESULTS, template: Path = TEMPLATE, out: Path = README) -> None:
    out.write_text(readme.render(template.read_text(encoding="utf-8"), readme.load_runs(results)), encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHMARKS], metavar="NAME", help="these only")
    parser.add_argument("--quick", action="store_true", help="fewer runs and requests; marked quick")
    parser.add_argument("--render", action="store_true", help="only rewrite the README from benchmarks/results/")
    args = parser.parse_args()
    if args.render:
        render()
        return 0

    selected = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    directory = RESULTS / (stamp + ("-quick" if args.quick else ""))
    directory.mkdir(parents=True)
    run = Recorder(directory, args.quick, " ".join(["benchmarks/run_all.py", *sys.argv[1:]]))
    print(f"results: {directory.relative_to(ROOT)}; machine: {readme.describe_machine(run.document['machine'])}")

    ok = True
    started_sandbox = False
    began = time.monotonic()
    try:
        if any(b.needs_sandbox for b in selected):
            status = sandbox_status()
            run.document["sandbox"] = "already running" if status == 0 else "started by this run"
            if status != 0:
                error = sandbox("up")
                if error:
                    run.document["sandbox"] = f"`sandbox up` failed: {error}"
                started_sandbox = status == 3  # a partly running one is repaired by `up` and left running
            if any(b.real_node for b in selected) and (error := real_node()):
                run.document["sandbox"] = f"real node failed: {error}"
            run.save()
        for benchmark in selected:
            python = sys.executable
            if benchmark.engine:
                python, error = engine_python()
                if error:
                    ok = False
                    run.invocation({"benchmark": benchmark.name, "error": error})
                    continue
            for invocation in benchmark.invocations:
                chosen = invocation.quick_args if args.quick else invocation.args
                if chosen is None:
                    print(f"== {benchmark.name} {' '.join(invocation.args)}: left out of a --quick run")
                    continue
                ok = run_one(benchmark, invocation, chosen, run, python) and ok
    finally:
        if started_sandbox:
            sandbox("down")
        run.document["finished"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        run.save()
        render()
    failed = [i["benchmark"] for i in run.document["invocations"] if i.get("error")]
    print(
        f"done in {elapsed_text(time.monotonic() - began)}: "
        + (f"FAILED: {', '.join(failed)}" if failed else "every benchmark ran")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
