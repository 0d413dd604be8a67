"""The sandbox's real node (pure): what `sandbox up --real-node` runs beside the KWOK fake nodes, and its files.

One node with a real kubelet, containerd and runc, a CNI bridge and kube-proxy, so the operator's pods really run;
a local OCI registry (distribution) serves the images scripts/images-build.sh builds. Pods reach the API server
through the `kubernetes` Service: kube-proxy sends 10.96.0.1:443 to the bridge's gateway address, where a socat
forwarder passes the TLS stream to the API server on loopback (which stays bound to 127.0.0.1 only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llama_operator.knowledge import load_knowledge
from llamaops_sandbox.layout import Layout

NODE_NAME = "llamaops-real-0"
BRIDGE = "llamaops-cni0"
POD_CIDR = "10.88.0.0/16"
GATEWAY = "10.88.0.1"
# The node's InternalIP, where the API server reaches the kubelet (logs, exec): the pods' bridge gateway, a host
# address no other machine routes to. The kubelet refuses a loopback node IP ("nodeIP can't be loopback address").
NODE_IP = GATEWAY
CNI_NETWORK = "llamaops"
# The GPU product the real node advertises (labels as NVIDIA GPU feature discovery writes them, and node-level
# nvidia.com/gpu capacity). No fake node pool has it, so a deployment asking for it lands on the real node.
GPU_PRODUCT = "NVIDIA-L40S"
GPU_COUNT = 4
REAL_NODE_LABEL = "llamaops.dev/real-node"
# Start order; `down` stops them in reverse. The kubelet needs containerd, which pulls from the registry; kube-proxy
# waits for its Node object to exist.
COMPONENTS = ("registry", "containerd", "apiserver-forwarder", "kubelet", "kube-proxy")


def node_labels() -> dict[str, str]:
    gpu = load_knowledge().gpu(GPU_PRODUCT)
    assert gpu is not None, f"{GPU_PRODUCT} is not in the GPU catalog"
    return {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": GPU_PRODUCT,
        "nvidia.com/gpu.count": str(GPU_COUNT),
        # What the catalog (knowledge/data/gpus.yaml) says nvidia-smi reports, as GFD copies it.
        "nvidia.com/gpu.memory": str(gpu.memory_mib),
        "nvidia.com/gpu.family": "ada-lovelace",
        REAL_NODE_LABEL: "true",
    }


def paths(layout: Layout) -> dict[str, Path]:
    """Run-time state under the run directory; containerd's content store under the cache (kept between runs, so
    a warm machine pulls nothing)."""
    node = layout.run / "node"
    return {
        "node": node,
        "containerd_root": layout.cache / "containerd",
        "containerd_state": node / "containerd-state",
        "containerd_socket": node / "containerd.sock",
        "containerd_config": node / "containerd.toml",
        "registry_hosts": node / "certs.d",
        "cni_conf": node / "cni" / "net.d",
        "cni_data": node / "cni" / "data",
        "kubelet_root": node / "kubelet",
        "pod_logs": node / "pod-logs",
        "kubelet_config": node / "kubelet.yaml",
        "kubelet_kubeconfig": node / "kubelet.kubeconfig",
        "kube_proxy_config": node / "kube-proxy.yaml",
        "kube_proxy_kubeconfig": node / "kube-proxy.kubeconfig",
        "registry_config": node / "registry.yaml",
        "registry_data": layout.cache / "registry",
        "models": layout.cache / "models",
    }


def registry_address(port: int) -> str:
    return f"127.0.0.1:{port}"


def pause_image(registry_port: int) -> str:
    return f"{registry_address(registry_port)}/llamaops/pause:1"


def image_rewrites(registry_port: int) -> list[str]:
    """The operator's --image-rewrite rules for the sandbox: upstream names onto the CPU builds' own names."""
    registry = registry_address(registry_port)
    return [
        f"ghcr.io/llamaops/vllm={registry}/llamaops/vllm-cpu",
        f"docker.io/vllm/vllm-openai={registry}/vllm/vllm-openai-cpu",
    ]


def registry_config(layout: Layout, port: int) -> dict[str, Any]:
    return {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(paths(layout)["registry_data"])}, "delete": {"enabled": True}},
        "http": {"addr": registry_address(port)},
    }


def containerd_config(layout: Layout, registry_port: int, metrics_port: int) -> str:
    """containerd 1.6's config (version 2) for the CRI plugin the kubelet talks to."""
    p = paths(layout)
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{p["containerd_root"]}"
state = "{p["containerd_state"]}"

[grpc]
  address = "{p["containerd_socket"]}"

