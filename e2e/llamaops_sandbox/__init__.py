"""The local sandbox cluster: a real control plane built from Go modules, KWOK fake GPU nodes, kube-state-metrics
and Prometheus, all on 127.0.0.1 (`llamaops-sandbox up|down|status|env`). A development package (e2e/pyproject.toml),
never part of the operator's wheel or image.

Pure modules (layout, pins, shapes, crashloop, config) decide what to run and write; pki, processes and cluster do
the I/O. Of the operator it imports only the knowledge base (the real node's GPU labels come from its catalog): the
sandbox is a test bed, not part of the operator.
"""
