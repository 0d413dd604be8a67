#!/usr/bin/env bash
# The README's second command: every check and every test tier this machine can run. Non-zero on any failure.
source "$(dirname "$0")/lib.sh"
ensure_venv
cd "$ROOT"

step "ruff"
ruff check .
ruff format --check .

step "mypy --strict"
mypy --strict

step "import-linter (the layers in pyproject.toml)"
lint-imports

# Each tier is its own pytest run; pytest exits 5 when it collects nothing, and set -e turns that into a
# failure too.
step "unit tests"
pytest tests/unit "$@"

# Integration tier: against the real sandbox (built on first use; `llamaops-sandbox up` reuses a running one). A sandbox
# this script starts is taken down on exit, one that was already running is left alone.
step "integration tests (sandbox)"
bash scripts/sandbox-build.sh
if ! llamaops-sandbox status >/dev/null 2>&1; then
    trap 'llamaops-sandbox down' EXIT
    llamaops-sandbox up
fi
pytest tests/integration "$@"

# Further tiers (integration on the sandbox, engine on vLLM CPU) are added below by the issues that bring them.

# Engine tier: real vLLM (CPU build) serving a tiny Llama-4 with and without the patched image's plugin. It runs in
# its own venv (vLLM's pins conflict with the operator's), built on first use under $LLAMAOPS_CACHE/venvs.
step "engine tests (vLLM CPU)"
engine_venv="$(bash images/vllm/scripts/engine-venv.sh)"
"$engine_venv/bin/python" -m pytest tests/engine "$@"

# Real-node tier: the same sandbox with a real node beside the fake ones (a kubelet, containerd, runc, a CNI bridge,
# kube-proxy and a local registry), the operator and vLLM images built from the repository's Dockerfiles with
# buildah and pushed there, the chart installed for real, and a real vLLM engine (CPU build) under the operator.
# Needs root; host packages come from Debian, everything else from the caches above.
step "real node: host packages, kubelet and kube-proxy, registry"
bash scripts/sandbox-build.sh host-packages node registry
llamaops-sandbox up --real-node
eval "$(llamaops-sandbox env)"
step "images for the real node (buildah; pushed to $LLAMAOPS_REGISTRY)"
bash scripts/images-build.sh --registry "$LLAMAOPS_REGISTRY"
step "real-node tests"
pytest tests/realnode "$@"
