"""`llamaops_patch_info{patch,vllm_version}` on vLLM's /metrics: 1 for each patch active in this server."""

_gauge = None


def export_patch_info(applied: list[str], vllm_version: str) -> None:
    global _gauge
    from prometheus_client import Gauge

    if _gauge is None:
        # multiprocess_mode matters only when vLLM runs with PROMETHEUS_MULTIPROC_DIR (several API servers): every
        # process reports the same values, so the max is the truth.
        _gauge = Gauge(
            "llamaops_patch_info",
            "Patches applied by the llama-operator vLLM plugin (1 = active).",
            ["patch", "vllm_version"],
            multiprocess_mode="max",
        )
    for name in applied:
        _gauge.labels(patch=name, vllm_version=vllm_version).set(1)
