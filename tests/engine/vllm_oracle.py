"""vLLM 0.32 as the oracle of the memory planner: its own config construction, model construction and KV-cache
fitting, run on the planner's KV budget, for every case of tests/engine/planner_cases.py.

Engine venv only: ``python -m tests.engine.vllm_oracle CASES.json RESULT.json [JOBS]`` (JOBS worker processes,
forked once vLLM is imported; default 2, 1 on one core).

Per case, as the engine would start it:
* Config: the command line the operator runs (``--model`` as a directory holding the config.json that
  tests/engine/hf_config.py writes from the catalog, TP, PP, ``--kv-cache-dtype``, the extraArgs, ``--distributed-
  executor-backend ray`` when a replica spans nodes as the LeaderWorkerSet launch passes it) through vLLM's CLI
  parser, ``EngineArgs.from_cli_args`` and ``create_engine_config`` (OpenAI-server usage context), with
  ``--max-model-len -1``.
* Model: built on the meta device one pipeline stage at a time under faked TP/PP groups (vLLM's parallel_state
  groups report the case's sizes and ranks; no process group), an EAGLE head beside the last stage as
  load_eagle_model builds it. Its attention layers give the KV-cache specs (the V2 model runner's
  ``get_kv_cache_spec``), its backends the KV layouts; its parameters the weights per GPU (reported, not judged).
* KV cache: what EngineCore._initialize_kv_caches does with the planner's KV bytes on every GPU (register the spec
  managers, ``resolve_kv_cache_layout``, ``get_kv_cache_configs``): auto-fitted, it gives the largest maxModelLen
  vLLM would start with; at the planner's suggestion it accepts or refuses. The suggestion is judged on the same
  config with that length (``model_config.max_model_len``, as vLLM's own auto-fit probes lengths, and
  ``original_max_model_len``), after vLLM's config-time checks of a length (``ModelConfig.get_and_verify_max_len``,
  ``SchedulerConfig.verify_max_model_len``).
Any exception vLLM raises on the way is its refusal (the message says which); every decision is vLLM's code.

Made equal to CUDA (what vLLM decides on the case's GPU), each by the narrowest means:
* Device memory and name: the platform reports the case's GPU (catalog memory, NVML name), and
  ``EngineArgs.get_batch_defaults`` runs its GPU branch (on a CPU it ends with 2048 x world size), so vLLM picks
  its own max_num_batched_tokens and max_num_seqs for that GPU.
* Model Runner V2: vLLM takes it only where Triton works (``vllm.config.vllm.HAS_TRITON``, False on CPU); True as
  on CUDA, so vLLM's own rule picks V2 or V1 (and with it max_concurrent_batches).
* Async scheduling: the CPU platform hook turns it off; the value VllmConfig.__post_init__ chose before the hook is
  put back (CUDA's hook leaves it alone).
* Block size: explicit 16 (``--block-size``), FLASH_ATTN's default and the planner's block; the CPU platform would
  choose 128.
Skipped for speed: initialize_model's bookkeeping for reloading weights in place (record_metadata_for_reloading).

Not made equal (the figures hold for FLASH_ATTN-class backends):
* The attention backends are the CPU's, not the GPU's (FLASH_ATTN, FLASHINFER on Blackwell, TRITON_ATTN below
  compute capability 8.0): backends may adjust a layer's KV spec (``customize_spec``: neither FLASH_ATTN nor the CPU
  backend adjusts the catalog's specs), pin a block size (FLASH_ATTN: head sizes 256 and 512 only) or support other
  KV layouts (the layout is resolved from the CPU backend's).
* Capability checks of quantization methods and kernels (``get_min_capability``, FP8 KV cache on Ampere) do not
  run: the CPU platform reports no compute capability.
* Only the KV step of startup runs: the KV budget is the planner's (weights, activations, CUDA graphs and
  communication buffers are what the planner subtracts, not measured here).
* Each pipeline stage gets the planner's budget for its binding stage; the cases keep layer counts that split
  evenly, so every stage holds the same layers.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

# Before vLLM is imported: quiet logs, and none of the switches an operator deployment does not set.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
for _name in (
    "VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE",
    "VLLM_USE_V2_MODEL_RUNNER",
    "VLLM_USE_RAY_V2_EXECUTOR_BACKEND",
    "VLLM_CPU_KVCACHE_SPACE",
    "VLLM_ALLOW_LONG_MAX_MODEL_LEN",
):
    os.environ.pop(_name, None)

import torch  # noqa: E402
import vllm  # noqa: E402
import vllm.config.vllm as vllm_config_module  # noqa: E402
from vllm.compilation.backends import set_model_tag  # noqa: E402
from vllm.config import VllmConfig, set_current_vllm_config  # noqa: E402
from vllm.distributed import parallel_state  # noqa: E402
from vllm.distributed.kv_transfer.kv_connector.utils import get_current_attn_backends  # noqa: E402
from vllm.engine.arg_utils import EngineArgs  # noqa: E402
from vllm.model_executor.model_loader import utils as model_loader_utils  # noqa: E402
from vllm.model_executor.model_loader.utils import initialize_model  # noqa: E402
from vllm.platforms import current_platform  # noqa: E402
from vllm.usage.usage_lib import UsageContext  # noqa: E402
from vllm.utils.argparse_utils import FlexibleArgumentParser  # noqa: E402
from vllm.utils.torch_utils import set_default_torch_dtype  # noqa: E402
from vllm.v1.attention.backends.utils import get_supported_kv_cache_layouts, resolve_kv_cache_layout  # noqa: E402
from vllm.v1.core.kv_cache_utils import get_kv_cache_configs  # noqa: E402
from vllm.v1.core.single_type_kv_cache_manager import register_all_kvcache_specs  # noqa: E402
from vllm.v1.kv_cache_interface import KVCacheSpec  # noqa: E402
from vllm.v1.worker.gpu.attn_utils import get_kv_cache_spec  # noqa: E402
from vllm.v1.worker.gpu.spec_decode.eagle.utils import maybe_share_target_embed  # noqa: E402

from tests.engine import hf_config  # noqa: E402

BLOCK_SIZE = 16
MIB = 1 << 20
VERDICT_LENGTH = 4096
VERDICT_BUDGET = 64 << 30


class _Gpu:
    """The GPU the platform reports while a case's config is built."""

    memory_bytes = 80 * 1024 * MIB
    name = "NVIDIA H100 80GB HBM3"


