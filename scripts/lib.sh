# Shared by the scripts: one cache directory the scripts own, and a project virtualenv built from it.
# Sourced, not executed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Everything downloaded or built (wheels, Go modules and build cache, binaries) lives here, outside the
# checkout, so a fresh clone on a warm machine rebuilds nothing.
export LLAMAOPS_CACHE="${LLAMAOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llama-operator}"
export PIP_CACHE_DIR="$LLAMAOPS_CACHE/pip"
export GOMODCACHE="$LLAMAOPS_CACHE/go/mod"
export GOCACHE="$LLAMAOPS_CACHE/go/build"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"

step() { printf '\n==> %s\n' "$*" >&2; }

# Create .venv and install the project with its dev extra, and the development sandbox (e2e/pyproject.toml, the
# `llamaops-sandbox` command), both editable. Cheap when nothing changed: pip is skipped while the stamp matches both
# pyproject files.
ensure_venv() {
    mkdir -p "$LLAMAOPS_CACHE"
    if [ ! -x "$VENV/bin/python" ]; then
        step "creating virtualenv $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed"
    local want
    want="$(cat "$ROOT/pyproject.toml" "$ROOT/e2e/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        step "installing llama-operator, its dev tools and llamaops-sandbox into $VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade "pip==26.3"
        "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]" -e "$ROOT/e2e"
        echo "$want" >"$stamp"
    fi
    export PATH="$VENV/bin:$PATH"
}
