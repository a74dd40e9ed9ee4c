"""Posterior, credible interval, evidence contributions and value of information from the fraud network."""

from __future__ import annotations

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


def fuse(compiled: CompiledNetwork, evidence: pd.DataFrame, level: float = 0.9, n_samples: int = 200,
         seed: int = 0) -> Fusion:
    """Exact posterior of fraud given each row's evidence (None = unobserved), with its uncertainty."""
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
