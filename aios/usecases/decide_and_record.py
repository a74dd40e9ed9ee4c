"""Decide and record: the one way a decision is made and kept, for the Dagster batch and the sync API alike.

Making a decision:
- `decide_claims`: features → decisions with pinned `DecisionModels` in one call (the API);
- `route_scored`: the batch path's last stage, from the scores and posteriors its assets computed one
  stage each (the same function underneath, so the same claim gets the same bits).

Keeping it (`record_decisions`), always in this order:
1. the feature snapshots each decision names by hash (`freeze_features`; the batch does this when it builds
   the features, before scoring);
2. the decision rows: a batch run replaces its whole partition, the API replaces the rows of its claims;
3. review cases for claims routed to human review (the API; the batch opens them in its `review_queue` step
   with `open_review_cases`);
4. a `policy_in_force` ledger row when the policy set differs from the last one recorded;
5. the score, posterior and decision rows of the audit ledger, last, so a failed write never appends
   them twice.

Nothing here knows Dagster or FastAPI: callers pass the stores' engine, the partition and the actor.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import sqlalchemy as sa

from aios.kernel.contracts import Route
from connectors.stores.audit import decision_ledger_rows, ledger
from connectors.stores.audit import record_decisions as ledger_decisions
from connectors.stores.audit import record_policy_in_force
from connectors.stores.decisions import (enqueue_reviews, open_review_rows, save_decisions, upsert_decision_rows,
                                         upsert_decisions)
from connectors.stores.snapshots import insert_snapshot_records, save_snapshots
from governance.policy import PolicySet
from models.decision import DecisionModels, decide, decision_versions, route_claims
from models.features import feature_version

EMPTY_DECISIONS = ["claim_id", "amount", "route", "p_fraud"]


class RecordFailed(RuntimeError):
    """The decisions were computed but keeping them failed part-way; the caller must not retry piecemeal."""


@dataclass(frozen=True)
class Recorded:
    """What `record_decisions` kept: the partition, when, and how many review cases it opened."""

    partition: str
    decided_at: str
    new_review_cases: int


def freeze_features(engine: sa.Engine, features: pd.DataFrame) -> list[str]:
    """Store each feature row as the content-addressed snapshot its decision will name; returns the hashes."""
    return save_snapshots(engine, features, feature_version())


def decide_claims(features: pd.DataFrame, models: DecisionModels, currencies: Sequence[str]) -> pd.DataFrame:
    """The decisions for `features` (indexed by claim id) with the pinned `models`, with each claim's currency."""
    decisions = decide(features, models)
    decisions["currency"] = list(currencies)
    return decisions


def route_scored(features: pd.DataFrame, scores: pd.DataFrame, posteriors: pd.DataFrame, policy: PolicySet,
                 currency_by_claim: pd.Series) -> tuple[pd.DataFrame, dict[str, str]]:
    """The batch path's decisions from its staged scores (with `classifier_version`) and posteriors (with
    `bayes_net_version`), and the versions they record; an empty frame and no versions for no claims."""
    if len(features):
        versions = decision_versions(str(scores["classifier_version"].iat[0]),
                                     str(posteriors["bayes_net_version"].iat[0]), policy.label)
        out = route_claims(features, scores, posteriors, policy, versions)
    else:
        versions = {}
        out = pd.DataFrame(columns=EMPTY_DECISIONS)
    out["currency"] = out["claim_id"].map(currency_by_claim)
    return out, versions


def open_review_cases(engine: sa.Engine, partition: str, decisions: pd.DataFrame) -> int:
    """Open a review case for each claim routed to human review that has none yet; how many are new."""
    return enqueue_reviews(engine, partition, decisions)


# The label this process last saw recorded as in force, per database: the `policy_in_force` lookup scans
# the ledger backwards, so a process does it once per policy change, not once per request.
_in_force: dict[str, str] = {}
_in_force_lock = threading.Lock()


def _record_policy(engine: sa.Engine, policy: PolicySet, actor: str) -> None:
    key = engine.url.render_as_string(hide_password=False)
    with _in_force_lock:
        if _in_force.get(key) == policy.label:
            return
        record_policy_in_force(engine, policy.label, policy.versions, actor=actor)
        _in_force[key] = policy.label