def _cuda_equivalent() -> None:
    """The patches the module docstring lists, applied once."""
    platform = type(current_platform)
    vllm_config_module.HAS_TRITON = True
    hook = platform.check_and_update_config.__func__

    def keep_async(cls: type, config: VllmConfig) -> None:
        chosen = config.scheduler_config.async_scheduling
        hook(cls, config)
        config.scheduler_config.async_scheduling = chosen

    platform.check_and_update_config = classmethod(keep_async)
    defaults = EngineArgs.get_batch_defaults.__func__

    def gpu_defaults(cls: type, world_size: int) -> Any:
        # get_batch_defaults ends with CPU-only values (2048 x world size); on a GPU that branch is not taken.
        is_cpu = platform.is_cpu
        platform.is_cpu = classmethod(lambda cls: False)
        try:
            return defaults(cls, world_size)
        finally:
            platform.is_cpu = is_cpu

    EngineArgs.get_batch_defaults = classmethod(gpu_defaults)
    # Bookkeeping for reloading weights in place, a third of the time a model takes to build here.
    model_loader_utils.record_metadata_for_reloading = lambda model: None
    platform.get_device_total_memory = classmethod(lambda cls, device_id=0: _Gpu.memory_bytes)
    platform.get_device_name = classmethod(lambda cls, device_id=0: _Gpu.name)


class _ProcessGroup:
    def __init__(self, size: int, rank: int) -> None:
        self._size, self._rank = size, rank

    def size(self) -> int:
        return self._size

    def rank(self) -> int:
        return self._rank


class _Group:
    """Stands in for a GroupCoordinator while a model is constructed: sizes and ranks, no communication."""

    def __init__(self, name: str, size: int, rank: int) -> None:
        self.unique_name = name
        self.world_size, self.rank_in_group, self.rank, self.local_rank = size, rank, rank, rank
        self.ranks = list(range(size))
        self.device_group = self.cpu_group = _ProcessGroup(size, rank)
        self.device_communicator = None
        self.use_device_communicator = False

    @property
    def is_first_rank(self) -> bool:
        return self.rank_in_group == 0

    @property
    def is_last_rank(self) -> bool:
        return self.rank_in_group == self.world_size - 1