[metrics]
  address = "127.0.0.1:{metrics_port}"

[{cri}]
  sandbox_image = "{pause_image(registry_port)}"
  # Root here lacks CAP_SYS_RESOURCE: without this runc fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  enable_unprivileged_ports = false

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  BinaryName = "/usr/sbin/runc"
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{p["cni_conf"]}"

[{cri}.registry]
  config_path = "{p["registry_hosts"]}"
"""


def registry_hosts_toml(registry_port: int) -> str:
    """The local registry speaks plain HTTP on loopback."""
    address = registry_address(registry_port)
    return f'server = "http://{address}"\n\n[host."http://{address}"]\n  capabilities = ["pull", "resolve"]\n'


def cni_conflist(layout: Layout) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                # A pod reaching its own Service (kube-proxy DNAT back to itself) needs hairpin.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths(layout)["cni_data"]),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }


def kubelet_config(layout: Layout, port: int, healthz_port: int) -> dict[str, Any]:
    p = paths(layout)
    pki = layout.pki
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This machine's cgroup hierarchy is v1; Kubernetes 1.35 refuses it unless told (KEP-5573).
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{p['containerd_socket']}",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(p["pod_logs"]),
        "failSwapOn": False,
        "resolvConf": "/etc/resolv.conf",
        "serializeImagePulls": False,
        # A shared development machine: only evict when it is nearly out of memory or disk.
        "evictionHard": {"memory.available": "200Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
        "imageGCHighThresholdPercent": 98,
        "imageGCLowThresholdPercent": 95,
        "maxPods": 30,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
    }


def kube_proxy_config(layout: Layout, healthz_port: int, metrics_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(paths(layout)["kube_proxy_kubeconfig"])},
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "clusterCIDR": POD_CIDR,
        # Leave the host's conntrack table size alone (a shared machine; the sysctl may be read-only here).
        "conntrack": {"maxPerCore": 0, "min": 0},
        # Only the real node's own traffic: NodePorts on loopback are not needed.
        "nodePortAddresses": [f"{GATEWAY}/32"],
    }


def kubernetes_endpoints(apiserver_port: int) -> dict[str, Any]:
    """The `kubernetes` Service's endpoints (the API server runs with --endpoint-reconciler-type=none): the
    forwarder on the bridge's gateway address."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "llamaops-sandbox",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [GATEWAY], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": apiserver_port, "protocol": "TCP"}],
    }


def gpu_capacity_patch() -> list[dict[str, Any]]:
    """JSON patch of the node's status: nvidia.com/gpu as a node-level extended resource (no device plugin)."""
    return [
        {"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": str(GPU_COUNT)},
    ]


def argvs(layout: Layout, ports: dict[str, int]) -> dict[str, list[str]]:
    """Each real-node component's command line. ``ports``: the sandbox's recorded ports by field name."""
    p, b = paths(layout), layout.bin
    labels = ",".join(f"{k}={v}" for k, v in node_labels().items())
    return {
        "registry": [str(b / "registry"), "serve", str(p["registry_config"])],
        "containerd": ["/usr/bin/containerd", f"--config={p['containerd_config']}", "--log-level=warn"],
        "apiserver-forwarder": [
            "/usr/bin/socat",
            f"TCP-LISTEN:{ports['apiserver']},bind={GATEWAY},reuseaddr,fork",
            f"TCP:127.0.0.1:{ports['apiserver']}",
        ],
        "kube-proxy": [str(b / "kube-proxy"), f"--config={p['kube_proxy_config']}", "--v=1"],
        "kubelet": [
            str(b / "kubelet"),
            f"--config={p['kubelet_config']}",
            f"--kubeconfig={p['kubelet_kubeconfig']}",
            f"--root-dir={p['kubelet_root']}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            f"--node-labels={labels}",
            "--v=1",
        ],
    }


def health_urls(ports: dict[str, int]) -> dict[str, str]:
    return {
        "registry": f"http://127.0.0.1:{ports['registry']}/v2/",
        "containerd": f"http://127.0.0.1:{ports['containerd_metrics']}/v1/metrics",
        # Through the forwarder: the API server's own /livez (anonymous may read it).
        "apiserver-forwarder": f"https://{GATEWAY}:{ports['apiserver']}/livez",
        # /livez: /healthz also reports whether the node is eligible for traffic (503 until it is Ready).
        "kube-proxy": f"http://127.0.0.1:{ports['kube_proxy_healthz']}/livez",
        "kubelet": f"http://127.0.0.1:{ports['kubelet_healthz']}/healthz",
    }
