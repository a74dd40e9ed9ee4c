"""The one decision function: features → calibrated score → Bayesian posterior → policy route.

The batch path (Dagster) and the sync path (service/) both call `decide`; the same
feature row with the same pinned versions gives the same decision, bit for bit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from aios.kernel.canonical import canonical_json  # the one canonical form, shared with the ledger
from aios.kernel.contracts import rationale_item
from governance.policy import PolicySet
from models.bayes import FraudNetwork, evidence_frame
from models.classifier import feature_contributions, score
from models.compiled_network import CompiledNetwork
from models.features import FEATURE_COLUMNS, feature_version
from models.fusion import compile_network, fuse
from models.modules.production import MODULE_MOVED, MODULE_STATE, ProductionModules, default_modules

DECISION_COLUMNS = ["claim_id", "amount", "score", "p_fraud", "p_fraud_low", "p_fraud_high", "route",
                    "rationale", "uncertainty_drivers", "versions", "snapshot_hash"]
TOP_FEATURES = 3
TOP_DRIVERS = 3
RATIONALE_DIGITS = 6  # numbers in the structured rationale, as the uncertainty drivers' changes


def decision_versions(classifier: str, bayes_net: str, policy_label: str) -> dict[str, str]:
    """The versions every decision records: classifier name/version, network, policy, feature code."""
    return {"classifier": classifier, "bayes_net": bayes_net, "policy": policy_label, "features": feature_version()}


@dataclass
class DecisionModels:
    """Everything a decision depends on, pinned: classifier (MLflow name+version), network, policy."""

    classifier: Any
    classifier_name: str
    classifier_version: str
    network: FraudNetwork
    policy: PolicySet
    compiled: CompiledNetwork | None = None
    modules: ProductionModules | None = None  # default: the modules registered in config/modules.yaml

    def __post_init__(self) -> None:
        if self.compiled is None:
            self.compiled = compile_network(self.network)
        if self.modules is None:
            self.modules = default_modules()

    @property
    def versions(self) -> dict[str, str]:
        """The versions a decision records (see `decision_versions`)."""
        return decision_versions(f"{self.classifier_name}/{self.classifier_version}", self.network.version,
                                 self.policy.label)




def snapshot_records(features: pd.DataFrame) -> list[dict[str, Any]]:
    """Each feature row as a plain dict (NaN → None), claim id included: what a snapshot stores."""
    frame = features.reset_index()
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict("records")


def snapshot_hash(record: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of one feature row."""
    return hashlib.sha256(canonical_json(record).encode()).hexdigest()


def score_claims(features: pd.DataFrame, classifier: Any) -> pd.DataFrame:
    """Stage 1: the calibrated classifier's score per claim and each feature's contribution to it."""
    X = features[FEATURE_COLUMNS]
    s = score(classifier, X)
    contrib = feature_contributions(classifier, X, base=s)
    return pd.concat([pd.DataFrame({"score": s}, index=features.index), contrib.add_prefix("contrib__")], axis=1)


def posterior_claims(features: pd.DataFrame, scores: pd.DataFrame, compiled: CompiledNetwork,
                     modules: ProductionModules | None = None) -> pd.DataFrame:
    """Stage 2: the network's evidence, posterior, interval, evidence contributions and value of information,
    with every decision module that spoke fused in (`models.modules.production`; default: the registered
    modules): each module's state, how far it moved p_fraud, and the posterior before them (`p_fraud_network`).

    The interval is the network's (parameter uncertainty) carried through the same module update, which is
    monotone in the network's posterior; the module tables themselves are taken as known.
    """
    modules = modules if modules is not None else default_modules()
    evidence = evidence_frame(features, scores["score"].to_numpy())
    fusion = fuse(compiled, evidence)
    states = modules.states(features, evidence["score_band"])
    p = modules.fuse(fusion.p_fraud, states)
    moved = modules.contributions(fusion.p_fraud, states, p)
    return pd.concat([
        evidence.add_prefix("evidence__"),
        pd.DataFrame({"p_fraud": p, "p_fraud_low": modules.fuse(fusion.low, states),
                      "p_fraud_high": modules.fuse(fusion.high, states), "p_fraud_network": fusion.p_fraud},
                     index=features.index),
        fusion.contributions.add_prefix("moved__"),
        fusion.value_of_information.add_prefix("voi__"),
        states.add_prefix(MODULE_STATE),
        moved.add_prefix(MODULE_MOVED),
        pd.DataFrame({"module_versions": [modules.versions()] * len(features)}, index=features.index),
    ], axis=1)


