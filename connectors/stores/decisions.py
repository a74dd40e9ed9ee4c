"""The platform's stores (SQLAlchemy Core, SQLite or PostgreSQL): decisions, quarantine, the review queue."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import sqlalchemy as sa

from aios.kernel.contracts import Route
from aios.kernel.db import ensure_tables, metadata

decisions_table = sa.Table(
    "decisions", metadata,
    sa.Column("claim_id", sa.String(80), primary_key=True),
    sa.Column("partition", sa.String(40), nullable=False, index=True),
    sa.Column("amount", sa.Float, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("p_fraud", sa.Float, nullable=False),
    sa.Column("p_fraud_low", sa.Float, nullable=False),
    sa.Column("p_fraud_high", sa.Float, nullable=False),
    sa.Column("route", sa.String(20), nullable=False, index=True),
    sa.Column("rationale", sa.Text, nullable=False),
    sa.Column("uncertainty_drivers", sa.Text, nullable=False),
    sa.Column("versions", sa.Text, nullable=False),
    sa.Column("snapshot_hash", sa.String(64), nullable=False),
    sa.Column("decided_at", sa.String(40), nullable=False),
)

quarantine_table = sa.Table(
    "quarantine", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("partition", sa.String(40), nullable=False, index=True),
    sa.Column("claim_id", sa.String(80), nullable=True),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("raw", sa.Text, nullable=False),
    sa.Column("quarantined_at", sa.String(40), nullable=False),
)

review_cases = sa.Table(
    "review_cases", metadata,
    sa.Column("claim_id", sa.String(80), primary_key=True),
    sa.Column("partition", sa.String(40), nullable=False, index=True),
    sa.Column("amount", sa.Float, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("p_fraud", sa.Float, nullable=False),
    sa.Column("p_fraud_low", sa.Float, nullable=False),
    sa.Column("p_fraud_high", sa.Float, nullable=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("enqueued_at", sa.String(40), nullable=False),
    sa.Column("sla_due_at", sa.String(40), nullable=False),
)

REVIEW_SLA = timedelta(hours=24)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _replace_partition(engine: sa.Engine, table: sa.Table, partition: str, rows: list[dict]) -> None:
    """Re-materializing a partition replaces its rows: the store holds the latest computation."""
    ensure_tables(engine, table)
    with engine.begin() as conn:
        conn.execute(table.delete().where(table.c.partition == partition))
        if rows:
            conn.execute(table.insert(), rows)


DECISION_FIELDS = ("claim_id", "amount", "currency", "score", "p_fraud", "p_fraud_low", "p_fraud_high", "route",
                   "rationale", "uncertainty_drivers", "versions", "snapshot_hash")


def _decision_rows(partition: str, decisions: pd.DataFrame, decided_at: str) -> list[dict]:
    return [{**{k: r[k] for k in DECISION_FIELDS}, "partition": partition, "decided_at": decided_at}
            for r in decisions.to_dict("records")]


def save_decisions(engine: sa.Engine, partition: str, decisions: pd.DataFrame, decided_at: str | None = None) -> None:
    """Store the partition's decisions (one row per claim), replacing what the partition held."""
    _replace_partition(engine, decisions_table, partition, _decision_rows(partition, decisions, decided_at or _now()))


def upsert_decisions(engine: sa.Engine, partition: str, decisions: pd.DataFrame, decided_at: str) -> None:
    """Store these claims' decisions, replacing earlier rows of the same claims only (the sync API's writes)."""
    ensure_tables(engine, decisions_table)
    rows = _decision_rows(partition, decisions, decided_at)
    with engine.begin() as conn:
        conn.execute(decisions_table.delete().where(decisions_table.c.claim_id.in_([r["claim_id"] for r in rows])))
        conn.execute(decisions_table.insert(), rows)


