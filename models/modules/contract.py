"""The decision-module contract: what a signal source declares so it can join the fusion by configuration.

A module is a separate system with its own release cycle. It declares its name, version, the input
fields it reads, the named states of its output signal (always `unavailable`; `not_applicable` where it
does not apply), its latency class (`sync`, or `async` with a deadline in days after which the decision
proceeds without it and is revisited when it lands) and its owner. The fusion holds, per module, an
expert likelihood table P(state | fraud) (updated by labels as Dirichlet counts); adding a module is an
entry in config/modules.yaml, never a retrain of the classifier (itself a module, `classifier`).

`run_module` is the one gate every module output passes: inputs missing or of the wrong type are refused
with an error naming the field, outputs outside the declared states are refused naming the state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

MODULES_PATH = Path(__file__).resolve().parents[2] / "config" / "modules.yaml"
UNAVAILABLE = "unavailable"
NOT_APPLICABLE = "not_applicable"
PENDING = "pending"
# States that carry no evidence about fraud: the module could not say (outage, not live, not yet landed)
# or does not apply. `no_document` style states are NOT here: an absence a person chose is evidence.
SILENT_STATES = frozenset({UNAVAILABLE, NOT_APPLICABLE, PENDING})
LATENCY_CLASSES = ("sync", "async")
LIKELIHOOD_CLASSES = ("honest", "fraud", "fraud_lone", "fraud_ring")
INPUT_KINDS = {"number": "numeric", "text": "string", "flag": "boolean", "date": "datetime"}


class ModuleContractError(ValueError):
    """A module's declaration, input or output breaks its contract; the message names field and reason."""


@dataclass(frozen=True)
class ModuleSpec:
    """One module's declared contract (see the module docstring)."""

    name: str
    version: str
    owner: str
    inputs: Mapping[str, str]          # field -> kind (number | text | flag | date)
    states: tuple[str, ...]            # every state it may emit, `unavailable` included
    latency: str = "sync"
    deadline_days: float = 0.0         # async only: the decision waits at most this long
    go_live: str | None = None         # ISO date the module's signal starts (None: always)
    applies_to: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # field -> values it applies to
    # Expert likelihoods: class (honest | fraud_lone | fraud_ring, or `fraud` for both fraud classes) -> state -> p
    likelihood: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # For a module that speaks about a legitimate delay rather than fraud: P(first evidence state | delayed?)
    explains: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"module {self.name!r}"
        if not self.name or not self.version or not self.owner:
            raise ModuleContractError(f"{where}: name, version and owner are required")
        if UNAVAILABLE not in self.states:
            raise ModuleContractError(f"{where}: states must include {UNAVAILABLE!r}")
        if self.applies_to and NOT_APPLICABLE not in self.states:
            raise ModuleContractError(f"{where}: declares applies_to, so states must include {NOT_APPLICABLE!r}")
        if len(set(self.states)) != len(self.states):
            raise ModuleContractError(f"{where}: states repeat")
        if self.latency not in LATENCY_CLASSES:
            raise ModuleContractError(f"{where}: latency {self.latency!r} is not one of {LATENCY_CLASSES}")
        if self.latency == "async" and not self.deadline_days > 0:
            raise ModuleContractError(f"{where}: async modules need deadline_days > 0")
        for f, kind in self.inputs.items():
            if kind not in INPUT_KINDS:
                raise ModuleContractError(f"{where}: input {f!r} has kind {kind!r}, not one of {sorted(INPUT_KINDS)}")
        for cls, table in self.likelihood.items():
            if cls not in LIKELIHOOD_CLASSES:
                raise ModuleContractError(f"{where}: likelihood class {cls!r} must be one of {LIKELIHOOD_CLASSES}")
            extra = set(table) - set(self.evidence_states)
            if extra:
                raise ModuleContractError(f"{where}: likelihood names state(s) {sorted(extra)} the module "
                                          f"cannot emit as evidence (silent states carry no likelihood)")
            total = sum(table.values())
            if any(v <= 0 for v in table.values()) or abs(total - 1) > 1e-6:
                raise ModuleContractError(f"{where}: likelihood[{cls}] must be positive and sum to 1 (sums to {total:.4f})")

    def expert_table(self) -> np.ndarray | None:
        """P(state | class) as an (evidence states × [honest, fraud_lone, fraud_ring]) array, or None
        when the module declares no likelihood (its table is learned, like the classifier's)."""
        if not self.likelihood:
            return None
        cols = []
        for cls in ("honest", "fraud_lone", "fraud_ring"):
            table = self.likelihood.get(cls) or self.likelihood.get("fraud" if cls != "honest" else "honest")
            if table is None:
                raise ModuleContractError(f"module {self.name!r}: likelihood lacks class {cls!r}")
            missing = [s for s in self.evidence_states if s not in table]
            if missing:
                raise ModuleContractError(f"module {self.name!r}: likelihood[{cls}] lacks state(s) {missing}")
            cols.append([float(table[s]) for s in self.evidence_states])
        return np.array(cols).T

    @property
    def evidence_states(self) -> tuple[str, ...]:
        """The states that carry evidence (all but unavailable / not_applicable / pending)."""
        return tuple(s for s in self.states if s not in SILENT_STATES)

    def check_inputs(self, frame: pd.DataFrame) -> None:
        """Refuse a frame lacking a declared input or holding one of the wrong kind (error names the field)."""
        for f, kind in self.inputs.items():
            if f not in frame.columns:
                raise ModuleContractError(f"module {self.name!r}: input field {f!r} is missing")
            col = frame[f]
            ok = {"number": pd.api.types.is_numeric_dtype, "flag": pd.api.types.is_bool_dtype,
                  "date": pd.api.types.is_datetime64_any_dtype,
                  "text": lambda c: pd.api.types.is_object_dtype(c) or pd.api.types.is_string_dtype(c)}[kind](col)
            if not ok:
                raise ModuleContractError(f"module {self.name!r}: input field {f!r} must be {INPUT_KINDS[kind]}, "
                                          f"got {col.dtype}")
            if kind == "number" and col.isna().any():
                raise ModuleContractError(f"module {self.name!r}: input field {f!r} has missing values "
                                          f"(row {int(np.flatnonzero(col.isna().to_numpy())[0])})")

    def check_output(self, states: pd.Series) -> pd.Series:
        """The output unchanged if every value is a declared state; else an error naming the first bad one."""
        bad = ~states.isin(self.states)
        if bad.any():
            raise ModuleContractError(f"module {self.name!r} emitted undeclared state {states[bad].iloc[0]!r} "
                                      f"(declared: {list(self.states)})")
        return states