@contextlib.contextmanager
def _parallel_groups(tp: int, pp: int, pp_rank: int) -> Iterator[None]:
    sizes = {"_TP": (tp, 0), "_PP": (pp, pp_rank), "_WORLD": (tp * pp, pp_rank * tp)}
    names = ("_TP", "_PP", "_WORLD", "_DP", "_EP", "_DCP", "_PCP", "_ETP", "_EPLB", "_INNER_DP_WORLD")
    saved = {name: getattr(parallel_state, name, None) for name in names}
    for name in names:
        size, rank = sizes.get(name, (1, 0))
        setattr(parallel_state, name, _Group(name, size, rank))
    try:
        yield
    finally:
        for name, group in saved.items():
            setattr(parallel_state, name, group)


@cache
def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="vllm-oracle-"))


@cache
def model_dir(name: str) -> str:
    return str(hf_config.write(hf_config.hf_config(hf_config.catalog()[name]), _workdir() / name))


@cache
def draft_dir(name: str) -> str:
    return str(hf_config.write(hf_config.eagle3_head_config(hf_config.catalog()[name]), _workdir() / f"{name}-eagle3"))


@cache
def _parser() -> FlexibleArgumentParser:
    return EngineArgs.add_cli_args(FlexibleArgumentParser())


def argv(case: dict[str, Any], max_model_len: int) -> list[str]:
    """The command line of the case, with the local config directories standing in for the hub ids."""
    extra = list(case["extra_args"])
    for index, arg in enumerate(extra[:-1]):
        if arg == "--speculative-config":
            spec = json.loads(extra[index + 1])
            extra[index + 1] = json.dumps({**spec, "model": draft_dir(case["model"])})
    tp, pp = case["tp"], case["pp"]
    multi_node = tp * pp > case["gpus_per_node"]
    return [
        "--model", model_dir(case["model"]), "--skip-tokenizer-init", "--load-format", "dummy",
        "--tensor-parallel-size", str(tp), "--pipeline-parallel-size", str(pp),
        "--kv-cache-dtype", case["kv_cache_dtype"], "--block-size", str(BLOCK_SIZE),
        "--max-model-len", str(max_model_len),
        *(["--distributed-executor-backend", "ray"] if multi_node else []),
        *extra,
    ]  # fmt: skip


def _gpu(case: dict[str, Any]) -> None:
    _Gpu.memory_bytes = case["gpu_memory_mib"] * MIB
    _Gpu.name = case["gpu"].replace("-", " ")


def engine_config(case: dict[str, Any], max_model_len: int) -> VllmConfig:
    _gpu(case)
    args = EngineArgs.from_cli_args(_parser().parse_args(argv(case, max_model_len)))
    return args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)


def batch_defaults(case: dict[str, Any]) -> tuple[int | None, int | None]:
    """vLLM's OpenAI-server defaults (max_num_batched_tokens, max_num_seqs) on the case's GPU: the only thing about
    the GPU, besides the budget, that the config depends on (a cache key; the config itself is built by vLLM)."""
    _gpu(case)
    tokens, seqs = EngineArgs.get_batch_defaults(case["tp"] * case["pp"])
    return tokens.get(UsageContext.OPENAI_API_SERVER), seqs.get(UsageContext.OPENAI_API_SERVER)


class Stage:
    """One pipeline stage as its workers report it to the engine core."""

    def __init__(self, specs: dict[str, KVCacheSpec], layouts: list[str], weights: int) -> None:
        self.specs, self.layouts, self.weights = specs, layouts, weights


