"""One crash-loop check of a deployment: classify what was observed, then decide (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from llama_operator.api import LlamaDeploymentSpec, LlamaDeploymentStatus
from llama_operator.health.causes import PodCause
from llama_operator.health.classify import Classification, classify, crash_context
from llama_operator.health.detect import CrashLoopObservation
from llama_operator.health.policy import Decision, current_overrides, decide
from llama_operator.health.remedies import effective_spec
from llama_operator.knowledge import Knowledge


@dataclass(frozen=True, slots=True)
class Check:
    """The health decision of one look, with the classification it rests on (for the metrics)."""

    decision: Decision
    classification: Classification | None


def check(
    *,
    spec: LlamaDeploymentSpec,
    generation: int,
    status: LlamaDeploymentStatus,
    observation: CrashLoopObservation,
    now: datetime,
    knowledge: Knowledge,
    waiting: PodCause | None = None,
) -> Check:
    """Classify the termination against the spec that runs (overrides applied), then decide for the user's spec.
    ``waiting``: why the running configuration's pods do not serve (health.causes), if they do not."""
    running = effective_spec(spec, current_overrides(status, generation))
    classification = classify(observation.termination, crash_context(running)) if observation.termination else None
    decision = decide(
        spec=spec,
        generation=generation,
        status=status,
        observation=observation,
        classification=classification,
        now=now,
        knowledge=knowledge,
        waiting=waiting,
    )
    return Check(decision, classification)
