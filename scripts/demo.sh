#!/usr/bin/env bash
# The README's first command: set up on a fresh machine and run the main job.
source "$(dirname "$0")/lib.sh"
ensure_venv
cd "$ROOT"
llama-operator --version

step "building the sandbox (cached after the first run)"
bash scripts/sandbox-build.sh

step "starting the sandbox: real control plane, fake GPU nodes, kube-state-metrics, Prometheus"
llama-operator sandbox up
eval "$(llama-operator sandbox env)"

step "fake GPU nodes"
kubectl get nodes -o custom-columns='NODE:.metadata.name,GPU:.metadata.labels.nvidia\.com/gpu\.product,GPUS:.status.allocatable.nvidia\.com/gpu,MEMORY_MIB:.metadata.labels.nvidia\.com/gpu\.memory,STATUS:.status.conditions[?(@.type=="Ready")].status'

# Next (later issues): install the operator and apply an example LlamaDeployment here, e.g.
#   kubectl apply -f examples/<model>.yaml && kubectl get llama

step "the sandbox keeps running"
cat <<MSG
Use it from your shell:   eval "\$(llama-operator sandbox env)"; kubectl get nodes
Prometheus:               $LLAMAOPS_PROMETHEUS_URL
Component status, logs:   llama-operator sandbox status
Stop everything:          llama-operator sandbox down
MSG
