"""The real node's configuration (pure): what the traps of this machine need, and names that stay honest."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from llama_operator.render.images import parse_rules, rewrite_image
from llamaops_sandbox import config
from llamaops_sandbox import realnode_config as rc
from llamaops_sandbox.layout import Layout

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = Layout(Path("/cache"))
PORTS = {name: 40000 + i for i, name in enumerate(config.Ports.__dataclass_fields__)}


def test_kubelet_runs_on_cgroup_v1_and_never_on_a_loopback_node_ip() -> None:
    cfg = rc.kubelet_config(LAYOUT, PORTS["kubelet"], PORTS["kubelet_healthz"])
    assert cfg["failCgroupV1"] is False  # KEP-5573: 1.35 refuses cgroup v1 otherwise
    assert cfg["cgroupDriver"] == "cgroupfs"
    assert cfg["authentication"]["anonymous"]["enabled"] is False
    assert cfg["authorization"]["mode"] == "Webhook"
    # The kubelet refuses a loopback node IP; the node's address is the pods' gateway, which is private.
    node_ip = ipaddress.ip_address(rc.NODE_IP)
    assert not node_ip.is_loopback
    assert node_ip.is_private
    assert node_ip in ipaddress.ip_network(rc.POD_CIDR)
    assert f"--node-ip={rc.NODE_IP}" in rc.argvs(LAYOUT, PORTS)["kubelet"]


def test_containerd_restricts_oom_score_adj_and_pulls_its_sandbox_image_locally() -> None:
    text = rc.containerd_config(LAYOUT, PORTS["registry"], PORTS["containerd_metrics"])
    assert "restrict_oom_score_adj = true" in text  # root here lacks CAP_SYS_RESOURCE
    assert f'sandbox_image = "127.0.0.1:{PORTS["registry"]}/llamaops/pause:1"' in text
    assert 'BinaryName = "/usr/sbin/runc"' in text
    hosts = rc.registry_hosts_toml(PORTS["registry"])
    assert f'server = "http://127.0.0.1:{PORTS["registry"]}"' in hosts


def test_listeners_stay_on_loopback_or_the_pods_bridge() -> None:
    allowed = {"127.0.0.1", rc.GATEWAY}
    for name, url in rc.health_urls(PORTS).items():
        host = re.match(r"https?://([^:/]+)", url)
        assert host is not None
        assert host[1] in allowed, (name, url)
    proxy = rc.kube_proxy_config(LAYOUT, PORTS["kube_proxy_healthz"], PORTS["kube_proxy_metrics"])
    assert proxy["healthzBindAddress"].startswith("127.0.0.1:")
    assert proxy["metricsBindAddress"].startswith("127.0.0.1:")
    assert rc.registry_config(LAYOUT, PORTS["registry"])["http"]["addr"] == f"127.0.0.1:{PORTS['registry']}"
    forwarder = rc.argvs(LAYOUT, PORTS)["apiserver-forwarder"]
    assert f"bind={rc.GATEWAY}" in forwarder[1]
    assert forwarder[2] == f"TCP:127.0.0.1:{PORTS['apiserver']}"


def test_the_node_advertises_one_gpu_product_no_fake_pool_has() -> None:
    labels = rc.node_labels()
    assert labels["nvidia.com/gpu.product"] == rc.GPU_PRODUCT
    fake = (ROOT / "e2e" / "nodes.yaml").read_text()
    assert rc.GPU_PRODUCT not in fake
    assert rc.gpu_capacity_patch() == [
        {"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": str(rc.GPU_COUNT)}
    ]


def test_image_rewrites_map_upstream_names_onto_cpu_builds_never_onto_upstream_tags() -> None:
    rules = parse_rules(rc.image_rewrites(PORTS["registry"]))
    registry = f"127.0.0.1:{PORTS['registry']}"
    assert (
        rewrite_image("ghcr.io/llamaops/vllm:0.32.0-llamaops", rules) == f"{registry}/llamaops/vllm-cpu:0.32.0-llamaops"
    )
    assert rewrite_image("docker.io/vllm/vllm-openai:v0.32.0", rules) == f"{registry}/vllm/vllm-openai-cpu:v0.32.0"
    # What scripts/images-build.sh pushes under those names.
    script = (ROOT / "scripts" / "images-build.sh").read_text()
    assert '[vllm-cpu]="vllm/vllm-openai-cpu:v$VLLM_CPU_VERSION"' in script
    assert '[vllm-patched]="llamaops/vllm-cpu:$VLLM_CPU_VERSION-llamaops"' in script


def test_the_cpu_image_and_the_engine_tests_install_the_same_vllm() -> None:
    def pinned(path: Path, name: str) -> str:
        found = re.search(rf"^{name}=(\S+)", path.read_text(), re.MULTILINE)
        assert found is not None, (path, name)
        return found[1]

    build, venv = ROOT / "scripts" / "images-build.sh", ROOT / "images" / "vllm" / "scripts" / "engine-venv.sh"
    assert pinned(build, "VLLM_CPU_VERSION") == pinned(venv, "VLLM_CPU_VERSION")
    assert pinned(build, "TORCH_VERSION") == pinned(venv, "TORCH_VERSION")


def test_the_sandbox_builds_kubelet_and_kube_proxy_from_the_control_planes_module() -> None:
    gomod = (ROOT / "e2e" / "go.mod").read_text()
    for tool in ("kubelet", "kube-proxy"):
        assert f"\tk8s.io/kubernetes/cmd/{tool}\n" in gomod
    registry = (ROOT / "e2e" / "tools" / "registry" / "go.mod").read_text()
    assert "tool github.com/distribution/distribution/v3/cmd/registry" in registry
    assert "\tgithub.com/distribution/distribution/v3 v3.1.2 // indirect\n" in registry
