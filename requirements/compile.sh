#!/usr/bin/env bash
# Regenerate the operator image's lock files with a pinned pip-tools, in a throwaway virtual environment:
#   operator.lock  the runtime dependencies of pyproject.toml, every transitive package pinned, each file by hash
#   build.lock     the build backend (pyproject.toml's build-system) the image builds the project's wheel with
# The Dockerfile installs both with `pip install --require-hashes`. Run after changing a dependency in
# pyproject.toml; tests/unit/test_dockerfile.py fails while operator.lock disagrees with it.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_TOOLS="pip-tools==7.6.2"
venv="$(mktemp -d)"
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "$PIP_TOOLS"
# No index or find-links lines: the lock names packages and hashes only, whatever index a machine uses.
compile=("$venv/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url
    --no-emit-find-links --no-emit-trusted-host --annotation-style line)
CUSTOM_COMPILE_COMMAND="requirements/compile.sh" "${compile[@]}" --output-file requirements/operator.lock pyproject.toml
CUSTOM_COMPILE_COMMAND="requirements/compile.sh" "${compile[@]}" --output-file requirements/build.lock requirements/build.in
