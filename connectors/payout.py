"""The payout connector: pays approved claims into a payout ledger, at most once per claim.

Each payout carries an idempotency key (`payout:<claim_id>`); the ledger's unique
constraint on it makes a repeated, retried or crashed-and-rerun payout pay nothing twice.
Before paying, the connector asks the gate store whether the partition's gates passed
and refuses, saying why, when they did not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa

from aios.db import ensure_tables, metadata
from connectors.gates import gate_failures

payouts_table = sa.Table(
    "payouts", metadata,
    sa.Column("idempotency_key", sa.String(120), primary_key=True),
    sa.Column("claim_id", sa.String(80), nullable=False, index=True),
    sa.Column("partition", sa.String(40), nullable=False, index=True),
    sa.Column("amount", sa.Float, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("reason", sa.String(40), nullable=False),
    sa.Column("receipt_id", sa.String(80), nullable=False),
    sa.Column("paid_at", sa.String(40), nullable=False),
)


class PayoutRefused(RuntimeError):
    """The partition's gates did not pass; the message says which and why."""


@dataclass(frozen=True)
class PayoutInstruction:
    """One claim to pay."""

    claim_id: str
    partition: str
    amount: float
    currency: str
    reason: str = "auto_approve"

    @property
    def idempotency_key(self) -> str:
        """The key that makes paying this claim happen at most once."""
        return f"payout:{self.claim_id}"


@dataclass
class PayoutReport:
    """What a pay call did: newly paid, already paid before (skipped), and the receipts of the new ones."""

    paid: int = 0
    already_paid: int = 0
    amount_paid: float = 0.0
    receipts: dict[str, str] = field(default_factory=dict)


class PayoutConnector:
    """Pays through the payout ledger (SQLite or PostgreSQL via SQLAlchemy)."""

    def __init__(self, engine: sa.Engine, required_gates: tuple[str, ...] = ()) -> None:
        self.engine = engine
        self.required_gates = required_gates
        ensure_tables(engine, payouts_table)

    def pay(self, partition: str, instructions: list[PayoutInstruction]) -> PayoutReport:
        """Pay each instruction once; refuse the whole call when a required gate of `partition` has not passed."""
        failures = gate_failures(self.engine, partition, self.required_gates)
        if failures:
            raise PayoutRefused(f"payouts for partition {partition} refused: " + "; ".join(failures))
        report = PayoutReport()
        now = datetime.now(timezone.utc).isoformat()
        with self.engine.begin() as conn:
            keys = [i.idempotency_key for i in instructions]
            existing: set[str] = set()
            for chunk in range(0, len(keys), 500):
                existing |= set(conn.execute(sa.select(payouts_table.c.idempotency_key).where(
                    payouts_table.c.idempotency_key.in_(keys[chunk:chunk + 500]))).scalars())
            rows = []
            for ins in instructions:
                if ins.idempotency_key in existing:
                    report.already_paid += 1
                    continue
                existing.add(ins.idempotency_key)
                receipt = "RCPT-" + hashlib.sha256(ins.idempotency_key.encode()).hexdigest()[:16]
                rows.append({"idempotency_key": ins.idempotency_key, "claim_id": ins.claim_id,
                             "partition": ins.partition, "amount": float(ins.amount), "currency": ins.currency,
                             "reason": ins.reason, "receipt_id": receipt, "paid_at": now})
                report.receipts[ins.claim_id] = receipt
                report.paid += 1
                report.amount_paid += float(ins.amount)
            if rows:
                # The primary key is the last line of defence against a concurrent second payer.
                conn.execute(payouts_table.insert(), rows)
        return report

    def paid_claims(self, partition: str | None = None) -> list[dict]:
        """Ledger rows, optionally for one partition."""
        q = sa.select(payouts_table)
        if partition is not None:
            q = q.where(payouts_table.c.partition == partition)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(payouts_table.c.claim_id))]
