"""Crash points for the chaos tests: `AIOS_CRASH_AT=<name>[:<n>]` kills the process at the n-th pass.

The process ends with `os._exit` (no cleanup, no flush, like `kill -9`) so a test proves the
dispatcher is safe to crash anywhere and re-run. Unset in production: one environment lookup.
"""

from __future__ import annotations

import os

_passes: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Die here, at once, if the environment names this point (and this is its n-th pass)."""
    target = os.environ.get("AIOS_CRASH_AT")
    if not target:
        return
    point, _, nth = target.partition(":")
    if point != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= int(nth or 1):
        os._exit(137)
