"""Posterior, credible interval, evidence contributions and value of information from the fraud network."""

from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.bayes import EVIDENCE, TARGET, FraudNetwork
from models.compiled_network import CompiledNetwork

YES = "yes"


@dataclass(frozen=True)
class Fusion:
    """Per claim: posterior p_fraud, its credible interval, how each observed signal moved it,
    and how much each unobserved signal would be expected to move it (value of information)."""

    p_fraud: np.ndarray
    low: np.ndarray
    high: np.ndarray
    contributions: pd.DataFrame  # observed signal -> p_fraud minus p_fraud without it; NaN if unobserved
    value_of_information: pd.DataFrame  # unobserved signal -> expected |change|; NaN if observed


def compile_network(net: FraudNetwork) -> CompiledNetwork:
    """The network compiled for batched exact inference, with its Dirichlet concentrations."""
    return CompiledNetwork.from_pgmpy(net.to_pgmpy(), pseudo_counts=net.concentration)


def _fuse_rows(compiled: CompiledNetwork, evidence: pd.DataFrame, level: float, n_samples: int,
               seed: int) -> Fusion:
    yes = compiled.states[TARGET].index(YES)
    p = compiled.posterior(TARGET, evidence)[:, yes]
    low, high = compiled.posterior_interval(TARGET, evidence, YES, level=level, n_samples=n_samples, seed=seed)
    contrib = {}
    for v in EVIDENCE:
        without = compiled.posterior(TARGET, evidence.drop(columns=[v]))[:, yes]
        contrib[v] = np.where(evidence[v].isna(), np.nan, p - without)
    voi = compiled.value_of_information(TARGET, evidence, YES, candidates=EVIDENCE)
    # Interval is over parameter uncertainty; keep the point estimate inside it.
    low, high = np.minimum(low, p), np.maximum(high, p)
    return Fusion(p, low, high, pd.DataFrame(contrib, index=evidence.index), voi)


# Every possible evidence row (each signal in one of its states or unobserved) is fused once per
# compiled network; a claim's result is then a lookup. Rows are computed in one fixed batch, so a
# claim gets the same bits whatever batch it comes in (the vectorised inference groups rows by
# pattern and picks its contraction by group size, which moves the last bits), and a batch of
# a million claims costs a gather.
_TABLES: weakref.WeakKeyDictionary[CompiledNetwork, dict[tuple[float, int, int], Fusion]] = weakref.WeakKeyDictionary()


def _states(compiled: CompiledNetwork) -> dict[str, list]:
    return {v: list(compiled.states[v]) for v in EVIDENCE}


def fusion_table(compiled: CompiledNetwork, level: float = 0.9, n_samples: int = 200, seed: int = 0) -> Fusion:
    """`fuse` of every possible evidence row (mixed-radix order of `EVIDENCE`, unobserved last), cached."""
    per_net = _TABLES.setdefault(compiled, {})
    key = (float(level), int(n_samples), int(seed))
    if key not in per_net:
        states = _states(compiled)
        grid = list(itertools.product(*[[*states[v], None] for v in EVIDENCE]))
        evidence = pd.DataFrame(grid, columns=EVIDENCE, dtype=object)
        per_net[key] = _fuse_rows(compiled, evidence, level, n_samples, seed)
    return per_net[key]


def _table_index(compiled: CompiledNetwork, evidence: pd.DataFrame) -> np.ndarray:
    states = _states(compiled)
    missing = [v for v in EVIDENCE if v not in evidence.columns]
    if missing:
        raise ValueError(f"evidence lacks column(s): {', '.join(missing)}")
    idx = np.zeros(len(evidence), dtype=np.int64)
    for v in EVIDENCE:
        col = evidence[v]
        codes = col.map({s: i for i, s in enumerate(states[v])})
        unobserved = col.isna().to_numpy()
        unknown = codes.isna().to_numpy() & ~unobserved
        if unknown.any():
            bad = col[unknown].iloc[0]
            raise ValueError(f"evidence column {v!r}: unknown state {bad!r} (states: {states[v]})")
        codes = np.where(unobserved, len(states[v]), codes.fillna(0).to_numpy(dtype=float)).astype(np.int64)
        idx = idx * (len(states[v]) + 1) + codes
    return idx


def fuse(compiled: CompiledNetwork, evidence: pd.DataFrame, level: float = 0.9, n_samples: int = 200,
         seed: int = 0) -> Fusion:
    """Exact posterior of fraud given each row's evidence (None = unobserved), with its uncertainty.

    A row's result depends on that row's evidence only: the same claim gets the same bits in any batch.
    """
    table = fusion_table(compiled, level, n_samples, seed)
    idx = _table_index(compiled, evidence)
    contrib = pd.DataFrame(table.contributions.to_numpy()[idx], columns=table.contributions.columns,
                           index=evidence.index)
    voi = pd.DataFrame(table.value_of_information.to_numpy()[idx], columns=table.value_of_information.columns,
                       index=evidence.index)
    return Fusion(table.p_fraud[idx], table.low[idx], table.high[idx], contrib, voi)
