"""KEDA in the sandbox (pure): its two processes' command lines, CRDs, RBAC and the aggregated API it serves.

KEDA's operator turns a ScaledObject into an HPA and evaluates its scalers; its metrics adapter serves their values
as `external.metrics.k8s.io`, which the kube-apiserver's aggregation layer proxies to it for the HPA controller of
kube-controller-manager. In a cluster the APIService names a ClusterIP Service; the sandbox has no kube-proxy, so a
ClusterIP goes nowhere. The aggregator resolves an APIService's Service with k8s.io/apiserver's
proxy.ResolveCluster, which for a Service of type ExternalName dials https://<externalName>:<APIService port>: an
ExternalName Service named `localhost` and the adapter's loopback port reach the adapter without a proxy. The
aggregator still checks the adapter's certificate for `<service>.<namespace>.svc`, so the sandbox CA issues one with
that name (and 127.0.0.1, where the adapter dials the operator's gRPC metrics service with the same certificate).

KEDA's own certificate rotation is off: both processes read ca.crt, tls.crt and tls.key from one directory, as they
do from KEDA's `kedaorg-certs` Secret in a cluster. Both authenticate to the API server as KEDA's ServiceAccount
user name (a client certificate of the sandbox CA; no pod mounts them a token), so KEDA's own RBAC manifests
apply unchanged.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from llamaops_sandbox import pins
from llamaops_sandbox.layout import Layout

OPERATOR = "keda-operator"
ADAPTER = "keda-adapter"
NAMESPACE = "keda"
SERVICE_ACCOUNT = "keda-operator"
USER = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
GROUPS = ("system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}")
# The Service KEDA's Helm chart registers the adapter under; the aggregator checks this name in its certificate.
SERVICE = "keda-operator-metrics-apiserver"
SERVICE_DNS = f"{SERVICE}.{NAMESPACE}.svc"
# What KEDA's pods get from their manifests: every namespace watched (KEDA refuses to start without the variable)
# and its own namespace; KEDA_CLUSTER_OBJECT_NAMESPACE (where it reads the Secrets of cluster-wide trigger
# authentications) stands in for the ServiceAccount namespace file a pod has mounted.
ENV = {"WATCH_NAMESPACE": "", "POD_NAMESPACE": NAMESPACE, "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE}
API_GROUP = "external.metrics.k8s.io"
API_VERSION = "v1beta1"
APISERVICE = f"{API_VERSION}.{API_GROUP}"


def module_dir(layout: Layout) -> Path:
    """The KEDA module in the Go module cache (filled by scripts/sandbox-build.sh keda)."""
    return layout.module_dir(pins.KEDA)


def crd_files(layout: Layout) -> list[Path]:
    # All six: the operator runs a controller for each kind and does not start without its CRD.
    return sorted((module_dir(layout) / "config" / "crd" / "bases").glob("*.yaml"))


def rbac_files(layout: Layout) -> list[Path]:
    """KEDA's own RBAC: the operator's roles and their bindings, and the adapter's (auth delegation, reading the
    front-proxy CA from kube-system, and the HPA controller's right to read external metrics)."""
    config = module_dir(layout) / "config"
    return [
        config / "rbac" / "role.yaml",
        config / "rbac" / "role_binding.yaml",
        config / "metrics-server" / "role.yaml",
        config / "metrics-server" / "role_binding.yaml",
    ]


def cert_dir(layout: Layout) -> Path:
    """ca.crt, tls.crt and tls.key: the names KEDA reads from its --cert-dir."""
    return layout.pki / "keda"


def kubeconfig_file(layout: Layout) -> Path:
    return layout.run / "keda.kubeconfig"


def operator_argv(layout: Layout, grpc_port: int, health_port: int, metrics_port: int) -> list[str]:
    return [
        str(layout.bin / OPERATOR),
        f"--kubeconfig={kubeconfig_file(layout)}",
        "--leader-elect=false",
        "--enable-cert-rotation=false",
        f"--cert-dir={cert_dir(layout)}",
        f"--metrics-service-bind-address=127.0.0.1:{grpc_port}",
        f"--health-probe-bind-address=127.0.0.1:{health_port}",
        f"--metrics-bind-address=127.0.0.1:{metrics_port}",
        "--zap-encoder=console",
        "--zap-log-level=info",
    ]


def adapter_argv(layout: Layout, secure_port: int, grpc_port: int, metrics_port: int) -> list[str]:
    certs, kubeconfig = cert_dir(layout), kubeconfig_file(layout)
    return [
        str(layout.bin / ADAPTER),
        f"--kubeconfig={kubeconfig}",
        f"--lister-kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={secure_port}",
        f"--tls-cert-file={certs / 'tls.crt'}",
        f"--tls-private-key-file={certs / 'tls.key'}",
        f"--client-ca-file={certs / 'ca.crt'}",
        # Also where its gRPC client reads the certificate it presents to the operator.
        f"--cert-dir={certs}",
        f"--metrics-service-address=127.0.0.1:{grpc_port}",
        # The adapter's own /metrics: KEDA binds it on every interface (":PORT", no host flag); a free port.
        f"--port={metrics_port}",
        "--zap-encoder=console",
    ]


def cluster_objects(ca_pem: bytes, adapter_port: int) -> list[dict[str, Any]]:
    """KEDA's namespace, the ExternalName Service that routes the aggregator to the adapter on loopback, and the
    APIService (upstream's config/metrics-server/api_service.yaml with this Service, port and CA)."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "spec": {"type": "ExternalName", "externalName": "localhost"},
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": APISERVICE},
            "spec": {
                "service": {"name": SERVICE, "namespace": NAMESPACE, "port": adapter_port},
                "group": API_GROUP,
                "version": API_VERSION,
                "caBundle": base64.b64encode(ca_pem).decode(),
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ]
