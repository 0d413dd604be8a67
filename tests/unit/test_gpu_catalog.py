"""The GPU catalog (knowledge/data/gpus.yaml): product labels as GPU feature discovery writes them, memory, compute
capability and the vLLM defaults derived from it, and GFD's -SHARED / -MIG- suffixes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from llama_operator.knowledge import load_knowledge
from llama_operator.knowledge.catalog import _read, build_knowledge
from llama_operator.knowledge.gpus import (
    attention_backend_for,
    parse_compute_capability,
    parse_product,
)

KNOWLEDGE = load_knowledge()
# A Kubernetes label value: at most 63 characters, alphanumerics at both ends, '-', '_' and '.' inside.
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")

# NVML device names as NVIDIA's Linux driver README lists them (and nvidia-smi prints them), with the catalog entry
# GFD's label for each must find: the label is the name with spaces made hyphens.
NVML_NAMES = {
    "NVIDIA A10G": "NVIDIA-A10G",
    "NVIDIA A10": "NVIDIA-A10",
    "NVIDIA A40": "NVIDIA-A40",
    "NVIDIA L4": "NVIDIA-L4",
    "NVIDIA L40": "NVIDIA-L40",
    "NVIDIA L40S": "NVIDIA-L40S",
    "NVIDIA RTX 6000 Ada Generation": "NVIDIA-RTX-6000-Ada-Generation",
    "NVIDIA A100-SXM4-80GB": "NVIDIA-A100-SXM4-80GB",
    "NVIDIA A100-SXM4-40GB": "NVIDIA-A100-SXM4-40GB",
    "NVIDIA A100 80GB PCIe": "NVIDIA-A100-80GB-PCIe",
    "NVIDIA A100-PCIE-40GB": "NVIDIA-A100-PCIE-40GB",
    "NVIDIA H100 80GB HBM3": "NVIDIA-H100-80GB-HBM3",
    "NVIDIA H100 PCIe": "NVIDIA-H100-PCIe",
    "NVIDIA H100 NVL": "NVIDIA-H100-NVL",
    "NVIDIA H20": "NVIDIA-H20",
    "NVIDIA H200": "NVIDIA-H200",
    "NVIDIA H200 NVL": "NVIDIA-H200-NVL",
    "NVIDIA GH200 480GB": "NVIDIA-GH200-480GB",
    "NVIDIA GH200 144G HBM3e": "NVIDIA-GH200-144G-HBM3e",
    "NVIDIA B200": "NVIDIA-B200",
    "NVIDIA GB200": "NVIDIA-GB200",
    "NVIDIA B300 SXM6 AC": "NVIDIA-B300-SXM6-AC",
    "NVIDIA GB300": "NVIDIA-GB300",
    "NVIDIA RTX PRO 6000 Blackwell Server Edition": "NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition",
    "NVIDIA RTX PRO 6000 Blackwell Workstation Edition": "NVIDIA-RTX-PRO-6000-Blackwell-Workstation-Edition",
    "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition": (
        "NVIDIA-RTX-PRO-6000-Blackwell-Max-Q-Workstation-Edition"
    ),
    "Tesla T4": "Tesla-T4",
}

# Labels read off real clusters' nodes (the sources in gpus.yaml): each must find its board.
SEEN_ON_NODES = [
    "NVIDIA-A10G",
    "NVIDIA-A10",
    "NVIDIA-L4",
    "NVIDIA-L40",
    "NVIDIA-L40S",
    "NVIDIA-H100-80GB-HBM3",
    "NVIDIA-H100-NVL",
    "NVIDIA-H20",
    "NVIDIA-H200",
    "NVIDIA-H200-NVL",
    "NVIDIA-GH200-480GB",
    "NVIDIA-A100-SXM4-80GB",
    "NVIDIA-A100-80GB-PCIe",
    "NVIDIA-A100-PCIE-40GB",
    "NVIDIA-RTX-PRO-6000-Blackwell-Max-Q-Workstation-Edition",
    "Tesla-T4",
]


@pytest.mark.parametrize(("nvml", "product"), sorted(NVML_NAMES.items()))
def test_the_gfd_label_of_each_nvml_name_finds_its_board(nvml: str, product: str) -> None:
    gpu = KNOWLEDGE.gpu(nvml.replace(" ", "-"))
    assert gpu is not None, nvml
    assert gpu.product == product


def test_every_catalog_product_is_an_nvml_name_the_table_above_covers() -> None:
    assert {gpu.product for gpu in KNOWLEDGE.gpus} == set(NVML_NAMES.values())


@pytest.mark.parametrize("label", SEEN_ON_NODES)
def test_labels_seen_on_real_nodes_are_catalogued(label: str) -> None:
    assert KNOWLEDGE.gpu(label) is not None


@pytest.mark.parametrize("gpu", KNOWLEDGE.gpus, ids=lambda gpu: gpu.product)
def test_every_product_is_a_plain_label_value(gpu: Any) -> None:
    assert LABEL_VALUE.match(gpu.product), gpu.product
    parsed = parse_product(gpu.product)
    assert (parsed.base, parsed.mig_profile, parsed.shared) == (gpu.product, None, False)


@pytest.mark.parametrize("gpu", KNOWLEDGE.gpus, ids=lambda gpu: gpu.product)
def test_memory_compute_capability_and_vllm_defaults_agree(gpu: Any) -> None:
    # nvidia-smi's MiB figure is below the marketing GB (GB are 10^9 bytes; ECC and firmware take their share).
    assert 14 * 1024 < gpu.memory_mib < 300 * 1024
    assert gpu.compute_capability is not None
    assert gpu.compute_capability in {(7, 5), (8, 0), (8, 6), (8, 9), (9, 0), (10, 0), (10, 3), (12, 0)}
    assert gpu.attention_backend == attention_backend_for(gpu.compute_capability)
    assert gpu.gpus_per_node in (1, 2, 4, 8)
    assert gpu.sources
    assert all(source.strip() for source in gpu.sources)
    assert gpu.observed_nodes == 0


def test_figures_read_off_devices() -> None:
    expected = {
        "NVIDIA-A10G": 23028,
        "NVIDIA-L4": 23034,
        "NVIDIA-H100-NVL": 95830,
        "NVIDIA-H20": 97871,
        "NVIDIA-GH200-480GB": 97871,
        "NVIDIA-B200": 183359,
        "NVIDIA-GB200": 189471,
        "NVIDIA-B300-SXM6-AC": 275040,
        "NVIDIA-GB300": 284208,
        "Tesla-T4": 15360,
    }
    assert {product: KNOWLEDGE.gpu(product).memory_mib for product in expected} == expected  # type: ignore[union-attr]


def test_an_assumed_figure_says_so() -> None:
    gh200 = KNOWLEDGE.gpu("NVIDIA-GH200-144G-HBM3e")
    assert gh200 is not None
    assert any(source.startswith("verify:") and "assumed" in source for source in gh200.sources)


def test_attention_backend_follows_vllm_032_priorities() -> None:
    assert attention_backend_for((10, 0)) == attention_backend_for((10, 3)) == "FLASHINFER"
    assert attention_backend_for((9, 0)) == attention_backend_for((12, 0)) == "FLASH_ATTN"
    assert attention_backend_for((8, 0)) == attention_backend_for((8, 9)) == "FLASH_ATTN"
    assert attention_backend_for((7, 5)) == "TRITON_ATTN"
    assert attention_backend_for(None) == "FLASH_ATTN"


def test_compute_capability_is_major_dot_minor() -> None:
    assert parse_compute_capability("10.3") == (10, 3)
    with pytest.raises(ValueError, match=r"MAJOR\.MINOR"):
        parse_compute_capability("9")


def test_aliases_are_unique_and_a_duplicate_is_refused() -> None:
    keys = [key.lower() for gpu in KNOWLEDGE.gpus for key in (gpu.product, *gpu.aliases)]
    assert len(keys) == len(set(keys))
    gpus = _read("gpus.yaml")
    gpus["gpus"][1]["aliases"] = [*gpus["gpus"][1].get("aliases", []), gpus["gpus"][0]["aliases"][0]]
    with pytest.raises(ValueError, match="listed twice"):
        build_knowledge(_read("models.yaml"), gpus, _read("known_issues.yaml"), _read("planner.yaml"))


@pytest.mark.parametrize(
    ("label", "base", "profile", "shared"),
    [
        ("NVIDIA-A10G", "NVIDIA-A10G", None, False),
        ("NVIDIA-A10G-SHARED", "NVIDIA-A10G", None, True),
        ("nvidia-a10g-shared", "nvidia-a10g", None, True),
        ("NVIDIA-A100-80GB-PCIe-MIG-1g.10gb", "NVIDIA-A100-80GB-PCIe", "1g.10gb", False),
        ("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb-SHARED", "NVIDIA-A100-SXM4-40GB", "1g.5gb", True),
        ("NVIDIA-H100-80GB-HBM3-MIG-INVALID", "NVIDIA-H100-80GB-HBM3", "INVALID", False),
        (" Tesla-T4 ", "Tesla-T4", None, False),
        ("-SHARED", "-SHARED", None, False),
    ],
)
def test_gfd_suffixes_are_split_off(label: str, base: str, profile: str | None, shared: bool) -> None:
    parsed = parse_product(label)
    assert (parsed.base, parsed.mig_profile, parsed.shared) == (base, profile, shared)
    unshared = label.strip()[: -len("-SHARED")] if shared else label.strip()
    assert parsed.unshared == unshared


def test_the_readme_lists_every_catalog_product() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## GPUs", 1)[1].split("\n## ", 1)[0]
    assert [gpu.product for gpu in KNOWLEDGE.gpus if f"`{gpu.product}`" not in section] == []
