#!/usr/bin/env bash
# The README's first command: set up on a fresh machine and run the main job.
source "$(dirname "$0")/lib.sh"
ensure_venv
cd "$ROOT"
llama-operator --version
