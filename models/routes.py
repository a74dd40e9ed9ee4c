"""Routing figures, computed one way everywhere: counts and rates per route, and the human override rate.

The route names are the kernel contract's `Route`; plain-string aliases are here for array comparisons.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from aios.kernel.contracts import ROUTES, Route

AUTO, REVIEW, SIU, REJECT = (Route.auto_approve.value, Route.human_review.value, Route.refer_siu.value,
                             Route.reject.value)


def _array(routes: Any) -> np.ndarray:
    return np.asarray(routes if hasattr(routes, "__len__") else list(routes), dtype=object)


def route_counts(routes: Any) -> dict[str, int]:
    """How many claims took each route (every route of the contract, zero included)."""
    r = _array(routes)
    return {name: int((r == name).sum()) for name in ROUTES}


def routing_rates(routes: Any, empty: float = float("nan")) -> dict[str, float]:
    """`claims` and the share of claims auto-approved, sent to human review and referred to SIU.

    `empty` is each share when there are no claims (NaN unless the caller needs a number).
    """
    r = _array(routes)
    n = len(r)
    return {"claims": float(n),
            "automation_rate": float((r == AUTO).mean()) if n else empty,
            "review_rate": float((r == REVIEW).mean()) if n else empty,
            "siu_rate": float((r == SIU).mean()) if n else empty}


def overridden(approved: Iterable[bool], leaning_approve: Iterable[bool]) -> np.ndarray:
    """Per final review decision: True when it went against the model's leaning (an override)."""
    return np.asarray(list(approved), dtype=bool) != np.asarray(list(leaning_approve), dtype=bool)


def override_rate(approved: Iterable[bool], leaning_approve: Iterable[bool]) -> tuple[int, float | None]:
    """(overrides, override rate) over final review decisions; the rate is None when there are none."""
    o = overridden(approved, leaning_approve)
    return int(o.sum()), (float(o.sum()) / len(o) if len(o) else None)
