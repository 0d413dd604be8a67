"""Token guard cost, and vLLM CPU serving throughput with and without the llama-operator plugin.

    "$(bash images/vllm/scripts/engine-venv.sh)/bin/python" benchmarks/plugin_guard.py [--requests N] [--json PATH]

1. Guard cost per request: the guard's check (`check_prompt`, what the patched input processor adds to each
   request) timed call by call on prompts of several lengths; p50/p99 in microseconds.
2. Throughput: the same tiny random Llama-4 (tests/engine/tiny_llama4.py) served by the real OpenAI server of vLLM's
   CPU build, once without the plugin and once with it, the same closed-loop workload against each (concurrent
   clients, token-id prompts, fixed output length); generated tokens/s and the ratio with/without, in one run.
   Runs in the engine venv (vLLM CPU); the server binds 127.0.0.1.
"""

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.engine.server import Server  # noqa: E402
from tests.engine.tiny_llama4 import MAX_MODEL_LEN, VOCAB_SIZE, write_tiny_llama4  # noqa: E402

from benchmarks import report  # noqa: E402
from llamaops_vllm.patches.token_guard import check_prompt  # noqa: E402

LLAMA4_VOCAB = 202_048


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def guard_cost(lengths: list[int], calls: int) -> dict[int, tuple[float, float]]:
    rng = random.Random(0)
    out: dict[int, tuple[float, float]] = {}
    for n in lengths:
        prompt = [rng.randrange(LLAMA4_VOCAB) for _ in range(n)]
        samples: list[float] = []
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            check_prompt(prompt, LLAMA4_VOCAB, 1_000_000)
            samples.append((time.perf_counter_ns() - t0) / 1000)
        out[n] = (percentile(samples, 0.5), percentile(samples, 0.99))
    return out


def workload(
    server: Server, requests: int, clients: int, prompt_len: int, max_tokens: int
) -> tuple[float, list[float]]:
    """Closed loop: `clients` threads each send requests back to back. Returns (generated tokens/s, latencies)."""
    rng = random.Random(1)
    prompts = [[rng.randrange(3, VOCAB_SIZE) for _ in range(prompt_len)] for _ in range(requests)]
    latencies: list[float] = []
    tokens = [0]
    lock = threading.Lock()
    next_index = [0]

    def client() -> None:
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= requests:
                return
            t0 = time.perf_counter()
            status, body = server.complete(prompts[i], max_tokens=max_tokens, ignore_eos=True)
            elapsed = time.perf_counter() - t0
            if status != 200:
                raise RuntimeError(f"request failed: {status} {body}")
            with lock:
                latencies.append(elapsed)
                tokens[0] += body["usage"]["completion_tokens"]

    for _ in range(4):  # warm-up, not timed
        server.complete(prompts[0], max_tokens=max_tokens, ignore_eos=True)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tokens[0] / (time.perf_counter() - t0), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--guard-calls", type=int, default=20_000)
    parser.add_argument("--json", type=Path, help="also write the figures here (benchmarks/report.py)")
    args = parser.parse_args()
    assert args.prompt_len + args.max_tokens <= MAX_MODEL_LEN

    print("guard cost per request (check_prompt on Llama-4 vocab ids, one core):")
    costs = guard_cost(sorted({16, args.prompt_len, 512, 8192, 131_072}), args.guard_calls // 10 or 1)
    for n, (p50, p99) in costs.items():
        print(f"  prompt {n:>7,} tokens: p50 {p50:8.1f} us  p99 {p99:8.1f} us")

    # Both servers stay up and take turns (ABBA order), so drift in background load hits both alike; the ratio is
    # the median of the per-round ratios.
    rounds: list[dict[str, tuple[float, list[float]]]] = []
    with tempfile.TemporaryDirectory(prefix="plugin-guard-") as tmp:
        model = write_tiny_llama4(Path(tmp) / "model")
        servers: dict[str, Server] = {}
        try:
            for label, plugin in (("without plugin", False), ("with plugin", True)):
                servers[label] = Server(
                    model,
                    Path(tmp) / f"{plugin}.log",
                    plugin=plugin,
                    env={"LLAMAOPS_TERMINATION_MESSAGE_PATH": str(Path(tmp) / f"{plugin}.term")},
                )
                assert ("llamaops plugin" in servers[label].log_text()) is plugin
            for r in range(args.rounds):
                order = list(servers) if r % 2 == 0 else list(reversed(servers))
                rounds.append(
                    {
                        label: workload(servers[label], args.requests, args.clients, args.prompt_len, args.max_tokens)
                        for label in order
                    }
                )
        finally:
            for server in servers.values():
                server.stop()

    print(
        f"vLLM CPU server, tiny Llama-4, {args.rounds} rounds x {args.requests} requests x {args.prompt_len} prompt + "
        f"{args.max_tokens} output tokens, {args.clients} concurrent clients:"
    )
    for label in ("without plugin", "with plugin"):
        tps = [rnd[label][0] for rnd in rounds]
        lat = [x for rnd in rounds for x in rnd[label][1]]
        print(
            f"  {label:<15} {statistics.median(tps):8.1f} generated tokens/s (median of rounds: "
            f"{', '.join(f'{t:.0f}' for t in tps)})  request p50 {statistics.median(lat) * 1000:6.1f} ms"
            f"  p99 {percentile(lat, 0.99) * 1000:6.1f} ms"
        )
    with_p50 = statistics.median([x for rnd in rounds for x in rnd["with plugin"][1]])
    print(
        f"  guard share of a request: {costs[args.prompt_len][0]:.1f} us of {with_p50 * 1000:.1f} ms p50 "
        f"= {costs[args.prompt_len][0] / (with_p50 * 1e6):.5%}"
    )
    ratios = [rnd["with plugin"][0] / rnd["without plugin"][0] for rnd in rounds]
    print(
        f"  tokens/s ratio with/without plugin: {statistics.median(ratios):.3f} "
        f"(per round: {', '.join(f'{x:.3f}' for x in ratios)})"
    )
    median_tps = {label: statistics.median([rnd[label][0] for rnd in rounds]) for label in rounds[0]}
    longest = max(costs)
    report.write(
        args.json,
        "plugin_guard",
        [
            report.Figure(
                f"guard check p50, {args.prompt_len}-token prompt",
                round(costs[args.prompt_len][0], 1),
                "us",
                baseline=f"a whole request p50 with the plugin {with_p50 * 1000:.1f} ms",
            ),
            report.Figure(
                f"guard check p99, {args.prompt_len}-token prompt", round(costs[args.prompt_len][1], 1), "us"
            ),
            report.Figure(f"guard check p50, {longest:,}-token prompt", round(costs[longest][0], 1), "us"),
            report.Figure(
                "generated tokens/s with the plugin",
                round(median_tps["with plugin"], 1),
                "tokens/s",
                baseline=f"without the plugin {median_tps['without plugin']:.1f} tokens/s",
            ),
            report.Figure(
                "tokens/s ratio with/without the plugin (median of rounds)",
                round(statistics.median(ratios), 3),
                "x",
                baseline=f"per-round ratios {min(ratios):.3f}-{max(ratios):.3f}, the same run",
            ),
        ],
        rounds=args.rounds,
        requests=args.requests,
        clients=args.clients,
        prompt_len=args.prompt_len,
        max_tokens=args.max_tokens,
        guard_us={str(n): [round(p50, 2), round(p99, 2)] for n, (p50, p99) in costs.items()},
    )


if __name__ == "__main__":
    main()
