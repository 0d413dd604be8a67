"""The LeaderWorkerSet of a multi-node LlamaDeployment: one group of pods per replica, one pod per node.

The launch is vLLM's Ray recipe for multi-node serving (docs: serving/parallelism_scaling, "Ray is the default
runtime for multi-node"; deployment/frameworks/lws): the leader starts a Ray head, waits until every pod of its
group has joined, then runs the OpenAI server with ``--distributed-executor-backend ray``, which places the
TP x PP workers over the group's GPUs; each worker pod joins the head and blocks. Ray works with every vLLM release
the operator serves (vLLM's own ``--nnodes`` multiprocessing launch only exists in recent ones).

Group semantics: ``RecreateGroupOnPodRestart`` (one rank dying leaves the others hung in collectives, so the whole
group restarts together) and ``startupPolicy: LeaderCreated`` (workers start with the leader: the leader only turns
Ready once the workers have joined, so ``LeaderReady`` would never start them). Fields the LWS webhook would
default are set here, so the stored object is what we rendered.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llama_operator.api import EffectiveConfig, LlamaDeploymentSpec, MemoryPlan
from llama_operator.render.deployment import GPU_RESOURCE, config_hash, pod_spec
from llama_operator.render.labels import CONFIG_HASH_ANNOTATION, OPENAI_PORT, Owner, common_labels, metadata
from llama_operator.render.service import service

API_VERSION = "leaderworkerset.x-k8s.io/v1"
KIND = "LeaderWorkerSet"
# LWS labels every pod of a group with its index in the group; the leader's is 0.
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
RAY_PORT = 6379
# The reason of the Event LWS records each time it recreates a group (its pod controller, on any restart).
RECREATE_GROUP_REASON = "RecreateGroup"

# $LWS_GROUP_SIZE and $LWS_LEADER_ADDRESS are injected by LWS's pod webhook; the vLLM arguments arrive as "$@".
LEADER_SCRIPT = """\
set -eu
ray start --head --port="$RAY_PORT" --node-ip-address="$VLLM_HOST_IP" --disable-usage-stats
until [ "$(python3 -c 'import ray; ray.init(address="auto", logging_level="ERROR"); \
print(sum(1 for n in ray.nodes() if n["Alive"]))' 2>/dev/null || echo 0)" -ge "$LWS_GROUP_SIZE" ]; do
  echo "llamaops: waiting for the $LWS_GROUP_SIZE pods of the group to join the Ray cluster"
  sleep 5
done
exec python3 -m vllm.entrypoints.openai.api_server "$@" --distributed-executor-backend ray
"""
WORKER_SCRIPT = """\
set -eu
until ray health-check --address="$LWS_LEADER_ADDRESS:$RAY_PORT" >/dev/null 2>&1; do
  echo "llamaops: waiting for the Ray head at $LWS_LEADER_ADDRESS"
  sleep 5
