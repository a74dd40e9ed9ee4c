"""pyAgrum (an independent C++ exact engine) as the reference for models/compiled_network.py.

Used by tests/test_compiled_network.py and bench/bench_inference.py. Test/bench only: pyAgrum is a dev
dependency and production code never imports it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyagrum as gum


def to_pyagrum(model) -> gum.BayesNet:
    """The pgmpy network as a pyAgrum BayesNet with the same states and (column-renormalised) CPDs.

    CPD columns are renormalised as ``CompiledNetwork.from_pgmpy`` does (sachs and alarm ship columns
    off by 1e-7). State labels are ``str`` of pgmpy's state names, in pgmpy's order.
    """
    bn = gum.BayesNet(str(getattr(model, "name", "") or "net"))
    variables = list(model.nodes())
    states = {v: list(model.get_cpds(v).state_names[v]) for v in variables}
    for v in variables:
        bn.add(gum.LabelizedVariable(str(v), str(v), [str(s) for s in states[v]]))
    for v in variables:
        cpd = model.get_cpds(v)
        for parent in cpd.variables[1:]:
            bn.addArc(str(parent), str(v))
    for v in variables:
        cpd = model.get_cpds(v)
        values = np.asarray(cpd.values, dtype=np.float64).reshape([int(c) for c in cpd.cardinality])
        values = values / values.sum(axis=0, keepdims=True)
        for ax, s in enumerate(cpd.variables):  # CPD state order may differ from the model's
            names = list(cpd.state_names[s])
            if names != states[s]:
                values = np.take(values, [names.index(x) for x in states[s]], axis=ax)
        # pyAgrum's cpt(v) lists (v, parents in arc order); toarray()/fillWith use the reversed order
        bn.cpt(str(v)).fillWith(np.transpose(values).ravel().tolist())
    return bn


class LazyReference:
    """One pyAgrum LazyPropagation engine reused for every query (its fastest use)."""

    def __init__(self, bn: gum.BayesNet, target: str) -> None:
        self.bn = bn
        self.target = str(target)
        self.engine = gum.LazyPropagation(bn)
        self.engine.setNumberOfThreads(1)  # one core, like the engines it is compared with
        self.engine.addTarget(self.target)
        self.states = list(bn.variable(self.target).labels())

    def query(self, evidence: Mapping) -> np.ndarray:
        """P(target | evidence) (hard evidence by state label); NaN row if the evidence is impossible."""
        self.engine.eraseAllEvidence()
        if evidence:
            self.engine.setEvidence({str(k): str(v) for k, v in evidence.items()})
        try:
            self.engine.makeInference()
            return np.asarray(self.engine.posterior(self.target).toarray(), dtype=np.float64)
        except gum.GumException:
            return np.full(len(self.states), np.nan)

    def log_evidence(self, evidence: Mapping) -> float:
        """log P(evidence) (``-inf`` if impossible)."""
        self.engine.eraseAllEvidence()
        if evidence:
            self.engine.setEvidence({str(k): str(v) for k, v in evidence.items()})
        try:
            self.engine.makeInference()
            p = float(self.engine.evidenceProbability())
        except gum.GumException:
            return -np.inf
        return float(np.log(p)) if p > 0 else -np.inf


def row_evidence(row: pd.Series) -> dict:
    """The observed cells of one evidence row."""
    return {k: v for k, v in row.items() if not pd.isna(v)}
