"""The remedies: what each changes, when it applies, and the spec it leads to (pure).

A remedy never rewrites the user's spec. It yields ``RemediationOverrides`` (kept in status) that the reconcile
applies on top of the spec: ``effective_spec`` for the planner, ``running_config`` for a rollback's verbatim
image, arguments and maxModelLen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llama_operator.api import EffectiveConfig, LastKnownGood, LlamaDeploymentSpec
from llama_operator.api.status import RemediationOverrides
from llama_operator.knowledge import Knowledge
from llama_operator.planning.args import image as planned_image
from llama_operator.planning.engine import engine_settings, flag_values
from llama_operator.planning.memory import plan_memory
from llama_operator.planning.resolve import resolve

Action = Literal["SwitchToPatchedImage", "EnableTokenGuard", "SetMaxModelLen", "Rollback"]

# Per known issue, the remedies Auto tries in order (before falling back to a rollback). The ids are the
# registry's (knowledge/data/known_issues.yaml); a unit test checks that each exists there.
KNOWN_ISSUE_REMEDIES: dict[str, tuple[Action, ...]] = {
    # The patch clips the block indices (PR #16209's fix) without changing what users may send; a chunk-aligned
    # max_model_len removes the partial last chunk when the patched image is not an option.
    "chunked_local_attention_block_table_overrun": ("SwitchToPatchedImage", "SetMaxModelLen"),
    # The token guard (in the patched image) answers out-of-vocabulary ids with HTTP 400.
    "out_of_vocab_token_ids": ("EnableTokenGuard",),
}


@dataclass(frozen=True, slots=True)
class Change:
    """One applicable remedy: the overrides after it, and what it changes in words."""

    action: Action
    overrides: RemediationOverrides
    before: str
    after: str


def effective_spec(spec: LlamaDeploymentSpec, overrides: RemediationOverrides | None) -> LlamaDeploymentSpec:
    """The spec the planner should see: the user's, with the engine settings remediation overrides. A rollback
    (``args``) replaces the planned config instead (``running_config``): the spec stays the user's."""
    if overrides is None or overrides.args is not None:
        return spec
    updates: dict[str, object] = {}
    if overrides.patched is not None:
        updates["patched"] = overrides.patched
    if overrides.image is not None:
        updates["image"] = overrides.image
    if overrides.max_model_len is not None:
        updates["max_model_len"] = overrides.max_model_len
    if not updates:
        return spec
    return spec.model_copy(update={"engine": spec.engine.model_copy(update=updates)})


def recorded_max_model_len(args: list[str], recorded: int | None) -> int | None:
    """The maxModelLen a rollback target runs with: as recorded, or (a record of an older operator, which kept only
    the arguments) read from its --max-model-len once."""
    if recorded is not None:
        return recorded
    value = flag_values(args).get("--max-model-len", "")
    return int(value) if value.isdigit() else None


def running_config(planned: EffectiveConfig, overrides: RemediationOverrides | None) -> EffectiveConfig:
    """What runs: the config planned from ``effective_spec``, or a rollback's image, arguments and maxModelLen."""
    if overrides is None or overrides.args is None:
        return planned
    max_len = recorded_max_model_len(overrides.args, overrides.max_model_len)
    return planned.model_copy(
        update={
            "image": overrides.image or planned.image,
            "args": list(overrides.args),
            "max_model_len": planned.max_model_len if max_len is None else max_len,
        }
    )


def patched_image(spec: LlamaDeploymentSpec, knowledge: Knowledge) -> str:
    """The operator's patched image for the spec's vLLM version."""
    return planned_image(spec.model_copy(update={"engine": spec.engine.model_copy(update={"image": None})}), knowledge)


def _current_image(spec: LlamaDeploymentSpec, knowledge: Knowledge) -> str:
    return planned_image(spec, knowledge)


def _patched(
    action: Action, issue_id: str, spec: LlamaDeploymentSpec, overrides: RemediationOverrides, knowledge: Knowledge
) -> Change | None:
    issue = knowledge.issue(issue_id)
    if issue is None or not issue.patched_in(spec.engine.vllm_version):
        return None  # no patched image guards this issue on this vLLM version
    target = patched_image(
        spec.model_copy(update={"engine": spec.engine.model_copy(update={"patched": True})}), knowledge
    )
    current = _current_image(spec, knowledge)
    if spec.engine.patched and current == target:
        return None  # already running it: the patch did not stop this crash
    what = (
        "the plugin clips chunked-attention block indices"
        if action == "SwitchToPatchedImage"
        else ("the plugin's token guard answers out-of-vocabulary token ids with HTTP 400")
    )
    return Change(
        action,
        replace_overrides(overrides, action, patched=True, image=target),
        before=f"image {current} (patched: {str(spec.engine.patched).lower()})",
        after=f"image {target} (patched: true; {what})",
    )


