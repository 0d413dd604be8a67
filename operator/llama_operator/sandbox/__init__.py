"""The local sandbox cluster: a real control plane built from Go modules, KWOK fake GPU nodes, kube-state-metrics
and Prometheus, all on 127.0.0.1 (`llama-operator sandbox up|down|status|env`).

Pure modules (layout, shapes, crashloop, config) decide what to run and write; pki, processes and cluster do the
I/O. Nothing here imports the operator's own layers: the sandbox is a test bed, not part of the operator.
"""
