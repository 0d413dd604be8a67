"""What the sandbox runs: each component's command line, health check and config files (pure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from llamaops_sandbox import keda, lws, realnode_config
from llamaops_sandbox import pki as sandbox_pki
from llamaops_sandbox.layout import Layout

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SCRAPE_INTERVAL = "2s"
# Tests register loopback targets (a real vLLM server, an extra operator) by writing JSON target files here;
# Prometheus re-reads them without a restart.
FILE_SD_JOB = "file-sd"
FILE_SD_REFRESH = "2s"
# Start order; `down` stops them in reverse.
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kube-state-metrics",
    "prometheus",
    "lws-controller",
    keda.OPERATOR,
    keda.ADAPTER,
)
# The HPA controller's resync period (upstream's default is 15 s): KEDA's ScaledObjects in tests scale within
# seconds of a metric change instead of up to a quarter of a minute later, and at most ~20 HPAs live here at once.
HPA_SYNC_PERIOD = "5s"


REAL_NODE_PORTS = (
    "registry",
    "containerd_metrics",
    "kubelet",
    "kubelet_healthz",
    "kube_proxy_healthz",
    "kube_proxy_metrics",
)


@dataclass(frozen=True)
class Ports:
    """Loopback ports picked free at `up` time and recorded in the state file."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int
    kube_state_metrics: int
    kube_state_metrics_telemetry: int
    prometheus: int
    # Reserved for the operator's own /metrics (`llama-operator run`), which Prometheus scrapes.
    operator_metrics: int
    # Defaults: a state file written before the LWS controller joined the sandbox has none (cluster.up adds it).
    lws_webhook: int = 0
    lws_health: int = 0
    # The real node's (`sandbox up --real-node`); 0 until it is started.
    registry: int = 0
    containerd_metrics: int = 0
    kubelet: int = 0
    kubelet_healthz: int = 0
    kube_proxy_healthz: int = 0
    kube_proxy_metrics: int = 0
    # KEDA's: the operator's gRPC metrics service, health probe and /metrics, the adapter's secure port and /metrics.
    keda_grpc: int = 0
    keda_health: int = 0
    keda_metrics: int = 0
    keda_adapter: int = 0
    keda_adapter_metrics: int = 0

    @classmethod
    def count(cls) -> int:
        return len(fields(cls))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# Stored apart from the other ports in the state file (cluster.State): a checkout from before KEDA joined (another
# worktree) builds its Ports from the "ports" object and refuses unknown fields; it would then take the running
# sandbox for none and start a second one over it.
KEDA_PORTS = ("keda_grpc", "keda_health", "keda_metrics", "keda_adapter", "keda_adapter_metrics")


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    # An HTTP(S) URL that answers 200 once the component serves; "apiserver" TLS uses the sandbox CA and admin cert.
    health_url: str
    # Set on top of the environment the sandbox runs in (KEDA reads some settings only from there).
    env: dict[str, str] = field(default_factory=dict)


def _url(scheme: str, port: int, path: str = "") -> str:
    return f"{scheme}://127.0.0.1:{port}{path}"


