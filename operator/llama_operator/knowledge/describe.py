"""``describe``: a short, bounded repr of a user's value, for messages that quote what was given."""

from __future__ import annotations

import reprlib
from typing import Any

_REPR = reprlib.Repr()  # Python 3.11's Repr takes no keyword arguments
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 3, 40, 40, 4, 4


def describe(value: Any) -> str:
    # reprlib bounds depth and width: a 5,000-deep list in a manifest must not exhaust the stack here, and a
    # megabyte string must not end up whole in a finding (status messages are capped at 4,096 characters).
    text = _REPR.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
