"""Settings, read from LLAMAOPS_* environment variables (the operator sets them on the container)."""

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"


@dataclass(frozen=True)
class Settings:
    # Patch names switched off by the operator (LLAMAOPS_DISABLED_PATCHES=a,b).
    disabled_patches: frozenset[str]
    # Where Kubernetes reads the container's termination message from.
    termination_message_path: str


def read_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    disabled = {p.strip() for p in env.get("LLAMAOPS_DISABLED_PATCHES", "").split(",") if p.strip()}
    return Settings(
        disabled_patches=frozenset(disabled),
        termination_message_path=env.get("LLAMAOPS_TERMINATION_MESSAGE_PATH", DEFAULT_TERMINATION_MESSAGE_PATH),
    )
