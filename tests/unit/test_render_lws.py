"""Multi-node replicas: a LeaderWorkerSet with vLLM's Ray launch, a leader-only Service, and group restarts."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_operator.api import LlamaDeployment
from llama_operator.planning import validate
from llama_operator.render import Owner, children
from llama_operator.render.children import workload_config_hash
from llama_operator.render.lws import LEADER_SCRIPT, WORKER_INDEX_LABEL, WORKER_SCRIPT, group_restarts

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MULTINODE = "llama4-maverick-bf16-h100-multinode.yaml"
OWNER = Owner("maverick", "serving", "uid-7", 4)


def render(name: str = MULTINODE, **spec_changes: Any) -> tuple[dict[str, dict[str, Any]], Any]:
    document = yaml.safe_load((EXAMPLES / name).read_text())
    for key, value in spec_changes.items():
        document["spec"][key] = {**document["spec"].get(key, {}), **value} if isinstance(value, dict) else value
    result = validate(document)
    assert result.valid, result.errors
    spec = LlamaDeployment.model_validate(document).spec
    items = children(OWNER, spec, result.effective, result.plan, service_monitors=False)
    return {item["kind"]: item for item in items}, result


def templates(lws: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    group = lws["spec"]["leaderWorkerTemplate"]
    return group["leaderTemplate"], group["workerTemplate"]


def test_a_replica_beyond_one_node_becomes_a_leader_worker_set():
    items, result = render()
    assert list(items) == ["Service", "LeaderWorkerSet", "PodDisruptionBudget"]
    assert result.effective.nodes_per_replica == 2
    lws = items["LeaderWorkerSet"]
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    assert lws["metadata"]["name"] == "maverick"
    assert lws["metadata"]["ownerReferences"][0]["uid"] == "uid-7"
    assert lws["metadata"]["labels"]["llamaops.dev/deployment"] == "maverick"


def test_one_node_replicas_stay_a_deployment():
    items, result = render("llama4-scout.yaml")
    assert result.effective.nodes_per_replica == 1
    assert list(items) == ["Service", "Deployment", "PodDisruptionBudget"]
    assert WORKER_INDEX_LABEL not in items["Service"]["spec"]["selector"]


def test_group_size_restart_and_startup_policy_and_what_the_lws_webhook_would_default():
    items, _ = render(replicas=3, resources={"nodeCount": 6})
    spec = items["LeaderWorkerSet"]["spec"]
    assert spec["replicas"] == 3
    group = spec["leaderWorkerTemplate"]
    assert group["size"] == 2
    assert group["restartPolicy"] == "RecreateGroupOnPodRestart"
    # The leader is Ready only once the workers joined its Ray cluster: LeaderReady would never start them.
    assert spec["startupPolicy"] == "LeaderCreated"
    assert spec["rolloutStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdateConfiguration": {"partition": 0, "maxUnavailable": 1, "maxSurge": 0},
    }
    assert spec["networkConfig"] == {"subdomainPolicy": "UniquePerReplica"}


def test_each_pod_takes_one_whole_node_of_the_product():
    items, result = render()
    for template in templates(items["LeaderWorkerSet"]):
        pod = template["spec"]
        (container,) = pod["containers"]
        assert container["resources"] == {"limits": {"nvidia.com/gpu": "8"}, "requests": {"nvidia.com/gpu": "8"}}
        assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert container["image"] == result.effective.image
        env = {e["name"]: e for e in container["env"]}
        assert env["VLLM_HOST_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_the_leader_serves_the_planned_args_over_ray_and_workers_join_it():
    items, result = render()
    leader, worker = (t["spec"]["containers"][0] for t in templates(items["LeaderWorkerSet"]))
    assert leader["command"][:3] == ["/bin/sh", "-c", LEADER_SCRIPT]
    assert leader["args"] == result.effective.args
    flags = dict(zip(leader["args"][::2], leader["args"][1::2], strict=False))
    assert flags["--tensor-parallel-size"] == "8"
    assert flags["--pipeline-parallel-size"] == "2"
    assert "--distributed-executor-backend ray" in LEADER_SCRIPT
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(leader)
    assert {p["name"]: p["containerPort"] for p in leader["ports"]} == {"http": 8000, "ray": 6379}
    assert worker["command"][:3] == ["/bin/sh", "-c", WORKER_SCRIPT]
    # Workers serve no HTTP: no probes, ports or vLLM args.
    assert not {"args", "ports", "startupProbe", "readinessProbe", "livenessProbe"} & set(worker)


def test_only_leaders_are_behind_the_service_and_only_they_are_scraped():
    items, _ = render()
    selector = items["Service"]["spec"]["selector"]
    assert selector[WORKER_INDEX_LABEL] == "0"
    assert selector["llamaops.dev/deployment"] == "maverick"
    leader, worker = templates(items["LeaderWorkerSet"])
    assert leader["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert "prometheus.io/scrape" not in worker["metadata"]["annotations"]
    # Both carry the deployment's selector labels: the PDB and crash detection see every pod of the group.
    pdb_selector = items["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
    for template in (leader, worker):
        assert pdb_selector.items() <= template["metadata"]["labels"].items()
    assert worker["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"


def test_a_template_change_changes_the_config_hash_of_both_roles():
    before, _ = render()
    after, _ = render(engine={"maxModelLen": 131072})
    hashes = [
        {t["metadata"]["annotations"]["llamaops.dev/config-hash"] for t in templates(items["LeaderWorkerSet"])}
        for items in (before, after)
    ]
    assert all(len(h) == 1 for h in hashes)
    assert hashes[0] != hashes[1]


def _stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake_ray(tmp_path: Path) -> Path:
    """`ray` and `python3` stand-ins that record how the launch scripts call them (the scripts are the unit)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.jsonl"
    record = f'printf "%s\\n" "$(printf "%s\\037" "$0" "$@")" >> {log}\n'
    _stub(bin_dir, "ray", record)
    # The leader asks Python how many Ray nodes are alive; vLLM's server is `python3 -m ...`.
    _stub(bin_dir, "python3", record + 'if [ "$1" = "-c" ]; then echo "$ALIVE_NODES"; fi\n')
    return tmp_path


