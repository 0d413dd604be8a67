"""Pod statuses as the kubelet (or KWOK's crash stage) writes them, in the API's camelCase, for the crash-detection
unit tests (test_health_detect, test_crashloop_quiet). Times are seconds after T0."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 9, 1, 12, 0, 0, tzinfo=UTC)
MESSAGE = 'IndexKernel.cu:111: ... Assertion `... "index out of bounds"` failed.'


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def running(
    started: float, ready: bool = True, restarts: int = 0, last: dict[str, Any] | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": "vllm",
        "ready": ready,
        "restartCount": restarts,
        "state": {"running": {"startedAt": at(started)}},
    }
    if last:
        status["lastState"] = {"terminated": last}
    return status


def terminated(started: float, finished: float, exit_code: int = 1, message: str = MESSAGE) -> dict[str, Any]:
    return {
        "exitCode": exit_code,
        "reason": "Error" if exit_code else "Completed",
        "message": message,
        "startedAt": at(started),
        "finishedAt": at(finished),
    }


def backing_off(restarts: int, last: dict[str, Any]) -> dict[str, Any]:
    """As the KWOK crash stage leaves a container after a crash."""
    return {
        "name": "vllm",
        "ready": False,
        "started": False,
        "restartCount": restarts,
        "lastState": {"terminated": last},
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}},
    }


def pod(name: str, *containers: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, **metadata},
        "status": {"phase": "Running", "containerStatuses": list(containers)},
    }
