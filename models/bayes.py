"""Bayesian fusion: a pgmpy DiscreteBayesianNetwork over the fraud latent, the classifier's score
band and rule signals, giving a calibrated posterior, a credible interval and value of information.

Structure (parents → child):
    new_customer → fraud
    fraud, new_customer → score_band
    fraud, score_band → late_report, high_velocity, doc_mismatch

The rule signals hang off both fraud and the score band because the classifier already saw
the features behind them: conditioning on the band keeps their evidence from being counted twice.
`doc_mismatch` is unobserved when no invoice could be read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TARGET = "fraud"
SCORE_BAND_EDGES = [0.0, 0.01, 0.03, 0.08, 0.25, 1.0000001]
SCORE_BANDS = ["very_low", "low", "medium", "high", "very_high"]
YES_NO = ["no", "yes"]
STATES: dict[str, list[str]] = {
    "new_customer": YES_NO,
    "fraud": YES_NO,
    "score_band": SCORE_BANDS,
    "late_report": YES_NO,
    "high_velocity": YES_NO,
    "doc_mismatch": YES_NO,
}
PARENTS: dict[str, list[str]] = {
    "new_customer": [],
    "fraud": ["new_customer"],
    "score_band": ["fraud", "new_customer"],
    "late_report": ["fraud", "score_band"],
    "high_velocity": ["fraud", "score_band"],
    "doc_mismatch": ["fraud", "score_band"],
}
EVIDENCE = [v for v in STATES if v != TARGET]
# Thresholds of the rule signals (the rules investigators already use).
NEW_CUSTOMER_DAYS = 90
LATE_REPORT_DAYS = 14
HIGH_VELOCITY_PRIOR_CLAIMS = 2


def evidence_frame(features: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """Network evidence per claim as state names; None where a signal is unobserved."""
    band = pd.cut(np.asarray(scores, dtype=float), SCORE_BAND_EDGES, labels=SCORE_BANDS, right=False)

    def yes_no(mask: pd.Series) -> pd.Series:
        return pd.Series(np.where(mask, "yes", "no"), index=features.index, dtype=object)

    mismatch = features["doc_amount_mismatch"]
    doc = pd.Series(np.where(mismatch == 1, "yes", "no"), index=features.index, dtype=object)
    doc[mismatch.isna()] = None
    return pd.DataFrame({
        "new_customer": yes_no(features["customer_tenure_days"] < NEW_CUSTOMER_DAYS),
        "score_band": pd.Series(np.asarray(band, dtype=object), index=features.index),
        "late_report": yes_no(features["report_delay_days"] > LATE_REPORT_DAYS),
        "high_velocity": yes_no(features["prior_claims"] >= HIGH_VELOCITY_PRIOR_CLAIMS),
        "doc_mismatch": doc,
    }, index=features.index)


def _parent_configs(parents: list[str]) -> list[tuple[str, ...]]:
    """Parent state combinations in pgmpy's column order (last parent varies fastest)."""
    if not parents:
        return [()]
    grids = np.meshgrid(*[np.arange(len(STATES[p])) for p in parents], indexing="ij")
    flat = np.stack([g.ravel() for g in grids], axis=1)
    return [tuple(STATES[p][i] for p, i in zip(parents, row)) for row in flat]


@dataclass
class FraudNetwork:
    """A fitted network: CPDs, their Dirichlet concentrations (counts + prior) and a content version."""

    cpds: dict[str, np.ndarray]           # var -> (n_states, n_parent_configs), columns sum to 1
    concentration: dict[str, np.ndarray]  # same shapes: Dirichlet posterior parameters
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """Content hash of the CPDs and their concentrations: the same fit gives the same version."""
        payload = json.dumps({"cpds": {v: np.round(a, 12).tolist() for v, a in sorted(self.cpds.items())},
                              "concentration": {v: np.round(a, 9).tolist() for v, a in sorted(self.concentration.items())}},
                             sort_keys=True)
        return "bn-" + hashlib.sha256(payload.encode()).hexdigest()[:12]

    def to_pgmpy(self):  # -> DiscreteBayesianNetwork
        """The network as a pgmpy DiscreteBayesianNetwork (for exact inference and inspection)."""
        from pgmpy.factors.discrete import TabularCPD
        from pgmpy.models import DiscreteBayesianNetwork

        edges = [(p, v) for v, ps in PARENTS.items() for p in ps]
        model = DiscreteBayesianNetwork(edges)
        for v, ps in PARENTS.items():
            model.add_cpds(TabularCPD(
                v, len(STATES[v]), self.cpds[v], evidence=ps or None,
                evidence_card=[len(STATES[p]) for p in ps] or None,
                state_names={x: STATES[x] for x in [v, *ps]},
            ))
        model.check_model()
        return model

    def save(self, path: Path) -> Path:
        """Write the network as JSON (the versioned artifact)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "version": self.version, "states": STATES, "parents": PARENTS,
            "cpds": {v: a.tolist() for v, a in self.cpds.items()},
            "concentration": {v: a.tolist() for v, a in self.concentration.items()},
            "meta": self.meta,
        }, indent=1, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: Path) -> FraudNetwork:
        """Read a network written by `save`, refusing one whose content does not match its version."""
        raw = json.loads(Path(path).read_text())
        if raw["states"] != STATES or raw["parents"] != PARENTS:
            raise ValueError(f"{path}: network structure differs from this code's structure")
        net = cls({v: np.array(a) for v, a in raw["cpds"].items()},
                  {v: np.array(a) for v, a in raw["concentration"].items()}, raw.get("meta", {}))
        if net.version != raw["version"]:
            raise ValueError(f"{path}: content hash {net.version} does not match recorded {raw['version']}")
        return net


def fit_network(evidence: pd.DataFrame, fraud: pd.Series, equivalent_sample_size: float = 10.0,
                meta: dict[str, Any] | None = None) -> FraudNetwork:
    """Fit the CPDs by Bayesian estimation with a BDeu prior.

    Each CPD is estimated from the rows where its variable and its parents are observed,
    so claims with unread documents still inform every other CPD.
    """
    data = evidence.copy()
    data[TARGET] = np.where(np.asarray(fraud).astype(bool), "yes", "no")
    cpds, conc = {}, {}
    for v, ps in PARENTS.items():
        configs = _parent_configs(ps)
        cols = [v, *ps]
        rows = data[cols].dropna()
        counts = np.zeros((len(STATES[v]), len(configs)))
        if len(rows):
            tally = rows.groupby(cols, observed=True).size()
            col_of = {cfg: j for j, cfg in enumerate(configs)}
            row_of = {s: i for i, s in enumerate(STATES[v])}
            for key, n in tally.items():
                key = key if isinstance(key, tuple) else (key,)
                counts[row_of[key[0]], col_of[tuple(key[1:])]] += n
        alpha = counts + equivalent_sample_size / counts.size
        conc[v] = alpha
        cpds[v] = alpha / alpha.sum(axis=0, keepdims=True)
    info = {"rows": int(len(data)), "equivalent_sample_size": equivalent_sample_size, **(meta or {})}
    return FraudNetwork(cpds, conc, info)
