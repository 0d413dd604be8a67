#!/usr/bin/env bash
# The README's first command: set up on a fresh machine and run the main job — the operator reconciling the
# Llama-4 Scout example on the local sandbox cluster (fake 8xH100 nodes), its status shown.
source "$(dirname "$0")/lib.sh"
ensure_venv
cd "$ROOT"
llama-operator --version

step "building the sandbox (cached after the first run)"
bash scripts/sandbox-build.sh

step "starting the sandbox: real control plane, fake GPU nodes, kube-state-metrics, Prometheus"
llamaops-sandbox up
eval "$(llamaops-sandbox env)"
RUN_DIR="$LLAMAOPS_CACHE/sandbox/run"

step "fake GPU nodes"
kubectl get nodes -o custom-columns='NODE:.metadata.name,GPU:.metadata.labels.nvidia\.com/gpu\.product,GPUS:.status.allocatable.nvidia\.com/gpu,MEMORY_MIB:.metadata.labels.nvidia\.com/gpu\.memory,STATUS:.status.conditions[?(@.type=="Ready")].status'

step "checking the examples offline (llama-operator validate)"
llama-operator validate examples/llama4-scout.yaml || true

step "installing the LlamaDeployment CRD"
kubectl apply --server-side --force-conflicts -f crds/llamadeployments.llamaops.dev.yaml
kubectl wait --for=condition=Established --timeout=60s crd/llamadeployments.llamaops.dev

step "starting the operator (log: $RUN_DIR/logs/operator-demo.log)"
if [ -f "$RUN_DIR/operator-demo.pid" ]; then kill "$(cat "$RUN_DIR/operator-demo.pid")" 2>/dev/null || true; fi
# Watching the demo's namespace only; its /metrics is where the sandbox's Prometheus scrapes the operator.
setsid llama-operator run --namespace serving --metrics-address 127.0.0.1 --liveness "" \
    >>"$RUN_DIR/logs/operator-demo.log" 2>&1 &
echo $! >"$RUN_DIR/operator-demo.pid"

step "applying examples/llama4-scout.yaml"
kubectl create namespace serving --dry-run=client -o yaml | kubectl apply -f -
# Marked as the demo's: the integration tests clear it (its pods hold fake GPUs the tests need).
kubectl label namespace serving llamaops.dev/demo=true --overwrite
# The token Secret the example references (gated model); a real cluster holds a real token here.
kubectl -n serving create secret generic hf-token --from-literal=token=hf_demo_not_a_real_token \
    --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f examples/llama4-scout.yaml
kubectl -n serving wait --for=condition=Available --timeout=120s llama/llama4-scout

step "the LlamaDeployment, its children and its status"
kubectl -n serving get llama
kubectl -n serving get deployment,service,pdb,pods -l llamaops.dev/deployment=llama4-scout -o wide
kubectl -n serving get llama llama4-scout -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\n"}{end}'
kubectl -n serving get llama llama4-scout -o jsonpath='{"plan per GPU: weights "}{.status.plan.weightsGib}{" GiB, KV cache "}{.status.plan.kvCacheGib}{" GiB, max concurrent full-length sequences "}{.status.plan.maxConcurrentFullLengthSequences}{"\nendpoint: "}{.status.endpoint}{"\n"}'

step "the operator and the sandbox keep running"
cat <<MSG
Use it from your shell:   eval "\$(llamaops-sandbox env)"; kubectl -n serving describe llama llama4-scout
Try a refused config:     llama-operator validate examples/invalid-llama4-vllm083.yaml
Prometheus:               $LLAMAOPS_PROMETHEUS_URL   (operator metrics: llamaops_*)
Component status, logs:   llamaops-sandbox status
Stop everything:          llamaops-sandbox down   (the operator too)
MSG