def upsert_decision_rows(conn: sa.Connection, partition: str, rows: list[dict], decided_at: str) -> None:
    """Inside the caller's transaction: these claims' decisions (dicts with `DECISION_FIELDS`) replace
    earlier rows of the same claims (the sync API's writes, as `upsert_decisions`)."""
    out = [{**{k: r[k] for k in DECISION_FIELDS}, "partition": partition, "decided_at": decided_at} for r in rows]
    conn.execute(decisions_table.delete().where(decisions_table.c.claim_id.in_([r["claim_id"] for r in out])))
    conn.execute(decisions_table.insert(), out)


def open_review_rows(conn: sa.Connection, partition: str, rows: list[dict]) -> dict[str, str]:
    """Inside the caller's transaction: a review case for each decision (dict with `currency`) routed to human
    review that has none yet (as `enqueue_reviews`); returns those claims' review status (new cases: open)."""
    todo = [r for r in rows if r["route"] == Route.human_review.value]
    if not todo:
        return {}
    ids = [r["claim_id"] for r in todo]
    statuses = dict(conn.execute(sa.select(review_cases.c.claim_id, review_cases.c.status).where(
        review_cases.c.claim_id.in_(ids))).all())
    now = datetime.now(timezone.utc)
    new = [{"claim_id": r["claim_id"], "partition": partition, "amount": r["amount"], "currency": r["currency"],
            "p_fraud": r["p_fraud"], "p_fraud_low": r["p_fraud_low"], "p_fraud_high": r["p_fraud_high"],
            "status": "open", "enqueued_at": now.isoformat(), "sla_due_at": (now + REVIEW_SLA).isoformat()}
           for r in todo if r["claim_id"] not in statuses]
    if new:
        conn.execute(review_cases.insert(), new)
        statuses.update({r["claim_id"]: "open" for r in new})
    return statuses


def save_quarantine(engine: sa.Engine, partition: str, quarantined: pd.DataFrame) -> None:
    """Store the partition's quarantined rows with their reasons and raw values."""
    now = _now()
    rows = [{"partition": partition, "claim_id": r["claim_id"], "source": str(r["source"]),
             "reasons": json.dumps(list(r["reasons"])), "raw": json.dumps(r["raw"], default=str),
             "quarantined_at": now} for r in quarantined.to_dict("records")]
    _replace_partition(engine, quarantine_table, partition, rows)


def enqueue_reviews(engine: sa.Engine, partition: str, decisions: pd.DataFrame) -> int:
    """Open a review case for each claim routed to human review that has none yet; returns how many are new.

    Cases already open or decided are left as they are: a re-run never reopens a reviewed claim.
    """
    ensure_tables(engine, review_cases)
    todo = decisions[decisions["route"] == Route.human_review.value]
    now = datetime.now(timezone.utc)
    new = 0
    with engine.begin() as conn:
        # by claim id, not partition: a claim re-submitted on another day keeps its one case
        ids = list(todo["claim_id"])
        existing = set(conn.execute(sa.select(review_cases.c.claim_id).where(
            review_cases.c.claim_id.in_(ids))).scalars()) if ids else set()
        rows = []
        for r in todo.to_dict("records"):
            if r["claim_id"] in existing:
                continue
            rows.append({"claim_id": r["claim_id"], "partition": partition, "amount": r["amount"],
                         "currency": r["currency"], "p_fraud": r["p_fraud"], "p_fraud_low": r["p_fraud_low"],
                         "p_fraud_high": r["p_fraud_high"], "status": "open", "enqueued_at": now.isoformat(),
                         "sla_due_at": (now + REVIEW_SLA).isoformat()})
        if rows:
            conn.execute(review_cases.insert(), rows)
            new = len(rows)
    return new


def read_table(engine: sa.Engine, table: sa.Table, partition: str | None = None) -> pd.DataFrame:
    """A store's rows as a DataFrame, optionally for one partition."""
    ensure_tables(engine, table)
    q = sa.select(table)
    if partition is not None:
        q = q.where(table.c.partition == partition)
    with engine.connect() as conn:
        return pd.read_sql(q, conn)