done
exec ray start --address="$LWS_LEADER_ADDRESS:$RAY_PORT" --node-ip-address="$VLLM_HOST_IP" --disable-usage-stats --block
"""


def _launch_env() -> list[dict[str, Any]]:
    # vLLM and Ray must agree on each node's address: the pod IP (vLLM's multi-node docs, VLLM_HOST_IP).
    return [
        {"name": "VLLM_HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "RAY_PORT", "value": str(RAY_PORT)},
    ]


def _pods(
    spec: LlamaDeploymentSpec, effective: EffectiveConfig, plan: MemoryPlan | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The leader's and a worker's pod spec: the single-node pod with one node's GPUs and the Ray launch."""
    gpus = str(effective.gpus_per_replica // effective.nodes_per_replica)
    leader = copy.deepcopy(pod_spec(spec, effective, plan))
    container = leader["containers"][0]
    container["resources"] = {"limits": {GPU_RESOURCE: gpus}, "requests": {GPU_RESOURCE: gpus}}
    container["env"] = [*container["env"], *_launch_env()]
    container["ports"] = [*container["ports"], {"name": "ray", "containerPort": RAY_PORT, "protocol": "TCP"}]
    container["command"] = ["/bin/sh", "-c", LEADER_SCRIPT, "vllm-leader"]
    worker = copy.deepcopy(leader)
    container = worker["containers"][0]
    # Workers serve no HTTP: vLLM's probes live on the leader. A worker that dies restarts the group.
    for key in ("args", "ports", "startupProbe", "readinessProbe", "livenessProbe"):
        container.pop(key, None)
    container["command"] = ["/bin/sh", "-c", WORKER_SCRIPT, "vllm-worker"]
    return leader, worker


def leader_worker_set(
    owner: Owner, spec: LlamaDeploymentSpec, effective: EffectiveConfig, plan: MemoryPlan | None
) -> dict[str, Any]:
    leader, worker = _pods(spec, effective, plan)
    base = dict(spec.pod_metadata.annotations)
    leader_annotations = dict(base)
    if spec.monitoring.enabled:
        leader_annotations.update(
            {"prometheus.io/scrape": "true", "prometheus.io/port": str(OPENAI_PORT), "prometheus.io/path": "/metrics"}
        )
    digest = config_hash({"leader": leader, "worker": worker}, leader_annotations)
    labels = {**spec.pod_metadata.labels, **common_labels(owner.name)}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata(owner),
        "spec": {
            "replicas": spec.replicas,
            "startupPolicy": "LeaderCreated",
            # One headless Service per group, named after its leader pod: a shared one would be named like the
            # LlamaDeployment's own Service.
            "networkConfig": {"subdomainPolicy": "UniquePerReplica"},
            # A group holds whole nodes: replace one group at a time without asking for spare nodes.
            "rolloutStrategy": {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": {"partition": 0, "maxUnavailable": 1, "maxSurge": 0},
            },
            "leaderWorkerTemplate": {
                "size": effective.nodes_per_replica,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": {
                    "metadata": {
                        "labels": labels,
                        "annotations": {**leader_annotations, CONFIG_HASH_ANNOTATION: digest},
                    },
                    "spec": leader,
                },
                "workerTemplate": {
                    "metadata": {
                        "labels": {**labels, "app.kubernetes.io/component": "worker"},
                        "annotations": {**base, CONFIG_HASH_ANNOTATION: digest},
                    },
                    "spec": worker,
                },
            },
        },
    }


def leader_service(owner: Owner) -> dict[str, Any]:
    """The serving Service, selecting only group leaders: they run the OpenAI server."""
    manifest = service(owner)
    manifest["spec"]["selector"] = {**manifest["spec"]["selector"], WORKER_INDEX_LABEL: "0"}
    return manifest


@dataclass(frozen=True, slots=True)
class GroupRestarts:
    """How often LWS recreated groups of a set, from its RecreateGroup Events."""

    count: int
    first: dt.datetime | None
    last: dt.datetime | None


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def group_restarts(events: Iterable[Mapping[str, Any]]) -> GroupRestarts:
    """For crash-loop detection (health/): with RecreateGroupOnPodRestart a crash of any pod deletes and recreates
    the whole group, so its pods start over with restartCount 0 and never reach CrashLoopBackOff. Each RecreateGroup
    Event (with its repeat count) is one crash of the replica, however many of its pods went down with it.

    ``events``: Events about the LeaderWorkerSet, core/v1 or events.k8s.io/v1, as mappings (camelCase)."""
    count = 0
    times: list[dt.datetime] = []
    for event in events:
        if event.get("reason") != RECREATE_GROUP_REASON:
            continue
        series = event.get("series") or {}
        repeats = series.get("count") or event.get("count") or event.get("deprecatedCount") or 1
        count += int(repeats)
        stamps = [event.get(key) for key in ("eventTime", "firstTimestamp", "lastTimestamp")]
        stamps += [event.get("deprecatedFirstTimestamp"), event.get("deprecatedLastTimestamp")]
        stamps.append(series.get("lastObservedTime"))
        times += [t for t in map(_time, stamps) if t is not None]
    return GroupRestarts(count, min(times, default=None), max(times, default=None))
