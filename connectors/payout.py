"""The payout connector: approved claims become outbox intents, paid once each through a payment rail.

Each payout carries an idempotency key (`payout:<claim_id>`). `pay` refuses, saying why, when the
partition's gates did not pass; otherwise it writes the intents (connectors/rails/outbox.py) and
runs the dispatcher (connectors/rails/dispatch.py) on the configured rail, whose own ledger (the
bank's pain.002 reports, the provider's payments) is the truth for "paid exactly once". A claim
counts as paid when its rail acknowledged it; the `payouts` table keeps those acknowledgements
(with the rail's receipt) for the readers that count paid claims.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from aios.kernel.db import ensure_tables
from connectors.stores.gates import gate_failures
from connectors.rails.base import PaymentRail
from connectors.rails.dispatch import DispatchReport, Settled, collect, dispatch
from connectors.rails.outbox import ACKNOWLEDGED, Intent, add_intents, ensure_outbox, payout_intents, payouts_table

__all__ = ["PayoutConnector", "PayoutInstruction", "PayoutRefused", "PayoutReport", "payouts_table"]


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
    creditor_name: str = ""
    creditor_iban: str = ""

    @property
    def idempotency_key(self) -> str:
        """The key that makes paying this claim happen at most once."""
        return f"payout:{self.claim_id}"

    def intent(self, rail: str) -> Intent:
        """This instruction as an outbox intent on `rail`."""
        return Intent(self.claim_id, self.partition, self.amount, self.currency, self.reason, rail,
                      self.creditor_name, self.creditor_iban)


@dataclass
class PayoutReport:
    """What a pay call did for its instructions: newly paid, already paid before, still on their way.

    `settled` lists every verdict the dispatch recorded (other partitions' late reports included),
    so the caller can write one audit row for each.
    """

    paid: int = 0
    already_paid: int = 0
    pending: int = 0
    rejected: int = 0
    amount_paid: float = 0.0
    receipts: dict[str, str] = field(default_factory=dict)
    settled: list[Settled] = field(default_factory=list)


class PayoutConnector:
    """Pays through the outbox and `rail` (SQLite or PostgreSQL via SQLAlchemy for the outbox).

    `settle`, when given, is called between sending and collecting: the embedded profile passes
    its in-process bank there, so a demo run sees its payouts acknowledged at once.
    """

    def __init__(self, engine: sa.Engine, required_gates: tuple[str, ...] = (), rail: PaymentRail | None = None,
                 settle: Callable[[], object] | None = None) -> None:
        self.engine = engine
        self.required_gates = required_gates
        self.rail = rail
        self.settle = settle
        ensure_tables(engine, payouts_table)
        ensure_outbox(engine)

    @property
    def rail_name(self) -> str:
        """The rail intents are written for."""
        return self.rail.name if self.rail is not None else "iso20022"

    def enqueue(self, instructions: list[PayoutInstruction]) -> int:
        """Write intents for `instructions` (one transaction); returns how many were new."""
        with self.engine.begin() as conn:
            return add_intents(conn, [i.intent(self.rail_name) for i in instructions])

    def dispatch(self, partition: str | None = None) -> DispatchReport:
        """Deliver pending intents (optionally of one partition) through the rail and collect verdicts."""
        if self.rail is None:
            raise RuntimeError("rail: no payment rail configured for this connector")
        report = dispatch(self.engine, self.rail, self.required_gates, partition=partition)
        if self.settle is not None:
            self.settle()
            collect(self.engine, self.rail, report)
        return report

    def pay(self, partition: str, instructions: list[PayoutInstruction]) -> PayoutReport:
        """Pay each instruction once; refuse the whole call when a required gate of `partition` has not passed."""
        failures = gate_failures(self.engine, partition, self.required_gates)
        if failures:
            raise PayoutRefused(f"payouts for partition {partition} refused: " + "; ".join(failures))
        keys = {i.idempotency_key: i for i in instructions}
        before = self._statuses(list(keys))
        self.enqueue(instructions)
        dispatched = self.dispatch(partition) if self.rail is not None else DispatchReport()
        after = self._statuses(list(keys))
        report = PayoutReport(settled=dispatched.settled)
        newly = {f"payout:{s.claim_id}": s for s in dispatched.acknowledged}
        for key, ins in keys.items():
            if before.get(key) == ACKNOWLEDGED:
                report.already_paid += 1
            elif key in newly:
                report.paid += 1
                report.amount_paid += float(ins.amount)
                report.receipts[ins.claim_id] = newly[key].receipt
            elif after.get(key) == ACKNOWLEDGED:
                report.already_paid += 1  # acknowledged meanwhile by a concurrent dispatcher
            elif after.get(key) == "rejected":
                report.rejected += 1
            else:
                report.pending += 1
        report.already_paid += len(instructions) - len(keys)
        return report

    def _statuses(self, keys: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(keys), 500):
                out.update(conn.execute(sa.select(payout_intents.c.idempotency_key, payout_intents.c.status)
                                        .where(payout_intents.c.idempotency_key.in_(keys[i:i + 500]))).all())
        return out

    def paid_claims(self, partition: str | None = None) -> list[dict]:
        """Acknowledged payouts (with the rail's receipt), optionally for one partition."""
        q = sa.select(payouts_table)
        if partition is not None:
            q = q.where(payouts_table.c.partition == partition)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(payouts_table.c.claim_id))]
