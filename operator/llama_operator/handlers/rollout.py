"""Progressive rollout, the reading side (desired/rollout.py decides): what a rollout look reads. The looks that
move a rollout on (a pod of the deployment changed, or the stability window ran on with no event) are
handlers.reconcile.reapply, from on_rollout_pod there and from handlers.rechecks."""

from __future__ import annotations

import datetime as dt

from llama_operator.desired import Desired
from llama_operator.desired import rollout as progressive
from llama_operator.handlers import analysis, kube


def steered(state: Desired) -> Desired:
    """``state`` with its progressive rollout: reads the canary Deployment and the pods only when it may roll."""
    if not progressive.relevant(state):
        return progressive.steer(state, progressive.View(state.workload, None, (), dt.datetime.now(dt.UTC)))
    owner = state.owner
    canary = kube.read_workload("Deployment", progressive.canary_name(owner.name), owner.namespace)
    pods = tuple(kube.list_pods(owner.namespace, owner.name))
    now = dt.datetime.now(dt.UTC)
    # A multi-node replica's crash shows as its LeaderWorkerSet recreating the group (render.lws.group_restarts).
    groups = (state.workload or {}).get("kind") == "LeaderWorkerSet"
    events = tuple(kube.list_events(owner.namespace, "LeaderWorkerSet", owner.name)) if groups else ()
    view = progressive.View(state.workload, canary, pods, now, analysis.verdict(state, pods, now), events)
    return progressive.steer(state, view)
