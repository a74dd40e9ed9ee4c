"""Shared helpers of the review tests: a review store on its own database, with cases and accounts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from connectors.stores import reviews
from aios.kernel.canonical import canonical_json
from aios.kernel.contracts import rationale_item
from connectors.stores import accounts
from aios.usecases import review_workflow as workflow
from aios.kernel.db import ensure_tables, get_engine
from aios.kernel.settings import Settings
from connectors.stores.decisions import enqueue_reviews, review_cases, save_decisions
from connectors.stores.gates import record_gate
from governance.policy import PolicySet, load_policy_set

PASSWORD = "correct horse battery"
RATIONALE = canonical_json([
    rationale_item("score", "classifier", 0.21, band="mid"),
    rationale_item("feature", "amount_ratio", 3.1, 0.08),
    rationale_item("feature", "report_delay_days", 12, 0.03),
    rationale_item("feature", "channel", "web", -0.01),
    rationale_item("evidence", "score_band", "mid", 0.05),
    rationale_item("evidence", "late_report", "yes", 0.041),
])
DRIVERS = json.dumps([{"signal": "doc_amount_mismatch", "expected_change": 0.083},
                      {"signal": "prior_claims_band", "expected_change": 0.021}])


@dataclass
class ReviewEnv:
    """A settings home, its stores' engine and the policy set in force."""

    settings: Settings
    engine: sa.Engine
    policy: PolicySet

    @property
    def threshold(self) -> float:
        return workflow.leaning_threshold(self.policy)

    def user(self, name: str, role: str) -> accounts.User:
        """An account (created on first use) with the shared test password."""
        existing = {u["name"]: u["role"] for u in accounts.list_users(self.engine)}
        if name not in existing:
            accounts.create_user(self.engine, name, role, PASSWORD, self.policy.roles, created_by="test")
        return accounts.User(name, role)

    def cases(self, partition: str, claims: dict[str, tuple[float, float]], gates_pass: bool = True) -> None:
        """Decisions routed to human review and their open cases: claim_id → (amount, p_fraud)."""
        rows = [{"claim_id": cid, "amount": amount, "currency": "EUR", "score": p, "p_fraud": p,
                 "p_fraud_low": max(0.0, p - 0.05), "p_fraud_high": min(1.0, p + 0.05), "route": "human_review",
                 "rationale": RATIONALE, "uncertainty_drivers": DRIVERS, "versions": "{}",
                 "snapshot_hash": "0" * 64} for cid, (amount, p) in claims.items()]
        frame = pd.DataFrame(rows)
        save_decisions(self.engine, partition, frame)
        enqueue_reviews(self.engine, partition, frame)
        for gate in ("data_quality", "drift"):
            record_gate(self.engine, partition, gate, gates_pass, "set by the test")

    def set_times(self, claim_id: str, enqueued: datetime, sla_due: datetime) -> None:
        """Pin a case's queue times (for hand-computed metrics)."""
        with self.engine.begin() as conn:
            conn.execute(review_cases.update().where(review_cases.c.claim_id == claim_id)
                         .values(enqueued_at=enqueued.isoformat(), sla_due_at=sla_due.isoformat()))

    def status(self, claim_id: str) -> str:
        with self.engine.connect() as conn:
            q = sa.select(review_cases.c.status).where(review_cases.c.claim_id == claim_id)
            return conn.execute(q).scalar_one()


def make_env(home: Path, database_url: str | None = None) -> ReviewEnv:
    """A fresh review environment in `home` (its own SQLite database, or the one at `database_url`)."""
    settings = Settings(home=home, database_url=database_url)
    settings.ensure_dirs()
    engine = get_engine(settings.db_url)
    ensure_tables(engine)
    reviews.ensure_review_tables(engine)
    return ReviewEnv(settings=settings, engine=engine, policy=load_policy_set())
