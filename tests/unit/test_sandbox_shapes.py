import pydantic
import pytest
import yaml

from llamaops_sandbox import shapes
from llamaops_sandbox.layout import find_repo

REPO_ROOT = find_repo()


def test_default_shape_is_two_h100_nodes_and_one_h200_node_of_eight_gpus():
    shape = shapes.parse_shape(yaml.safe_load((REPO_ROOT / "e2e" / "nodes.yaml").read_text()))
    nodes = shapes.nodes(shape)
    products = [n["metadata"]["labels"]["nvidia.com/gpu.product"] for n in nodes]
    assert products == ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-80GB-HBM3", "NVIDIA-H200"]
    assert [n["status"]["allocatable"]["nvidia.com/gpu"] for n in nodes] == ["8", "8", "8"]
    assert [n["metadata"]["name"] for n in nodes] == ["h100-0", "h100-1", "h200-0"]


def test_node_carries_gfd_labels_capacity_and_kwok_annotation():
    pool = shapes.Pool(
        name="a100",
        count=1,
        gpu=shapes.GPU(product="NVIDIA-A100-SXM4-40GB", count=4, memoryMiB=40960, computeMajor=8, computeMinor=0),
    )
    node = shapes.node_manifest(pool, 3)
    labels = node["metadata"]["labels"]
    assert node["metadata"]["name"] == "a100-3"
    assert labels["nvidia.com/gpu.memory"] == "40960"
    assert labels["nvidia.com/gpu.count"] == "4"
    assert labels["nvidia.com/gpu.compute.major"] == "8"
    assert "nvidia.com/gpu.family" not in labels
    assert node["metadata"]["annotations"] == {shapes.KWOK_NODE_ANNOTATION: "fake"}
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "4"
    assert node["status"]["capacity"] == node["status"]["allocatable"]


def test_large_shape_yields_a_thousand_distinct_nodes():
    gpu = {"product": "NVIDIA-H100-80GB-HBM3", "count": 8, "memoryMiB": 81559}
    shape = shapes.parse_shape({"pools": [{"name": "big", "count": 1000, "gpu": gpu}]})
    names = {n["metadata"]["name"] for n in shapes.nodes(shape)}
    assert len(names) == 1000


@pytest.mark.parametrize(
    "pools",
    [
        [{"name": "Bad_Name", "count": 1, "gpu": {"product": "x", "count": 1, "memoryMiB": 1}}],
        [{"name": "a", "count": 1, "gpu": {"product": "x", "count": 0, "memoryMiB": 1}}],
        [{"name": "a", "count": 1, "gpu": {"product": "x", "count": 1, "memoryMiB": 1}, "typo": 1}],
    ],
)
def test_invalid_shapes_are_rejected(pools):
    with pytest.raises(pydantic.ValidationError):
        shapes.parse_shape({"pools": pools})


def test_duplicate_pool_names_are_rejected():
    pool = {"name": "a", "count": 1, "gpu": {"product": "x", "count": 1, "memoryMiB": 1}}
    with pytest.raises(ValueError, match="unique"):
        shapes.parse_shape({"pools": [pool, pool]})
