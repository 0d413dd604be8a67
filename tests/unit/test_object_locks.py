"""The per-object lock table holds an entry only while its LlamaDeployment exists."""

from __future__ import annotations

from llama_operator.handlers import locks
from llama_operator.handlers.reconcile import on_llama_event


def _event(kind: str) -> dict:
    return {"type": kind, "object": {"metadata": {"namespace": "ai", "name": "gone", "generation": 1}, "status": {}}}


def test_a_deleted_object_drops_its_lock() -> None:
    before = locks.held()
    first = locks.object_lock("ai", "gone")
    assert locks.object_lock("ai", "gone") is first  # one lock per object while it lives
    assert locks.held() == before + 1
    on_llama_event(event=_event("MODIFIED"))
    assert locks.held() == before + 1
    on_llama_event(event=_event("DELETED"))
    assert locks.held() == before
    assert locks.object_lock("ai", "gone") is not first  # a new object of the same name starts afresh
    locks.forget(("ai", "gone"))