def _calls(root: Path) -> list[list[str]]:
    lines = (root / "calls.jsonl").read_text().splitlines()
    return [[Path(line.split("\037")[0]).name, *line.split("\037")[1:-1]] for line in lines]


def _run(script: str, root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": f"{root / 'bin'}:{os.environ['PATH']}", "RAY_PORT": "6379", "VLLM_HOST_IP": "10.0.0.5", **env}
    return subprocess.run(
        ["/bin/sh", "-c", script, "test", *args], env=environ, capture_output=True, text=True, timeout=30, check=False
    )


def test_leader_script_starts_the_head_then_execs_vllm_with_the_args_verbatim(fake_ray: Path):
    args = ["--model", "meta-llama/x", "--served-model-name", "a name with spaces", "--max-model-len", "8192"]
    done = _run(LEADER_SCRIPT, fake_ray, *args, LWS_GROUP_SIZE="2", ALIVE_NODES="2")
    assert done.returncode == 0, done.stderr
    calls = _calls(fake_ray)
    assert calls[0] == ["ray", "start", "--head", "--port=6379", "--node-ip-address=10.0.0.5", "--disable-usage-stats"]
    assert calls[1][:2] == ["python3", "-c"]
    # Each argument arrives as one argument, spaces and all; the Ray backend is the launch's own.
    assert calls[-1] == [
        "python3",
        "-m",
        "vllm.entrypoints.openai.api_server",
        *args,
        "--distributed-executor-backend",
        "ray",
    ]


def test_worker_script_joins_the_leaders_ray_head(fake_ray: Path):
    done = _run(WORKER_SCRIPT, fake_ray, LWS_LEADER_ADDRESS="maverick-0.maverick-0.serving")
    assert done.returncode == 0, done.stderr
    health, join = _calls(fake_ray)
    assert health == ["ray", "health-check", "--address=maverick-0.maverick-0.serving:6379"]
    assert join == [
        "ray",
        "start",
        "--address=maverick-0.maverick-0.serving:6379",
        "--node-ip-address=10.0.0.5",
        "--disable-usage-stats",
        "--block",
    ]


def test_a_group_restart_counts_once_however_many_pods_went_down():
    events = [
        # core/v1, aggregated by the event recorder: one group recreated three times.
        {
            "reason": "RecreateGroup",
            "count": 3,
            "firstTimestamp": "2026-11-22T10:00:00Z",
            "lastTimestamp": "2026-11-22T10:04:00Z",
        },
        # events.k8s.io/v1 with a series, and a single one.
        {"reason": "RecreateGroup", "eventTime": "2026-11-22T09:59:00.123456Z", "series": {"count": 2}},
        {"reason": "RecreateGroup", "eventTime": "2026-11-22T10:06:00.000001Z"},
        # Not restarts.
        {"reason": "GroupsProgressing", "count": 9, "lastTimestamp": "2026-11-22T11:00:00Z"},
        {"reason": "CreatingRevision"},
    ]
    restarts = group_restarts(events)
    assert restarts.count == 6
    assert restarts.first is not None
    assert restarts.first.isoformat() == "2026-11-22T09:59:00.123456+00:00"
    assert restarts.last is not None
    assert restarts.last.isoformat() == "2026-11-22T10:06:00.000001+00:00"
    assert group_restarts([]).count == 0
    assert group_restarts([]).first is None


def test_the_pods_config_hash_is_found_in_either_workload_kind():
    multi, _ = render()
    single, _ = render("llama4-scout.yaml")
    leader, worker = templates(multi["LeaderWorkerSet"])
    assert workload_config_hash(multi.values()) == leader["metadata"]["annotations"]["llamaops.dev/config-hash"]
    assert workload_config_hash(multi.values()) == worker["metadata"]["annotations"]["llamaops.dev/config-hash"]
    deployment = single["Deployment"]["spec"]["template"]
    assert workload_config_hash(single.values()) == deployment["metadata"]["annotations"]["llamaops.dev/config-hash"]
    assert workload_config_hash([multi["Service"]]) is None
