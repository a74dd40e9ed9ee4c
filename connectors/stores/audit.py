"""What the pipeline writes to the audit ledger: one row per ingest batch, validation outcome, score,
posterior, decision, payout, and model-alias or policy change (see governance/ledger.py for the chain)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import pandas as pd
import sqlalchemy as sa

from aios.kernel.db import get_engine
from aios.kernel.tracing import claim_trace_hex
from connectors.stores.ledger import AuditLedger, audit_ledger

PIPELINE_ACTOR = "aios.pipeline@1"


@lru_cache(maxsize=8)
def _ledger_for(url: str) -> AuditLedger:
    return AuditLedger(get_engine(url))


def _traced(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Claim rows carry the claim's trace id (see aios/tracing.py), so the ledger joins the traces."""
    for r in rows:
        if r.get("claim_id"):
            r["trace_id"] = claim_trace_hex(r["claim_id"])
    return rows


def ledger(engine: sa.Engine) -> AuditLedger:
    """The ledger on `engine` (schema and guards installed once per process)."""
    return _ledger_for(engine.url.render_as_string(hide_password=False))


def record_ingest(engine: sa.Engine, partition: str, source: str, rows: int, files: Iterable[str],
                  trace_id: str | None = None) -> None:
    """One row for a landed batch: where it came from and how many rows it held."""
    ledger(engine).append("ingest_batch", PIPELINE_ACTOR, {"partition": partition, "source": source, "rows": rows,
                                                           "files": sorted(files)}, trace_id=trace_id)


def record_validation(engine: sa.Engine, partition: str, valid_ids: Iterable[str], quarantined: pd.DataFrame,
                      trace_id: str | None = None) -> int:
    """One row per claim: passed validation, or quarantined with its reasons."""
    rows = [{"event": "validated", "actor": PIPELINE_ACTOR, "claim_id": str(c),
             "payload": {"partition": partition, "outcome": "valid"}, "trace_id": trace_id} for c in valid_ids]
    for q in quarantined.to_dict("records"):
        rows.append({"event": "quarantined", "actor": PIPELINE_ACTOR,
                     "claim_id": None if q.get("claim_id") is None else str(q["claim_id"]),
                     "payload": {"partition": partition, "source": q.get("source"), "reasons": list(q["reasons"])},
                     "trace_id": trace_id})
    return ledger(engine).append_many(_traced(rows))


def decision_ledger_rows(partition: str, decisions: Iterable[Mapping[str, Any]], actor: str = PIPELINE_ACTOR,
                         trace_id: str | None = None) -> list[dict[str, Any]]:
    """The three ledger rows of each decision (score, posterior, decision), claim trace ids set."""
    rows: list[dict[str, Any]] = []
    for d in decisions:
        versions = json.loads(d["versions"]) if isinstance(d["versions"], str) else d["versions"]
        common = {"actor": actor, "claim_id": str(d["claim_id"]), "versions": versions,
                  "snapshot_hash": d["snapshot_hash"], "trace_id": d.get("trace_id") or trace_id}
        rows.append({**common, "event": "score", "payload": {"score": float(d["score"])}})
        rows.append({**common, "event": "posterior", "payload": {
            "p_fraud": float(d["p_fraud"]), "p_fraud_interval": [float(d["p_fraud_low"]), float(d["p_fraud_high"])],
            "uncertainty_drivers": json.loads(d["uncertainty_drivers"])}})
        rows.append({**common, "event": "decision", "payload": {
            "partition": partition, "route": d["route"], "amount": float(d["amount"]),
            "rationale": json.loads(d["rationale"])}})
    return _traced(rows)


def record_decisions(engine: sa.Engine, partition: str, decisions: pd.DataFrame, actor: str = PIPELINE_ACTOR,
                     trace_id: str | None = None) -> int:
    """Three rows per claim: its score, its posterior (with interval) and its routed decision, each with the
    versions and the feature-snapshot hash it was computed from."""
    return ledger(engine).append_many(decision_ledger_rows(partition, decisions.to_dict("records"), actor, trace_id))


def record_payouts(engine: sa.Engine, partition: str, receipts: Mapping[str, str],
                   instructions: Iterable[Any], actor: str = "connectors.payout@1", trace_id: str | None = None) -> int:
    """One row per claim newly paid (the connector's `receipts`), with its amount, currency and reason."""
    by_claim = {i.claim_id: i for i in instructions}
    rows = [{"event": "payout", "actor": actor, "claim_id": c, "trace_id": trace_id,
             "payload": {"partition": partition, "receipt_id": r, "amount": float(by_claim[c].amount),
                         "currency": by_claim[c].currency, "reason": by_claim[c].reason, "status": "paid"}}
            for c, r in receipts.items()]
    return ledger(engine).append_many(_traced(rows))


def record_settlements(engine: sa.Engine, settled: Iterable[Any], actor: str = "connectors.payout@1",
                       trace_id: str | None = None) -> int:
    """One row per payout the rail acknowledged (`paid`, with its receipt) or rejected, any partition.

    `settled` is a dispatch report's `settled` list: verdicts that arrived late for other
    partitions (a bank's report) are recorded by whichever run collected them.
    """
    rows = [{"event": "payout", "actor": actor, "claim_id": s.claim_id, "trace_id": trace_id,
             "payload": {"partition": s.partition, "receipt_id": s.receipt, "amount": float(s.amount),
                         "currency": s.currency, "reason": s.reason,
                         "status": "paid" if s.status == "acknowledged" else s.status,
                         **({"detail": s.detail} if s.status != "acknowledged" and s.detail else {})}}
            for s in settled]
    return ledger(engine).append_many(_traced(rows)) if rows else 0


def record_user_change(engine: sa.Engine, actor: str, user: str, change: Mapping[str, Any],
                       policy_label: str | None = None) -> None:
    """An account created, enabled, disabled or given a new password (never the password itself)."""
    ledger(engine).append("user_change", actor, {"user": user, **change},
                          versions={"policy": policy_label} if policy_label else None)


def record_change(engine: sa.Engine, event: str, actor: str, payload: Mapping[str, Any],
                  versions: Mapping[str, str] | None = None) -> None:
    """A model-alias move or a policy version coming into force."""
    ledger(engine).append(event, actor, dict(payload), versions=versions)


def record_policy_in_force(engine: sa.Engine, label: str, versions: Mapping[str, str],
                           actor: str = PIPELINE_ACTOR) -> bool:
    """Record `label` the first time decisions run under it (and after any other policy ran); True if recorded."""
    led = ledger(engine)
    with engine.connect() as conn:
        last = conn.execute(sa.select(audit_ledger.c.payload).where(audit_ledger.c.event == "policy_in_force")
                            .order_by(audit_ledger.c.seq.desc()).limit(1)).scalar()
    if last is not None and json.loads(last).get("policy") == label:
        return False
    led.append("policy_in_force", actor, {"policy": label, "files": dict(versions)})
    return True
