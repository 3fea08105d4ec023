"""Small helpers for CF attributes on outputs: ``cell_methods`` and ``history``."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from typing import Any

from ._version import __version__

__all__ = ["append_cell_methods", "append_history", "history_line"]


def history_line(call: str) -> str:
    """One ``history`` line: a UTC timestamp, the call, and the library version."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{now}: {call} (xsuperres {__version__})"


def append_history(attrs: Mapping[str, Any], call: str) -> dict[str, Any]:
    """Return a copy of ``attrs`` whose ``history`` ends with a line for ``call``."""
    out = dict(attrs)
    previous = str(out.get("history", "")).rstrip("\n")
    line = history_line(call)
    out["history"] = f"{previous}\n{line}" if previous else line
    return out


def append_cell_methods(attrs: Mapping[str, Any], methods: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``attrs`` with ``methods`` (e.g. ``"time: mean"``) appended.

    CF ``cell_methods`` are read left to right, so methods applied later are
    appended at the end.
    """
    out = dict(attrs)
    methods = [m for m in methods if m]
    if not methods:
        return out
    previous = str(out.get("cell_methods", "")).strip()
    out["cell_methods"] = " ".join([previous, *methods]).strip()
    return out