def _build(config: VllmConfig, tp: int, pp: int, rank: int) -> Stage:
    """One pipeline stage built on the meta device: its KV cache specs, the KV layouts its attention backends
    support (Worker.get_supported_kv_cache_layouts) and its weight bytes on one GPU. The last stage also builds the
    EAGLE head the way load_eagle_model does (with the draft overrides, sharing the target's input embedding:
    published EAGLE-3 heads carry their own lm_head but no embedding)."""
    with _parallel_groups(tp, pp, rank), set_default_torch_dtype(config.model_config.dtype), torch.device("meta"):
        target = initialize_model(vllm_config=config)
        models = [target]
        spec = config.speculative_config
        if spec is not None and spec.draft_model_config is not None and rank == pp - 1:
            with set_model_tag("eagle_head"):
                draft = initialize_model(
                    vllm_config=spec.apply_draft_overrides(config), model_config=spec.draft_model_config
                )
            language = target.get_language_model() if hasattr(target, "get_language_model") else target
            maybe_share_target_embed(draft, draft.model, language.model)
            models.append(draft)
        with set_current_vllm_config(config):
            specs = get_kv_cache_spec(config)
        layouts = [layout.name for layout in get_supported_kv_cache_layouts(get_current_attn_backends(config))]
    unique = {id(p): p for model in models for p in model.parameters()}
    weights = sum(p.numel() * p.element_size() for p in unique.values())
    return Stage(specs, layouts, weights)


def _build_key(case: dict[str, Any]) -> tuple[Any, ...]:
    # The hybrid manager is a scheduler decision: the layers and their specs are the same either way.
    extra = tuple(arg for arg in case["extra_args"] if arg != "--disable-hybrid-kv-cache-manager")
    return case["model"], case["tp"], case["pp"], case["kv_cache_dtype"], extra


_STAGES: dict[tuple[Any, ...], list[Stage]] = {}
_CONFIGS: dict[tuple[Any, ...], VllmConfig] = {}
_FITS: dict[tuple[Any, ...], tuple[bool, int, str]] = {}


def stages(case: dict[str, Any]) -> list[Stage]:
    """The case's pipeline stages (the GPU only changes the budget, so it is not part of the key)."""
    key = _build_key(case)
    if key not in _STAGES:
        tp, pp = case["tp"], case["pp"]
        _STAGES[key] = [_build(engine_config(case, -1), tp, pp, rank) for rank in range(pp)]
    return _STAGES[key]


def auto_config(case: dict[str, Any]) -> VllmConfig:
    """The case's config with ``--max-model-len -1`` (vLLM auto-fits the length to the KV memory)."""
    key = (case["model"], case["tp"], case["pp"], case["kv_cache_dtype"], tuple(case["extra_args"]))
    key += (case["tp"] * case["pp"] > case["gpus_per_node"], batch_defaults(case))
    if key not in _CONFIGS:
        _CONFIGS[key] = engine_config(case, -1)
    return _CONFIGS[key]


def fit(config: VllmConfig, built: list[Stage], budget: int, length: int | None) -> tuple[bool, int, str]:
    """``_fit``, once per config, budget and length (GPUs of the same memory give the same budgets)."""
    key = (id(config), id(built), budget, length)
    if key not in _FITS:
        _FITS[key] = _fit(config, built, budget, length)
    return _FITS[key]


def _fit(config: VllmConfig, built: list[Stage], budget: int, length: int | None) -> tuple[bool, int, str]:
    """What EngineCore._initialize_kv_caches does with ``budget`` bytes per GPU (register the spec managers,
    resolve the KV layout, get_kv_cache_configs), at max_model_len ``length`` or auto-fitted (None): (accepted,
    the max_model_len it leaves, vLLM's message). ``config`` is left as it was."""
    model = config.model_config
    saved = model.max_model_len, model.original_max_model_len, config.cache_config.kv_cache_layout
    if length is not None:
        # A config built with --max-model-len LENGTH: the two fields that differ (vLLM's own auto-fit probes
        # lengths the same way, through model_config.max_model_len).
        model.max_model_len = model.original_max_model_len = length
    specs = [dict(stage.specs) for stage in built]
    try:
        register_all_kvcache_specs(config)
        resolve_kv_cache_layout(
            config, [stage.layouts for stage in built], [spec for stage in specs for spec in stage.values()]
        )
        get_kv_cache_configs(config, specs, [budget] * len(specs))
        return True, model.max_model_len, ""
    except ValueError as error:  # vLLM's refusal
        return False, 0, str(error)
    except Exception as error:  # vLLM crashing on the shape is a refusal too; the type says which
        return False, 0, _refusal(error)
    finally:
        model.max_model_len, model.original_max_model_len, config.cache_config.kv_cache_layout = saved


