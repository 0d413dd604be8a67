"""What one look at a LlamaDeployment plans: its validation and the children to apply (pure)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from llama_operator.api import EffectiveConfig, LlamaDeployment, parse_llama, parse_status, without_status
from llama_operator.health import effective_spec, running_config
from llama_operator.health.policy import current_overrides
from llama_operator.knowledge import Knowledge
from llama_operator.planning import ValidationResult, validate, validate_resource
from llama_operator.render import Owner, children
from llama_operator.render.images import ImageRewrite, rewrite_image


@dataclasses.dataclass(frozen=True, slots=True)
class Inputs:
    """What the operator plans with besides the object. ``knowledge``: the catalogs with the cluster's GPU nodes
    (as admission plans); ``image_rewrites``: the `--image-rewrite` rules; ``service_monitors``: the cluster serves
    monitoring.coreos.com/v1 ServiceMonitors."""

    knowledge: Knowledge
    image_rewrites: tuple[ImageRewrite, ...] = ()
    service_monitors: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """Its validation (of the user's spec) and, when it may run, the children to apply (the spec with
    remediation's overrides, if any)."""

    resource: LlamaDeployment | None
    result: ValidationResult  # findings of the user's spec; effective/plan are what runs
    manifests: list[dict[str, Any]]


def owner_of(body: Mapping[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(meta["name"], meta["namespace"], meta["uid"], int(meta.get("generation", 1)))


def _rewritten(effective: EffectiveConfig, rules: tuple[ImageRewrite, ...]) -> EffectiveConfig:
    return effective.model_copy(update={"image": rewrite_image(effective.image, rules)}) if rules else effective


def plan(body: Mapping[str, Any], inputs: Inputs) -> Plan:
    """Validate the user's spec, apply remediation's overrides for this generation to the parsed spec once and
    validate that once, render the children.

    The effective config carries the rewritten image, so the children run it and status shows it: what is deployed.
    Rules are idempotent (render.images), so a rollback to status.lastKnownGood's image renders it unchanged."""
    rules = inputs.image_rewrites
    resource = parse_llama(body)
    result = validate(without_status(body), inputs.knowledge)
    if resource is None or not result.valid or result.effective is None:
        # Nothing is deployed; status still shows the image the spec would run, as it would be pulled.
        if rules and result.effective is not None:
            result = dataclasses.replace(result, effective=_rewritten(result.effective, rules))
        return Plan(resource, result, [])
    owner = owner_of(body)
    overrides = current_overrides(parse_status(body), owner.generation)
    spec, running = resource.spec, result
    if overrides is not None:
        spec = effective_spec(resource.spec, overrides)
        if spec is not resource.spec:
            running = validate_resource(resource.model_copy(update={"spec": spec}), inputs.knowledge)
            if not running.valid or running.effective is None:
                spec, running = resource.spec, result  # an override the planner refuses is never deployed
    effective = _rewritten(running_config(running.effective or result.effective, overrides), rules)
    shown = dataclasses.replace(result, effective=effective, plan=running.plan)
    return Plan(
        resource, shown, children(owner, spec, effective, running.plan, service_monitors=inputs.service_monitors)
    )