def _strip(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    cols = [c for c in frame.columns if c.startswith(prefix)]
    return frame[cols].rename(columns=lambda c: c[len(prefix):])


def route_claims(features: pd.DataFrame, scores: pd.DataFrame, posteriors: pd.DataFrame, policy: PolicySet,
                 versions: dict[str, str]) -> pd.DataFrame:
    """Stage 3: the policy's route and the decision contract's fields for each claim.

    List and dict fields are canonical JSON strings so decisions store and compare exactly. The rationale
    is structured (`aios.kernel.contracts.RationaleItem`): the score and its band, the top features'
    contributions to the score, and each observed signal's contribution to p_fraud.
    """
    X = features[FEATURE_COLUMNS]
    s = scores["score"].to_numpy()
    p = posteriors["p_fraud"].to_numpy()
    amount = features["amount"].to_numpy(dtype=float)
    routes = policy.route(p, amount)
    contrib = _strip(scores, "contrib__")
    evidence = _strip(posteriors, "evidence__")
    moved = _strip(posteriors, "moved__")
    voi = _strip(posteriors, "voi__")
    top_idx = np.argsort(-np.abs(contrib.to_numpy()), axis=1)[:, :TOP_FEATURES].tolist()
    cols = list(contrib.columns)
    moved_arr = moved.to_numpy(dtype=float)
    voi_arr = voi.to_numpy(dtype=float)
    records = snapshot_records(features)
    # Plain Python lists, read once: pandas scalar access per cell costs more than the formatting itself.
    score_list = s.tolist()
    band = evidence["score_band"].tolist()
    values = {c: X[c].tolist() for c in cols}
    contribs = {c: contrib[c].tolist() for c in cols}
    signals = [(k, v, evidence[v].tolist()) for k, v in enumerate(moved.columns) if v != "score_band"]
    moved_rows = moved_arr.tolist()
    module_rows = _module_rows(posteriors, versions)
    module_items: dict[tuple, str] = {}
    voi_rank = -np.nan_to_num(voi_arr, nan=-1.0)
    voi_cols = list(voi.columns)
    rationale, drivers, hashes = [], [], []
    for i in range(len(features)):
        items = [rationale_item("score", "classifier", round(score_list[i], RATIONALE_DIGITS), band=band[i])]
        for j in top_idx[i]:
            c = cols[j]
            v = values[c][i]
            items.append(rationale_item("feature", c, round(v, RATIONALE_DIGITS) if isinstance(v, float) else v,
                                        round(contribs[c][i], RATIONALE_DIGITS)))
        row_moved = moved_rows[i]
        for k, v, ev in signals:
            if row_moved[k] == row_moved[k]:  # not NaN
                items.append(rationale_item("evidence", v, ev[i], round(row_moved[k], RATIONALE_DIGITS)))
        fragments = []
        if module_rows:
            effects = module_rows[i][1]
            for name, rec in module_rows[i][0].items():
                effect = effects.get(name)
                key = (name, rec["state"], rec["version"],
                       None if effect is None else round(effect, RATIONALE_DIGITS))
                text = module_items.get(key)
                if text is None:  # claims share most module items: each serialised once per call
                    text = module_items[key] = canonical_json(
                        rationale_item("module", key[0], key[1], key[3], version=key[2]))
                fragments.append(text)
        # canonical JSON of a list is its items' canonical JSON joined by "," (no spaces): the same string
        text = canonical_json(items)
        rationale.append(f"{text[:-1]},{','.join(fragments)}]" if fragments else text)
        row_voi = voi_arr[i]
        order = [j for j in np.argsort(voi_rank[i]) if not np.isnan(row_voi[j])][:TOP_DRIVERS]
        drivers.append(canonical_json([{"signal": voi_cols[j], "expected_change": round(float(row_voi[j]), 6)}
                                       for j in order]))
        hashes.append(snapshot_hash(records[i]))
    return pd.DataFrame({
        "claim_id": features.index.astype(str),
        "amount": amount,
        "score": s,
        "p_fraud": p,
        "p_fraud_low": posteriors["p_fraud_low"].to_numpy(),
        "p_fraud_high": posteriors["p_fraud_high"].to_numpy(),
        "route": routes.astype(str),
        "rationale": rationale,
        "uncertainty_drivers": drivers,
        "versions": _row_versions(versions, module_rows) if module_rows else canonical_json(versions),
        "snapshot_hash": hashes,
    })[DECISION_COLUMNS]


def _row_versions(versions: dict[str, str], module_rows: list) -> list[str]:
    """Each claim's versions as canonical JSON, modules included; serialised once per distinct set of states."""
    seen: dict[tuple, str] = {}
    out = []
    for mods, _ in module_rows:
        key = tuple((n, m["version"], m["state"]) for n, m in mods.items())
        text = seen.get(key)
        if text is None:
            text = seen[key] = canonical_json({**versions, "modules": mods})
        out.append(text)
    return out


def _module_rows(posteriors: pd.DataFrame, versions: dict[str, str]) -> list[tuple[dict[str, dict[str, str]],
                                                                               dict[str, float]]]:
    """Per claim: {module: {version, state}} (the classifier's version is the pinned one) and how far each
    module that spoke moved p_fraud (the classifier: its score band's contribution in the network)."""
    if "module_versions" not in posteriors.columns:
        return []
    # plain lists, read once per column (pandas access per cell would cost more than the records)
    names = [c[len(MODULE_STATE):] for c in posteriors.columns if c.startswith(MODULE_STATE)]
    state_cols = [posteriors[MODULE_STATE + n].tolist() for n in names]
    moved_cols = {c[len(MODULE_MOVED):]: posteriors[c].tolist() for c in posteriors.columns
                  if c.startswith(MODULE_MOVED)}
    if "moved__score_band" in posteriors.columns and "classifier" in names:
        moved_cols["classifier"] = posteriors["moved__score_band"].tolist()
    out = []
    for i, mv in enumerate(posteriors["module_versions"].tolist()):
        mv = {**mv, "classifier": versions.get("classifier", mv.get("classifier"))} if "classifier" in mv else mv
        recs = {n: {"version": mv[n], "state": state_cols[k][i]} for k, n in enumerate(names)}
        effects = {n: col[i] for n, col in moved_cols.items() if col[i] == col[i]}
        out.append((recs, effects))
    return out


def decide(features: pd.DataFrame, models: DecisionModels) -> pd.DataFrame:
    """Decisions for a batch of claims (features indexed by claim_id, `FEATURE_COLUMNS` + `amount`).

    The batch assets run the same three stages one asset each; the result is the same.
    """
    missing = [c for c in [*FEATURE_COLUMNS, "amount"] if c not in features.columns]
    if missing:
        raise ValueError(f"features lack column(s): {', '.join(missing)}")
    scores = score_claims(features, models.classifier)
    posteriors = posterior_claims(features, scores, models.compiled, models.modules)
    return route_claims(features, scores, posteriors, models.policy, models.versions)