def record_decisions(engine: sa.Engine, partition: str, decisions: pd.DataFrame, policy: PolicySet, actor: str, *,
                     replace_partition: bool, features: pd.DataFrame | None = None, open_reviews: bool = False,
                     decided_at: str | None = None, trace_id: str | None = None,
                     actor_of: Mapping[str, str] | None = None) -> Recorded:
    """Keep `decisions` (with `currency`) in the order of the module doc.

    `replace_partition`: the rows replace everything `partition` held (a batch run) instead of only these
    claims' earlier rows (the API). `features`: snapshot them first. `open_reviews`: open the review cases
    here. `trace_id`: the ledger's trace id for rows whose claim has none. `actor_of`: claim id → the actor
    its ledger rows name (the API client that asked), `actor` for the others.
    """
    decided_at = decided_at or datetime.now(timezone.utc).isoformat()
    if features is not None:
        freeze_features(engine, features)
    if replace_partition:
        save_decisions(engine, partition, decisions, decided_at)
    else:
        upsert_decisions(engine, partition, decisions, decided_at)
    new = open_review_cases(engine, partition, decisions) if open_reviews else 0
    if len(decisions):
        _record_policy(engine, policy, actor)
        if actor_of:
            who = decisions["claim_id"].map(lambda c: actor_of.get(c, actor))
            for name in dict.fromkeys(who):
                ledger_decisions(engine, partition, decisions[who == name], actor=name, trace_id=trace_id)
        else:
            ledger_decisions(engine, partition, decisions, actor=actor, trace_id=trace_id)
    return Recorded(partition, decided_at, new)


def decide_and_record(engine: sa.Engine, features: pd.DataFrame, models: DecisionModels, currencies: Sequence[str],
                      partition: str, actor: str, *, decided_at: str | None = None,
                      trace_id: str | None = None, actor_of: Mapping[str, str] | None = None
                      ) -> tuple[pd.DataFrame, Recorded]:
    """Decide `features` with the pinned `models` and keep everything (snapshots, rows, review cases, ledger).

    An error while deciding propagates as it is (nothing was written); an error while keeping the
    decisions is raised as RecordFailed (some writes may have happened: retry the whole call, not parts).
    """
    decisions = decide_claims(features, models, currencies)
    try:
        recorded = record_decisions(engine, partition, decisions, models.policy, actor, replace_partition=False,
                                    features=features, open_reviews=True, decided_at=decided_at,
                                    trace_id=trace_id, actor_of=actor_of)
    except Exception as exc:  # noqa: BLE001 - any failed write fails the call as one
        raise RecordFailed(f"{len(decisions)} decision(s) computed but not kept: {exc}") from exc
    return decisions, recorded


def record_group(engine: sa.Engine, partition: str, decisions: list[dict[str, Any]], snapshots: list[dict[str, Any]],
                 policy: PolicySet, actor: str, decided_at: str,
                 actor_of: Mapping[str, str] | None = None) -> dict[str, str]:
    """Keep decisions made together (the sync API's requests that arrived together) in ONE transaction:
    their feature snapshots, decision rows and review cases, then their score/posterior/decision ledger rows,
    under the ledger's append lock (group commit: one commit for the group, the hash chain stays serial).

    `decisions` are `decide` rows with `currency`; `snapshots` the feature records they name by hash. Returns
    the review status of each claim routed to human review. `actor_of`: claim id → the actor its ledger rows
    name (the API client that asked), `actor` for the others. Any failure raises RecordFailed with nothing kept
    (the policy-in-force row, recorded once per policy change before the group, may stay: it is true anyway).
    """
    if not decisions:
        return {}
    statuses: dict[str, str] = {}

    def writes(conn: sa.Connection) -> None:
        insert_snapshot_records(conn, snapshots, feature_version())
        upsert_decision_rows(conn, partition, decisions, decided_at)
        statuses.update(open_review_rows(conn, partition, decisions))

    try:
        _record_policy(engine, policy, actor)
        rows = [r for d in decisions for r in decision_ledger_rows(partition, [d], (actor_of or {}).get(d["claim_id"],
                                                                                                  actor))]
        ledger(engine).append_many_after(writes, rows)
    except Exception as exc:  # noqa: BLE001 - any failed write fails the group as one
        raise RecordFailed(f"{len(decisions)} decision(s) computed but not kept: {exc}") from exc
    return statuses


def needs_review(decisions: pd.DataFrame) -> bool:
    """Whether any of the decisions routes a claim to human review."""
    return bool((decisions["route"] == Route.human_review.value).any())


def decision_body(row: dict[str, Any], trace_id: str, review_status: str | None = None) -> dict[str, Any]:
    """A stored (or just kept) decision row as the decision contract's fields (`aios.kernel.contracts.Decision`)."""
    return {
        "claim_id": row["claim_id"], "route": str(row["route"]), "p_fraud": float(row["p_fraud"]),
        "p_fraud_interval": [float(row["p_fraud_low"]), float(row["p_fraud_high"])], "score": float(row["score"]),
        "amount": float(row["amount"]), "currency": row["currency"], "rationale": json.loads(row["rationale"]),
        "uncertainty_drivers": json.loads(row["uncertainty_drivers"]), "versions": json.loads(row["versions"]),
        "snapshot_hash": row["snapshot_hash"], "partition": row["partition"], "decided_at": row["decided_at"],
        "trace_id": trace_id, "review_status": review_status,
    }