def run_module(spec: ModuleSpec, compute: Callable[[pd.DataFrame], pd.Series], frame: pd.DataFrame) -> pd.Series:
    """`compute(frame)` behind the contract: inputs checked before, states checked after, `not_applicable`
    forced where `applies_to` excludes the row (the module is not even asked there)."""
    spec.check_inputs(frame)
    out = pd.Series(compute(frame), index=frame.index, dtype=object)
    for f, allowed in spec.applies_to.items():
        if f not in frame.columns:
            raise ModuleContractError(f"module {spec.name!r}: applies_to field {f!r} is missing")
        out[~frame[f].isin(allowed)] = NOT_APPLICABLE
    return spec.check_output(out)


def _spec(name: str, raw: Mapping[str, Any]) -> ModuleSpec:
    known = {"explains", "version", "owner", "inputs", "states", "latency", "deadline_days", "go_live", "applies_to", "likelihood"}
    extra = set(raw) - known
    if extra:
        raise ModuleContractError(f"module {name!r}: unknown field(s) {sorted(extra)}")
    for req in ("version", "owner", "inputs", "states"):
        if req not in raw:
            raise ModuleContractError(f"module {name!r}: field {req!r} is required")
    return ModuleSpec(
        name=name, version=str(raw["version"]), owner=str(raw["owner"]), inputs=dict(raw["inputs"]),
        states=tuple(raw["states"]), latency=raw.get("latency", "sync"),
        deadline_days=float(raw.get("deadline_days", 0.0)), go_live=raw.get("go_live"),
        applies_to={k: tuple(v) for k, v in (raw.get("applies_to") or {}).items()},
        likelihood={k: dict(v) for k, v in (raw.get("likelihood") or {}).items()},
        explains={k: float(v) for k, v in (raw.get("explains") or {}).items()},
    )


def load_modules(path: Path | None = None) -> dict[str, ModuleSpec]:
    """The registered modules from YAML (default config/modules.yaml), each contract checked on load."""
    path = Path(path) if path is not None else MODULES_PATH
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict) or not isinstance(raw.get("modules"), dict):
        raise ModuleContractError(f"{path}: expected a mapping with a 'modules' mapping")
    return {name: _spec(name, body or {}) for name, body in raw["modules"].items()}


def load_fusion_config(path: Path | None = None) -> dict[str, Any]:
    """The `fusion` section of config/modules.yaml (expert strength, ring share, legit-delay rate, late rule)."""
    path = Path(path) if path is not None else MODULES_PATH
    raw = yaml.safe_load(path.read_text()) or {}
    fusion = raw.get("fusion")
    need = ("expert_strength", "ring_share_of_fraud", "legit_delay_rate", "late_report_days", "late_report")
    if not isinstance(fusion, dict) or any(k not in fusion for k in need):
        raise ModuleContractError(f"{path}: 'fusion' needs fields {list(need)}")
    return fusion
