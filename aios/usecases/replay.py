"""Replay: recompute stored decisions from their frozen feature snapshots with the pinned versions,
or counterfactually with another model alias and policy on the same snapshots."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from aios.kernel.canonical import canonical_json
from aios.kernel.db import get_engine
from aios.kernel.settings import Settings
from connectors.stores.snapshots import load_snapshots
from connectors.stores.decisions import decisions_table
from governance.policy import PolicySet, load_policy_set
from models.decision import DecisionModels, decide
from models.routes import REVIEW, SIU, route_counts, routing_rates
from aios.usecases.decision_models import models_by_alias, models_by_versions, network_version

COMPARED = ["route", "score", "p_fraud", "p_fraud_low", "p_fraud_high", "rationale", "uncertainty_drivers",
            "snapshot_hash", "versions"]
FLOAT_TOLERANCE = 1e-9


@dataclass
class ReplayResult:
    """A claim's stored decision against the recomputed one: match, or the first difference."""

    claim_id: str
    match: bool
    first_difference: str | None
    recorded: dict[str, Any]
    recomputed: dict[str, Any]


@dataclass
class Counterfactual:
    """Routes before (stored) and after (alternative model/policy) for one partition's frozen snapshots."""

    partition: str
    changes: pd.DataFrame  # claim_id, route_before, route_after, p_fraud_before, p_fraud_after
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    versions_after: dict[str, str] = field(default_factory=dict)


def _stored(engine: sa.Engine, where: Any) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(decisions_table).where(where)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows])


def pinned_models(settings: Settings, versions: dict[str, str], policy: PolicySet | None = None) -> DecisionModels:
    """The exact classifier version, network version and policy a decision recorded.

    The policy files in force must carry the recorded label, unless `policy` is given.
    """
    pol = policy or load_policy_set()
    if policy is None and pol.label != versions["policy"]:
        raise LookupError(f"decision ran under policy {versions['policy']}, the files in force are {pol.label}; "
                          f"pass the old policy set to replay it")
    return models_by_versions(settings, versions, pol)


def _first_difference(recorded: dict[str, Any], recomputed: dict[str, Any]) -> str | None:
    for col in COMPARED:
        a, b = recorded[col], recomputed[col]
        if isinstance(a, float) or isinstance(b, float):
            if not np.isclose(float(a), float(b), rtol=0, atol=FLOAT_TOLERANCE):
                return f"{col}: recorded {a!r}, recomputed {b!r}"
        elif col == "versions" and json.loads(a) != json.loads(b):
            return f"versions: recorded {a}, recomputed {b}"
        elif col != "versions" and a != b:
            return f"{col}: recorded {a!r}, recomputed {b!r}"
    return None


def replay_claim(settings: Settings, claim_id: str) -> ReplayResult:
    """Recompute one claim's decision from its stored snapshot with its pinned versions and compare."""
    engine = get_engine(settings.db_url)
    stored = _stored(engine, decisions_table.c.claim_id == claim_id)
    if stored.empty:
        raise LookupError(f"no stored decision for claim {claim_id}")
    recorded = stored.iloc[0].to_dict()
    features = load_snapshots(engine, [recorded["snapshot_hash"]])
    models = pinned_models(settings, json.loads(recorded["versions"]))
    recomputed = decide(features, models).iloc[0].to_dict()
    diff = _first_difference(recorded, recomputed)
    return ReplayResult(claim_id, diff is None, diff, {k: recorded[k] for k in COMPARED},
                        {k: recomputed[k] for k in COMPARED})


def replay_partition(settings: Settings, partition: str) -> list[ReplayResult]:
    """Replay every stored decision of `partition` (models loaded once per set of pinned versions)."""
    engine = get_engine(settings.db_url)
    stored = _stored(engine, decisions_table.c.partition == partition)
    if stored.empty:
        raise LookupError(f"no stored decisions for partition {partition}")
    results = []
    # Group by what was pinned (classifier, network, policy, features); `modules` holds each claim's states.
    pinned = stored["versions"].map(lambda v: canonical_json({k: x for k, x in json.loads(v).items() if k != "modules"}))
    for versions, group in stored.groupby(pinned):
        models = pinned_models(settings, json.loads(versions))
        recomputed = decide(load_snapshots(engine, list(group["snapshot_hash"])), models).set_index("claim_id")
        for recorded in group.to_dict("records"):
            again = recomputed.loc[recorded["claim_id"]].to_dict() | {"claim_id": recorded["claim_id"]}
            diff = _first_difference(recorded, again)
            results.append(ReplayResult(recorded["claim_id"], diff is None, diff,
                                        {k: recorded[k] for k in COMPARED}, {k: again[k] for k in COMPARED}))
    return results


def _rates(routes: pd.Series) -> dict[str, float]:
    counts = route_counts(routes)
    return {"claims": float(len(routes)), "automation_rate": routing_rates(routes, empty=0.0)["automation_rate"],
            "review_load": float(counts[REVIEW]), "referred": float(counts[SIU])}


def counterfactual(settings: Settings, partition: str, model_alias: str = "champion",
                   policy_path: Path | None = None) -> Counterfactual:
    """The partition's frozen snapshots decided again with `model_alias` and the policy at `policy_path`."""
    engine = get_engine(settings.db_url)
    stored = _stored(engine, decisions_table.c.partition == partition)
    if stored.empty:
        raise LookupError(f"no stored decisions for partition {partition}")
    features = load_snapshots(engine, list(stored["snapshot_hash"]))
    recorded_versions = json.loads(stored["versions"].iat[0])
    models = models_by_alias(settings, model_alias, load_policy_set(policy_path),
                             network=network_version(settings, recorded_versions["bayes_net"]))
    after = decide(features, models).set_index("claim_id")
    before = stored.set_index("claim_id")
    joined = pd.DataFrame({"route_before": before["route"], "route_after": after["route"].reindex(before.index),
                           "p_fraud_before": before["p_fraud"],
                           "p_fraud_after": after["p_fraud"].reindex(before.index)})
    changes = joined[joined["route_before"] != joined["route_after"]].reset_index()
    return Counterfactual(partition, changes, _rates(joined["route_before"]), _rates(joined["route_after"]),
                          models.versions)