def components(layout: Layout, ports: Ports) -> list[Component]:
    """Every component of the sandbox, in start order."""
    b, pki, run = layout.bin, layout.pki, layout.run
    component_kubeconfig = {
        "kube-controller-manager": str(run / "controller-manager.kubeconfig"),
        "kube-scheduler": str(run / "scheduler.kubeconfig"),
    }
    kubeconfig = str(layout.kubeconfig)
    etcd_peer = _url("http", ports.etcd_peer)
    etcd_client = _url("http", ports.etcd_client)
    kwok_stages = [*layout.kwok_upstream_stages(), run / "kwok-crash-loop.yaml", run / "kwok-image-pull.yaml"]
    kcm_cfg, sched_cfg = component_kubeconfig["kube-controller-manager"], component_kubeconfig["kube-scheduler"]
    return [
        Component(
            "etcd",
            [
                str(b / "etcd"),
                "--name=sandbox",
                f"--data-dir={layout.etcd_data}",
                f"--listen-client-urls={etcd_client}",
                f"--advertise-client-urls={etcd_client}",
                f"--listen-peer-urls={etcd_peer}",
                f"--initial-advertise-peer-urls={etcd_peer}",
                f"--initial-cluster=sandbox={etcd_peer}",
                # A throwaway cluster: skip fsync, it is most of etcd's write latency on a small disk.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            _url("http", ports.etcd_client, "/health"),
        ),
        Component(
            "kube-apiserver",
            [
                str(b / "kube-apiserver"),
                f"--etcd-servers={etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports.apiserver}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                # Added to the default plugins, which already include the mutating and validating webhooks and
                # ValidatingAdmissionPolicy; CRD validation rules (CEL) need no plugin.
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                # Its loopback address is not a valid endpoint: the real node (realnode_config) writes the
                # `kubernetes` Service's endpoints itself; KWOK's fake pods never call it.
                "--endpoint-reconciler-type=none",
                # Logs and exec on the real node's kubelet, which authorizes the caller with a SubjectAccessReview.
                f"--kubelet-client-certificate={pki / 'admin.crt'}",
                f"--kubelet-client-key={pki / 'admin.key'}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--cert-dir={pki}",
                # The aggregation layer (KEDA's external metrics API): the client certificate the apiserver proxies
                # with, and the CA and name extension servers check before they trust the X-Remote-* headers.
                f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
                f"--requestheader-allowed-names={sandbox_pki.FRONT_PROXY_CLIENT}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / f'{sandbox_pki.FRONT_PROXY_CLIENT}.crt'}",
                f"--proxy-client-key-file={pki / f'{sandbox_pki.FRONT_PROXY_CLIENT}.key'}",
            ],
            _url("https", ports.apiserver, "/readyz"),
        ),
        Component(
            "kube-controller-manager",
            [
                str(b / "kube-controller-manager"),
                f"--kubeconfig={kcm_cfg}",
                f"--authentication-kubeconfig={kcm_cfg}",
                f"--authorization-kubeconfig={kcm_cfg}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports.controller_manager}",
                "--leader-elect=false",
                # Every default controller: garbage collector, Deployment/ReplicaSet/StatefulSet, node lifecycle...
                "--controllers=*",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # KWOK renews 1,000 fake nodes' heartbeats; on a loaded 2-core machine some lag past the default
                # 50 s, the node lifecycle controller marks their pods not Ready, and KWOK (unlike a kubelet) never
                # marks them Ready again: Deployments then wait forever. Seen in benchmarks/scale.py at N=300.
                "--node-monitor-grace-period=10m",
                f"--horizontal-pod-autoscaler-sync-period={HPA_SYNC_PERIOD}",
            ],
            _url("https", ports.controller_manager, "/healthz"),
        ),
        Component(
            "kube-scheduler",
            [
                str(b / "kube-scheduler"),
                f"--kubeconfig={sched_cfg}",
                f"--authentication-kubeconfig={sched_cfg}",
                f"--authorization-kubeconfig={sched_cfg}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports.scheduler}",
                "--leader-elect=false",
            ],
            _url("https", ports.scheduler, "/healthz"),
        ),
        Component(
            "kwok",
            [
                str(b / "kwok"),
                f"--kubeconfig={kubeconfig}",
                *(f"--config={s}" for s in kwok_stages),
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-lease-duration-seconds=40",
                "--cidr=10.0.0.1/16",
                f"--server-address=127.0.0.1:{ports.kwok}",
            ],
            _url("http", ports.kwok, "/healthz"),
        ),
        Component(
            "kube-state-metrics",
            [
                str(b / "kube-state-metrics"),
                f"--kubeconfig={kubeconfig}",
                "--host=127.0.0.1",
                f"--port={ports.kube_state_metrics}",
                "--telemetry-host=127.0.0.1",
                f"--telemetry-port={ports.kube_state_metrics_telemetry}",
            ],
            # /readyz lives on the telemetry port: ready once its own metrics are registered.
            _url("http", ports.kube_state_metrics_telemetry, "/readyz"),
        ),
        Component(
            "prometheus",
            [
                str(b / "prometheus"),
                f"--config.file={run / 'prometheus.yml'}",
                f"--storage.tsdb.path={layout.prometheus_data}",
                f"--web.listen-address=127.0.0.1:{ports.prometheus}",
                "--storage.tsdb.retention.time=1d",
            ],
            _url("http", ports.prometheus, "/-/ready"),
        ),
        # Needs its CRDs and webhook configurations first (cluster.py installs them once the apiserver is up).
        Component("lws-controller", lws.argv(layout), _url("http", ports.lws_health, "/healthz")),
        # Both need KEDA's CRDs, RBAC and APIService first (cluster.py installs them once the apiserver is up).
        Component(
            keda.OPERATOR,
            keda.operator_argv(layout, ports.keda_grpc, ports.keda_health, ports.keda_metrics),
            _url("http", ports.keda_health, "/readyz"),
            keda.ENV,
        ),
        Component(
            keda.ADAPTER,
            keda.adapter_argv(layout, ports.keda_adapter, ports.keda_grpc, ports.keda_adapter_metrics),
            # TLS with the sandbox CA (cluster.py's probe context); health paths need no authorization.
            _url("https", ports.keda_adapter, "/readyz"),
            keda.ENV,
        ),
    ]


def kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "llamaops-sandbox", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "llamaops-sandbox", "context": {"cluster": "llamaops-sandbox", "user": user}}],
        "current-context": "llamaops-sandbox",
    }


