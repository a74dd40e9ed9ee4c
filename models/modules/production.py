"""The decision modules on the production decision path: which spoke for a claim, and the posterior that
fuses them with the production network.

The production network (`models.bayes`) holds the classifier's score band and the intake rules. Every other
registered module with a fraud likelihood (config/modules.yaml) is a child of fraud and of the hidden
`ring` (organised-ring fraud, `fusion.ring_share_of_fraud` of fraud), as in `models.modules.network`:

    fraud -> ring;  fraud, ring -> each evidence module

Those modules are independent of the production network's other nodes given (fraud, ring), so the exact
posterior given everything is the production network's posterior re-weighted by the modules' likelihood,
ring summed out:

    P(fraud=1 | all) ∝ p * [(1-ρ) Π_m L_m(s_m | lone) + ρ Π_m L_m(s_m | ring)]
    P(fraud=0 | all) ∝ (1-p) * Π_m L_m(s_m | honest)

A module in a silent state (unavailable, not_applicable, pending) contributes no factor: its node is
unobserved and summed out, which is what marginalising it means.

Which modules speak is decided by the data alone: a module whose declared input fields are all in the
claim's feature row is run through its contract (`contract.run_module`); one whose inputs are absent is
`unavailable` (or `not_applicable` where its `applies_to` already excludes the claim). Today's claims carry
`channel` but none of the watchlist, device, link or forensic inputs, so those modules are recorded
`unavailable` (device_check `not_applicable` for phone and agent claims) and marginalised; when their
inputs arrive in the feature row they are fused with no change here. A module with no computation in
`models.modules.signals` may declare one text input named after itself carrying its state as reported by
the system that owns it: adding such a module is configuration (contract + likelihood) only.

Only multiplications, additions and divisions per row: the same claim gets the same bits in any batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from models.modules.contract import (
    NOT_APPLICABLE,
    UNAVAILABLE,
    ModuleContractError,
    ModuleSpec,
    load_fusion_config,
    load_modules,
    run_module,
)
from models.modules import signals

CLASSIFIER = "classifier"
MODULE_STATE = "module__"      # posterior-frame column prefix: a module's state for the claim
MODULE_MOVED = "module_moved__"  # how far it moved p_fraud (leave-one-out); NaN when it did not speak
# The computations that ship with the platform (models/modules/signals.py), by module name.
COMPUTATIONS: dict[str, Callable[[ModuleSpec], Callable[[pd.DataFrame], pd.Series]]] = {
    "doc_forensics": lambda spec: signals.doc_forensics,
    "watchlist": lambda spec: signals.watchlist,
    "device_check": lambda spec: signals.device_check,
    "link_analysis": lambda spec: signals.link_analysis(spec.deadline_days),
    "late_explanation": lambda spec: signals.late_explanation,
}


def _reported_state(name: str) -> Callable[[pd.DataFrame], pd.Series]:
    def compute(frame: pd.DataFrame) -> pd.Series:
        col = frame[name]
        return col.where(col.notna(), UNAVAILABLE).astype(object)

    return compute


@dataclass(frozen=True)
class ProductionModules:
    """The registered modules as the production decision path uses them."""

    specs: dict[str, ModuleSpec]     # every registered module, the classifier included (recorded, not refused)
    tables: dict[str, np.ndarray]    # fused modules: evidence states x [honest, fraud_lone, fraud_ring]
    ring_share: float

    @property
    def fused(self) -> tuple[str, ...]:
        """The modules whose signal re-weights the production posterior (those with a fraud likelihood)."""
        return tuple(self.tables)

    def versions(self, classifier_version: str | None = None) -> dict[str, str]:
        """Each module's version; the classifier's is the pinned registry version when given."""
        out = {n: s.version for n, s in self.specs.items()}
        if classifier_version is not None and CLASSIFIER in out:
            out[CLASSIFIER] = classifier_version
        return out

    def states(self, features: pd.DataFrame, classifier_state: pd.Series | None = None) -> pd.DataFrame:
        """Each module's state per claim (columns named after the modules), from the feature rows.

        The classifier's state is its production score band (`classifier_state`); every other module runs
        through its contract when its inputs are in `features`, else it is unavailable (not_applicable where
        its `applies_to` field is present and excludes the claim).
        """
        out: dict[str, np.ndarray] = {}
        n = len(features)
        for name, spec in self.specs.items():
            if name == CLASSIFIER:
                out[name] = (classifier_state.to_numpy(dtype=object) if classifier_state is not None
                             else np.full(n, UNAVAILABLE, dtype=object))
                continue
            if all(f in features.columns for f in spec.inputs):
                if name in COMPUTATIONS:
                    compute = COMPUTATIONS[name](spec)
                elif list(spec.inputs) == [name] and spec.inputs[name] == "text":
                    compute = _reported_state(name)
                else:
                    raise ModuleContractError(
                        f"module {name!r}: no computation in models/modules/signals.py, and its inputs are not "
                        f"the single text field {name!r} carrying its reported state")
                out[name] = run_module(spec, compute, features).to_numpy(dtype=object)
                continue
            state = np.full(n, UNAVAILABLE, dtype=object)
            for f, allowed in spec.applies_to.items():
                if f in features.columns:
                    state[~features[f].isin(allowed).to_numpy()] = NOT_APPLICABLE
            out[name] = state
        return pd.DataFrame(out, index=features.index)

    def _factors(self, states: pd.DataFrame,
                 skip: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = len(states)
        honest, lone, ring = np.ones(n), np.ones(n), np.ones(n)
        spoke = np.zeros(n, dtype=bool)
        for name, table in self.tables.items():
            if name == skip:
                continue
            codes = _codes(states[name], self.specs[name].evidence_states)
            seen = codes >= 0
            spoke |= seen
            idx = np.maximum(codes, 0)
            honest = honest * np.where(seen, table[idx, 0], 1.0)
            lone = lone * np.where(seen, table[idx, 1], 1.0)
            ring = ring * np.where(seen, table[idx, 2], 1.0)
        return honest, lone, ring, spoke

    def fuse(self, p: np.ndarray, states: pd.DataFrame, skip: str | None = None) -> np.ndarray:
        """P(fraud | the production network's evidence and every module that spoke), exact (module doc);
        `skip` leaves one module out (its node unobserved). Where no module spoke the network's posterior is
        returned as it is (not p / (p + (1 - p)), which can differ in the last bit)."""
        p = np.asarray(p, dtype=float)
        honest, lone, ring, spoke = self._factors(states, skip)
        rho = self.ring_share
        f1 = p * ((1.0 - rho) * lone + rho * ring)
        f0 = (1.0 - p) * honest
        return np.where(spoke, f1 / (f1 + f0), p)

    def contributions(self, p: np.ndarray, states: pd.DataFrame, fused: np.ndarray) -> pd.DataFrame:
        """Per fused module: p_fraud with it minus p_fraud with it left out; NaN where it did not speak."""
        out = {}
        for name in self.tables:
            spoke = _codes(states[name], self.specs[name].evidence_states) >= 0
            out[name] = np.where(spoke, fused - self.fuse(p, states, skip=name), np.nan)
        return pd.DataFrame(out, index=states.index)


def _codes(col: pd.Series, evidence_states: tuple[str, ...]) -> np.ndarray:
    values = col.to_numpy()
    code = np.full(len(values), -1)
    for i, s in enumerate(evidence_states):
        code[values == s] = i
    return code


def production_modules(path: Path | None = None) -> ProductionModules:
    """The modules registered in `path` (default config/modules.yaml), every contract checked on load."""
    specs = load_modules(path)
    fusion = load_fusion_config(path)
    if CLASSIFIER not in specs:
        raise ModuleContractError(f"{path or 'config/modules.yaml'}: module {CLASSIFIER!r} must be registered")
    tables = {}
    for name, spec in specs.items():
        table = spec.expert_table()
        if name != CLASSIFIER and table is not None:
            tables[name] = table
    rho = float(fusion["ring_share_of_fraud"])
    if not 0.0 <= rho <= 1.0:
        raise ModuleContractError(f"fusion.ring_share_of_fraud must be within [0, 1]; got {rho}")
    return ProductionModules(specs, tables, rho)


@lru_cache(maxsize=1)
def default_modules() -> ProductionModules:
    """The modules of config/modules.yaml, read once per process."""
    return production_modules()
