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

step "pytest"
# pytest exits 5 when it collects nothing; set -e turns that into a failure too.
pytest "$@"