def length_check(config: VllmConfig, length: int) -> str:
    """vLLM's config-time checks of a max_model_len (ModelConfig.get_and_verify_max_len against the model's
    derived maximum, SchedulerConfig.verify_max_model_len against the batch settings); "" when it passes."""
    try:
        config.model_config.get_and_verify_max_len(length)
        config.scheduler_config.verify_max_model_len(length)
    except ValueError as error:
        return _refusal(error)
    return ""


def _spec_counts(stage: Stage) -> dict[str, int]:
    counts: dict[str, int] = {}
    for spec in stage.specs.values():
        counts[type(spec).__name__] = counts.get(type(spec).__name__, 0) + 1
    return counts


def _refusal(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) < 2000 else text[:2000] + " ..."


def judge(case: dict[str, Any]) -> dict[str, Any]:
    """vLLM's verdicts on one case."""
    out: dict[str, Any] = {"accepted": False, "stage": "config", "error": ""}
    try:
        model_dir(case["model"])
    except hf_config.NotExpressible as error:
        return {"accepted": None, "harness_error": str(error)}
    try:
        built = stages(case)
        auto = auto_config(case)
    except Exception as error:  # vLLM's refusal, whatever it raises
        out["error"] = _refusal(error)
        out["traceback"] = traceback.format_exc(limit=-4)
        return out
    out.update(accepted=True, stage="built", weights_bytes=[stage.weights for stage in built])
    out["layers"] = [_spec_counts(stage) for stage in built]
    plan = case["as_written"]["plan"]
    if case["kind"] == "verdict":
        # The shape must also get through the KV-cache step: a short length on ample memory.
        ok, _, message = fit(auto, built, VERDICT_BUDGET, VERDICT_LENGTH)
        out.update(accepted=ok, stage="kv_cache" if not ok else "built", error=message)
        return out
    if plan is None:
        return out
    budget, suggested = plan["kv_cache_bytes"], plan["suggested"]
    out["max_num_batched_tokens"] = auto.scheduler_config.max_num_batched_tokens
    out["max_in_flight_tokens"] = auto.max_in_flight_tokens
    out["async_scheduling"] = auto.scheduler_config.async_scheduling
    out["v2_model_runner"] = auto.use_v2_model_runner
    out["hybrid_kv_cache"] = not auto.scheduler_config.disable_hybrid_kv_cache_manager
    out["model_max_len"] = auto.model_config.max_model_len
    accepted, limit, message = fit(auto, built, budget, None)
    out["limit"] = limit if accepted else 0
    out["limit_error"] = message
    if suggested > 0:
        refused = length_check(auto, suggested)
        if refused:
            out["at_suggestion"] = {"accepted": False, "stage": "config", "error": refused}
        else:
            ok, _, message = fit(auto, built, budget, suggested)
            out["at_suggestion"] = {"accepted": ok, "stage": "kv_cache", "error": message}
    return out


def _judge_all(cases: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {ident: judge(case) for ident, case in cases.items()}


def _shares(cases: dict[str, dict[str, Any]], jobs: int) -> list[dict[str, dict[str, Any]]]:
    """Cases split by model (a model's builds and configs are shared by its cases), heaviest first."""
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for ident, case in cases.items():
        by_model.setdefault(case["model"], {})[ident] = case
    shares: list[dict[str, dict[str, Any]]] = [{} for _ in range(jobs)]
    for group in sorted(by_model.values(), key=len, reverse=True):
        min(shares, key=len).update(group)
    return [share for share in shares if share]


def main() -> None:
    cases_path, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    jobs = int(sys.argv[3]) if len(sys.argv) > 3 else min(2, os.cpu_count() or 1)
    cases: dict[str, dict[str, Any]] = json.loads(cases_path.read_text())["cases"]
    _cuda_equivalent()
    started = time.monotonic()
    # Forked after vLLM is imported and patched: each worker starts warm.
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        results = {
            ident: verdict for part in pool.map(_judge_all, _shares(cases, jobs)) for ident, verdict in part.items()
        }
    version = vllm.__version__.split("+")[0]
    out = {"vllm_version": version, "seconds": round(time.monotonic() - started, 1), "cases": results}
    result_path.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