def chunk_aligned_max_model_len(spec: LlamaDeploymentSpec, knowledge: Knowledge) -> tuple[int, int, int] | None:
    """(current, target, largest that fits): a max_model_len that is a multiple of the model's
    attention_chunk_size and that the memory plan allows, or None when the current one already is a multiple or
    none fits. The next multiple up is preferred (no request that fitted before is refused), else the largest
    multiple that fits."""
    resolved = resolve(spec, knowledge)
    model = resolved.model
    if model is None or not model.attention_chunk_size:
        return None
    chunk = model.attention_chunk_size
    settings = engine_settings(spec, model, resolved.gpu, knowledge)
    current = settings.max_model_len
    if current % chunk == 0:
        return None
    limit = model.derived_max_model_len()
    if resolved.gpu is not None:
        limit = min(limit, plan_memory(model, resolved.gpu, settings, knowledge).max_model_len_that_fits)
    up = -(-current // chunk) * chunk
    if up <= limit:
        return current, up, limit
    largest = limit // chunk * chunk
    return (current, largest, limit) if largest >= chunk else None


def _max_model_len(spec: LlamaDeploymentSpec, overrides: RemediationOverrides, knowledge: Knowledge) -> Change | None:
    aligned = chunk_aligned_max_model_len(spec, knowledge)
    if aligned is None:
        return None
    current, target, limit = aligned
    return Change(
        "SetMaxModelLen",
        replace_overrides(overrides, "SetMaxModelLen", max_model_len=target),
        before=f"maxModelLen {current}",
        after=f"maxModelLen {target} (a multiple of the attention chunk; the memory plan allows up to {limit})",
    )


def _rollback(
    overrides: RemediationOverrides, good: LastKnownGood | None, running: EffectiveConfig | None
) -> Change | None:
    if good is None or not good.image:
        return None
    if overrides.args is not None:
        return None  # already rolled back: there is nothing older to go to
    if running is not None and running.image == good.image and list(running.args) == list(good.args):
        return None  # what crashes is the last known good configuration itself
    before = f"image {running.image}, args {' '.join(running.args)}" if running else "the current configuration"
    seen = f", healthy at {good.time}" if good.time else ""
    return Change(
        "Rollback",
        RemediationOverrides(
            generation=overrides.generation,
            action="Rollback",
            image=good.image,
            args=list(good.args),
            max_model_len=recorded_max_model_len(good.args, good.max_model_len),
        ),
        before=before[:4000],
        after=f"lastKnownGood (generation {good.generation}{seen}): image {good.image}, args {' '.join(good.args)}"[
            :4000
        ],
    )


def replace_overrides(overrides: RemediationOverrides, action: Action, **changes: object) -> RemediationOverrides:
    return overrides.model_copy(update={"action": action, **changes})


def choose(
    *,
    policy: str,
    known_issue: str | None,
    spec: LlamaDeploymentSpec,
    overrides: RemediationOverrides,
    good: LastKnownGood | None,
    running: EffectiveConfig | None,
    knowledge: Knowledge,
) -> Change | None:
    """The next remedy to apply, or None when none is left. ``spec`` is the user's spec with ``overrides``
    applied; remedies already applied are not applicable any more, so successive calls walk down the list."""
    if policy == "Auto" and known_issue is not None:
        for action in KNOWN_ISSUE_REMEDIES.get(known_issue, ()):
            if overrides.args is not None:
                break  # after a rollback, the known issue's remedies would edit a config no longer planned
            change = (
                _max_model_len(spec, overrides, knowledge)
                if action == "SetMaxModelLen"
                else _patched(action, known_issue, spec, overrides, knowledge)
            )
            if change is not None:
                return change
    if policy in ("Auto", "RollbackOnly"):
        return _rollback(overrides, good, running)
    return None


__all__ = [
    "KNOWN_ISSUE_REMEDIES",
    "Action",
    "Change",
    "choose",
    "chunk_aligned_max_model_len",
    "effective_spec",
    "patched_image",
    "recorded_max_model_len",
    "running_config",
]
