"""The LeaderWorkerSet controller in the sandbox (pure): its command line, config file, CRDs and admission webhooks.

LWS serves admission webhooks that it cannot work without: the LeaderWorkerSet defaulter and validator, and a pod
defaulter that labels each group member (group index, worker index, group key) and injects LWS_LEADER_ADDRESS,
LWS_GROUP_SIZE and LWS_WORKER_INDEX. In a cluster they sit behind the `lws-webhook-service` Service, with
certificates LWS rotates for that Service's DNS name. The sandbox has no kube-proxy, so nothing can reach a Service:
here the controller serves its webhooks on 127.0.0.1 with a certificate of the sandbox CA (its internal cert
management off, a documented Configuration field), and the webhook configurations name that address in
`clientConfig.url` (an admissionregistration.k8s.io/v1 field made for webhooks outside the cluster).
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import yaml

from llamaops_sandbox import pins
from llamaops_sandbox.layout import Layout

BINARY = "lws-controller"
# The pod webhooks only look at pods of a LeaderWorkerSet: what upstream's config/webhook kustomize patches add.
SET_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
# Upstream's kustomize prefixes every object with "lws-".
NAME_PREFIX = "lws-"


def module_dir(layout: Layout) -> Path:
    """The LWS module in the Go module cache (filled by scripts/sandbox-build.sh lws)."""
    return layout.module_dir(pins.LWS)


def crd_files(layout: Layout) -> list[Path]:
    # Both CRDs: the controller watches DisaggregatedSets too and does not start without their CRD.
    bases = module_dir(layout) / "config" / "crd" / "bases"
    return [
        bases / "leaderworkerset.x-k8s.io_leaderworkersets.yaml",
        bases / "disaggregatedset.x-k8s.io_disaggregatedsets.yaml",
    ]


def webhook_manifests(layout: Layout) -> Path:
    return module_dir(layout) / "config" / "webhook" / "manifests.yaml"


def cert_dir(layout: Layout) -> Path:
    """Where the webhook server reads tls.crt and tls.key (controller-runtime's file names)."""
    return layout.pki / "lws-webhook"


def config_file(layout: Layout) -> Path:
    return layout.run / "lws-config.yaml"


def controller_config(layout: Layout, webhook_port: int, health_port: int) -> dict[str, Any]:
    """LWS's Configuration (config.lws.x-k8s.io/v1alpha1): loopback webhook server with our certificate, no
    internal cert rotation, no leader election (one replica), metrics off (they need TokenReview-backed auth)."""
    return {
        "apiVersion": "config.lws.x-k8s.io/v1alpha1",
        "kind": "Configuration",
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir(layout))},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},
    }


def argv(layout: Layout) -> list[str]:
    return [
        str(layout.bin / BINARY),
        f"--kubeconfig={layout.kubeconfig}",
        f"--config={config_file(layout)}",
        "--leader-elect=false",
        "--zap-devel=false",
        "--zap-encoder=console",
    ]


def webhook_configurations(manifests: str, base_url: str, ca_pem: bytes) -> list[dict[str, Any]]:
    """LWS's own webhook configurations (config/webhook/manifests.yaml of the pinned module), each webhook pointed
    at ``base_url`` + its path instead of the in-cluster Service, pod webhooks limited to LWS pods."""
    ca_bundle = base64.b64encode(ca_pem).decode()
    out: list[dict[str, Any]] = []
    for document in yaml.safe_load_all(manifests):
        if not document:
            continue
        item = copy.deepcopy(document)
        item["metadata"] = {"name": NAME_PREFIX + item["metadata"]["name"]}
        for hook in item["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": base_url + path, "caBundle": ca_bundle}
            if any("pods" in rule.get("resources", []) for rule in hook["rules"]):
                hook["objectSelector"] = {"matchExpressions": [{"key": SET_NAME_LABEL, "operator": "Exists"}]}
        out.append(item)
    return out
