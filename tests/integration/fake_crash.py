"""Pod annotations for KWOK's crash stage (e2e/kwok): the serving container of a fake pod dies with a captured
CUDA failure's text, for tests and benchmarks of the operator's crash-loop handling."""

from __future__ import annotations

UPSTREAM_083 = "docker.io/vllm/vllm-openai:v0.8.3"


def crash(case: str, when: str | None = None, message: str | None = None) -> dict[str, str]:
    """Crash as capture ``case`` 2 s after start; only while the container's image or args contain ``when``, and
    with ``message`` instead of the capture's text when given."""
    annotations = {"llamaops.dev/fake-crash": case, "llamaops.dev/fake-crash-after": "2s"}
    if when:
        annotations["llamaops.dev/fake-crash-when"] = when
    if message:
        annotations["llamaops.dev/fake-crash-message"] = message
    return annotations
