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

from aios.kernel.db import ensure_tables, insert_ignore, metadata
from connectors.stores.gates import gate_failures

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


def _receipt(ins: "PayoutInstruction") -> str:
    return "RCPT-" + hashlib.sha256(ins.idempotency_key.encode()).hexdigest()[:16]


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
        rows, by_key = [], {}
        for ins in instructions:
            if ins.idempotency_key in by_key:
                continue
            by_key[ins.idempotency_key] = ins
            rows.append({"idempotency_key": ins.idempotency_key, "claim_id": ins.claim_id,
                         "partition": ins.partition, "amount": float(ins.amount), "currency": ins.currency,
                         "reason": ins.reason, "receipt_id": _receipt(ins), "paid_at": now})
        with self.engine.begin() as conn:
            # ON CONFLICT DO NOTHING on the idempotency key: a claim paid before, or by a concurrent
            # payer, is skipped by the database itself; RETURNING says which rows this call paid.
            paid = set(conn.execute(insert_ignore(conn, payouts_table).returning(payouts_table.c.idempotency_key),
                                    rows).scalars()) if rows else set()
        for key, ins in by_key.items():
            if key in paid:
                report.paid += 1
                report.amount_paid += float(ins.amount)
                report.receipts[ins.claim_id] = _receipt(ins)
            else:
                report.already_paid += 1
        report.already_paid += len(instructions) - len(by_key)
        return report

    def paid_claims(self, partition: str | None = None) -> list[dict]:
        """Ledger rows, optionally for one partition."""
        q = sa.select(payouts_table)
        if partition is not None:
            q = q.where(payouts_table.c.partition == partition)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(payouts_table.c.claim_id))]
