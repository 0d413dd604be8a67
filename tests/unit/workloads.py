"""Workload objects as the API server returns them, for the status tests (test_render_status and
test_render_lws_status)."""

from __future__ import annotations

from typing import Any


def rolled_out_deployment(generation: int, replicas: int = 2) -> dict[str, Any]:
    """A Deployment whose controller has seen ``generation`` and has every replica updated, ready and available."""
    return {
        "kind": "Deployment",
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        },
    }
