"""The signal modules' computations: each maps its declared input fields to one of its declared states.

Every call goes through `contract.run_module`, so a module never sees an undeclared input and never
emits an undeclared state. Thresholds live here with the module that owns them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from models.modules.contract import PENDING, UNAVAILABLE, ModuleSpec, run_module

TAMPER_THRESHOLD = 0.5   # forensic score from which a document counts as tampered
DEVICE_RISK_THRESHOLD = 0.5


def _where(conditions: list[tuple[np.ndarray, str]], default: str, n: int) -> np.ndarray:
    out = np.full(n, default, dtype=object)
    for mask, state in reversed(conditions):  # first condition wins
        out[np.asarray(mask, dtype=bool)] = state
    return out


def classifier_band(edges: np.ndarray) -> Callable[[pd.DataFrame], pd.Series]:
    """The classifier as a module: its calibrated score cut into bands at `edges` (len 11, increasing)."""
    edges = np.asarray(edges, dtype=float)

    def compute(frame: pd.DataFrame) -> pd.Series:
        s = frame["score"].to_numpy(dtype=float)
        idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, len(edges) - 2)
        return pd.Series([f"band_{i}" for i in idx], index=frame.index, dtype=object)

    return compute


def doc_forensics(frame: pd.DataFrame) -> pd.Series:
    """tampered / clean from the forensic score; no_document when none was uploaded; unavailable in an outage."""
    n = len(frame)
    return pd.Series(_where([(~frame["doc_service_up"].to_numpy(), UNAVAILABLE),
                             (~frame["doc_uploaded"].to_numpy(), "no_document"),
                             (frame["doc_forensic_score"].to_numpy() >= TAMPER_THRESHOLD, "tampered")],
                            "clean", n), index=frame.index)


def watchlist(frame: pd.DataFrame) -> pd.Series:
    """hit / no_hit in the prior-claims registry; unavailable before it went live."""
    return pd.Series(_where([(~frame["watchlist_live"].to_numpy(), UNAVAILABLE),
                             (frame["watchlist_hit"].to_numpy(), "hit")], "no_hit", len(frame)), index=frame.index)


def device_check(frame: pd.DataFrame) -> pd.Series:
    """risky / ok device and identity check (web and app claims; the contract marks others not_applicable)."""
    return pd.Series(_where([(~frame["device_service_up"].to_numpy(), UNAVAILABLE),
                             (frame["device_risk"].to_numpy() >= DEVICE_RISK_THRESHOLD, "risky")], "ok", len(frame)),
                     index=frame.index)


def link_analysis(deadline_days: float) -> Callable[[pd.DataFrame], pd.Series]:
    """linked / unlinked over the claims graph; pending if the answer lands after the decision's deadline."""

    def compute(frame: pd.DataFrame) -> pd.Series:
        late = frame["link_latency_days"].to_numpy(dtype=float) > deadline_days
        return pd.Series(_where([(~frame["link_service_up"].to_numpy(), UNAVAILABLE), (late, PENDING),
                                 (frame["linked_to_confirmed_fraud"].to_numpy(), "linked")], "unlinked", len(frame)),
                         index=frame.index)

    return compute


def late_explanation(frame: pd.DataFrame) -> pd.Series:
    """explained when the claimant gave a documented reason for reporting late (hospital, travel, catastrophe)."""
    has = frame["explanation"].fillna("").astype(str).str.len().to_numpy() > 0
    return pd.Series(np.where(has, "explained", "none").astype(object), index=frame.index)


def module_states(specs: dict[str, ModuleSpec], frame: pd.DataFrame, band_edges: np.ndarray) -> pd.DataFrame:
    """Each registered module's state per row (columns named after the modules), every call contract-checked."""
    compute: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
        "classifier": classifier_band(band_edges), "doc_forensics": doc_forensics, "watchlist": watchlist,
        "device_check": device_check, "late_explanation": late_explanation,
    }
    out = {}
    for name, spec in specs.items():
        fn = link_analysis(spec.deadline_days) if name == "link_analysis" else compute.get(name)
        if fn is None:
            raise ValueError(f"module {name!r} is registered but has no computation in models/modules/signals.py")
        out[name] = run_module(spec, fn, frame)
    return pd.DataFrame(out, index=frame.index)
