"""The memory planner against vLLM's published Llama-4 deployments (blog.vllm.ai/2025/04/05/llama4.html, vLLM 0.8.3).

Each published deployment must be judged to fit, and the planner's largest max_model_len must land near the
published figure. Where and why the figures differ (knowledge/data/planner.yaml has the full note): the four are
not consistent with any GPU-independent overhead. Scout's 3.6M on 8xH200 bounds its non-KV, non-weight memory at
<= 18.6 GiB per GPU, while a maximum within 15% of 1M on 8xH100 would need >= 20.0 GiB; we read the H100 "up to
1M" as a round figure and keep the H200 one, so Scout on H100 comes out about 23% above the blog.
"""

from __future__ import annotations

import pytest

from llama_operator.planning import validate

SCOUT = "meta-llama/Llama-4-Scout-17B-16E-Instruct"
MAVERICK_FP8 = "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8"
H100 = "NVIDIA-H100-80GB-HBM3"
H200 = "NVIDIA-H200"
GIB = 1 << 30
KV_BYTES_PER_TOKEN_TP8 = 48 * 2 * 1 * 128 * 2  # 48 layers, K and V, one KV head per GPU, head_dim 128, bf16

# (model, GPU, published max-model-len or None for "not given", published context, tolerance)
PUBLISHED = [
    (SCOUT, H100, 1_000_000, 1_000_000, 0.25),  # the documented exception, see the module docstring
    (MAVERICK_FP8, H100, 430_000, 430_000, 0.15),
    (SCOUT, H200, 3_600_000, 3_600_000, 0.15),
    (MAVERICK_FP8, H200, None, 1_000_000, 0.15),  # the blog passes no --max-model-len: the model's 1,048,576
]


def _spec(model: str, gpu: str, max_model_len: int | None) -> dict[str, object]:
    engine: dict[str, object] = {"vllmVersion": "0.8.3", "tensorParallelSize": 8, "patched": True}
    if max_model_len is not None:
        engine["maxModelLen"] = max_model_len
    return {
        "apiVersion": "llamaops.dev/v1alpha1",
        "kind": "LlamaDeployment",
        "metadata": {"name": "published"},
        "spec": {"model": {"name": model}, "engine": engine, "resources": {"gpuProduct": gpu}},
    }


@pytest.mark.parametrize(("model", "gpu", "max_model_len", "published", "tolerance"), PUBLISHED)
def test_published_deployment_fits_and_matches(
    model: str, gpu: str, max_model_len: int | None, published: int, tolerance: float
) -> None:
    result = validate(_spec(model, gpu, max_model_len))
    assert result.valid, [finding for finding in result.findings if finding.severity == "error"]
    assert result.plan is not None
    fits = result.plan.max_model_len_that_fits
    assert fits >= published, f"{model} on {gpu}: planner says {fits:,} fits, below the published {published:,}"
    assert abs(fits - published) / published <= tolerance, f"{fits:,} vs published {published:,}"


def test_published_figures_bound_scout_overhead_inconsistently() -> None:
    """Why Scout on H100 needs the wider tolerance: the published figures alone force it (no planner involved)."""
    weights = 109e9 * 2 / 8 / GIB
    usable_h100, usable_h200 = 81559 / 1024 * 0.9, 143771 / 1024 * 0.9
    overhead_max_h200 = usable_h200 - weights - 3_600_000 * KV_BYTES_PER_TOKEN_TP8 / GIB
    overhead_min_h100_within_15 = usable_h100 - weights - 1_150_000 * KV_BYTES_PER_TOKEN_TP8 / GIB
    assert overhead_max_h200 < overhead_min_h100_within_15
