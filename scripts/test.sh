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

step "import-linter (layers from DESIGN.md)"
lint-imports

# Each tier is its own pytest run; pytest exits 5 when it collects nothing, and set -e turns that into a
# failure too.
step "unit tests"
pytest tests/unit "$@"

# Integration tier: against the real sandbox (built on first use; `sandbox up` reuses a running one). A sandbox
# this script starts is taken down on exit, one that was already running is left alone.
step "integration tests (sandbox)"
bash scripts/sandbox-build.sh
if ! llama-operator sandbox status >/dev/null 2>&1; then
    trap 'llama-operator sandbox down' EXIT
    llama-operator sandbox up
fi
pytest tests/integration "$@"

# Further tiers (integration on the sandbox, engine on vLLM CPU) are added below by the issues that bring them.

# Engine tier: real vLLM (CPU build) serving a tiny Llama-4 with and without the patched image's plugin. It runs in
# its own venv (vLLM's pins conflict with the operator's), built on first use under $LLAMAOPS_CACHE/venvs.
step "engine tests (vLLM CPU)"
engine_venv="$(bash images/vllm/scripts/engine-venv.sh)"
"$engine_venv/bin/python" -m pytest tests/engine "$@"