def file_sd_dir(layout: Layout) -> Path:
    """Where file_sd target files go: `[{"targets": ["127.0.0.1:PORT"], "labels": {...}}]` in `<name>.json`."""
    return layout.run / "file-sd"


def prometheus_config(layout: Layout, ports: Ports) -> dict[str, Any]:
    """Scrape kube-state-metrics, the operator's metrics port, pods annotated prometheus.io/scrape=true, and the
    loopback targets tests list in file_sd_dir()."""
    pki = layout.pki
    tls = {"ca_file": str(pki / "ca.crt"), "cert_file": str(pki / "admin.crt"), "key_file": str(pki / "admin.key")}
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": "kube-state-metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{ports.kube_state_metrics}"]}],
            },
            {
                "job_name": "llama-operator",
                "static_configs": [{"targets": [f"127.0.0.1:{ports.operator_metrics}"]}],
            },
            {
                # Fake pods have no reachable IP, so these targets are down; real clusters use the same config.
                "job_name": "kubernetes-pods",
                "kubernetes_sd_configs": [
                    {"role": "pod", "api_server": _url("https", ports.apiserver), "tls_config": tls}
                ],
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                        "action": "keep",
                        "regex": "true",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                        "action": "replace",
                        "target_label": "__metrics_path__",
                        "regex": "(.+)",
                    },
                    {
                        "source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
                        "action": "replace",
                        "regex": r"([^:]+)(?::\d+)?;(\d+)",
                        "replacement": "$1:$2",
                        "target_label": "__address__",
                    },
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                ],
            },
            *(
                [{"job_name": keda.OPERATOR, "static_configs": [{"targets": [f"127.0.0.1:{ports.keda_metrics}"]}]}]
                if ports.keda_metrics
                else []
            ),
            {
                "job_name": FILE_SD_JOB,
                "file_sd_configs": [
                    {"files": [str(file_sd_dir(layout) / "*.json")], "refresh_interval": FILE_SD_REFRESH}
                ],
            },
        ],
    }


def env_lines(layout: Layout, ports: Ports) -> list[str]:
    """Shell lines `sandbox env` prints, for `eval "$(llamaops-sandbox env)"`; with the real node, where its
    registry is and the operator's image rewrites onto the CPU builds there."""
    lines = [
        f"export KUBECONFIG={layout.kubeconfig}",
        f"export PATH={layout.bin}:$PATH",
        f"export LLAMAOPS_PROMETHEUS_URL=http://127.0.0.1:{ports.prometheus}",
        f"export LLAMAOPS_OPERATOR_METRICS_PORT={ports.operator_metrics}",
    ]
    if ports.registry:
        lines += [
            f"export LLAMAOPS_REGISTRY=127.0.0.1:{ports.registry}",
            f"export LLAMAOPS_IMAGE_REWRITES={','.join(realnode_config.image_rewrites(ports.registry))}",
        ]
    return lines
