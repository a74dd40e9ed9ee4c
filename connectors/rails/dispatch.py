"""The payout dispatcher: delivers outbox intents to a rail and records the rail's verdict.

Written to be killed anywhere and run again:
- an intent is claimed into a batch (`sending`, with a batch id) in one committed transaction
  before anything is sent, and is only ever sent again under that same batch id and its own
  idempotency key, so the rail recognises a repeat (a bank refuses a `MsgId` it has seen; a
  payment API answers a repeated `Idempotency-Key` with the first payment) and pays once;
- an intent leaves `sending`/`sent` only when the rail's verdict is recorded, so nothing claimed
  is forgotten: every run first re-sends the batches a crashed run left in `sending`;
- intents of a partition whose gates did not pass are refused (left waiting, reported), whatever
  run asks — Dagster's blocking checks only stop assets inside their own run.
Pure use-case code: no Dagster, no web framework.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa

from aios.kernel.db import insert_ignore
from connectors.stores.gates import gate_failures
from connectors.rails.base import PaymentOrder, PaymentRail, RailOutcome, RailUnavailable
from connectors.rails.crash import crash_point
from connectors.rails.outbox import (
    ACKNOWLEDGED,
    INTENT,
    REJECTED,
    SENDING,
    SENT,
    ensure_outbox,
    payout_intents,
    payouts_table,
    utcnow_iso,
)


@dataclass
class Settled:
    """One intent the rail acknowledged or rejected during this dispatch."""

    claim_id: str
    partition: str
    amount: float
    currency: str
    reason: str
    status: str
    receipt: str
    detail: str


@dataclass
class DispatchReport:
    """What one dispatch did: batches sent, intents sent, verdicts recorded, partitions refused and why."""

    batches: list[str] = field(default_factory=list)
    sent: int = 0
    settled: list[Settled] = field(default_factory=list)
    refused: dict[str, list[str]] = field(default_factory=dict)
    unavailable: list[str] = field(default_factory=list)

    @property
    def acknowledged(self) -> list[Settled]:
        """The intents the rail acknowledged in this dispatch."""
        return [s for s in self.settled if s.status == ACKNOWLEDGED]

    @property
    def rejected(self) -> list[Settled]:
        """The intents the rail rejected in this dispatch."""
        return [s for s in self.settled if s.status == REJECTED]


def _new_batch_id(now: datetime) -> str:
    return f"AIOS-{now:%Y%m%d%H%M%S}-{secrets.token_hex(4).upper()}"


def _claim(engine: sa.Engine, rail: str, keys: list[str], batch_id: str, created_at: str) -> int:
    """Move `keys` from `intent` to `sending` on `rail` under `batch_id` in one transaction; returns how many moved."""
    with engine.begin() as conn:
        n = conn.execute(payout_intents.update().where(
            payout_intents.c.idempotency_key.in_(keys) & (payout_intents.c.status == INTENT))
            .values(status=SENDING, rail=rail, batch_id=batch_id, batch_created_at=created_at)).rowcount
    return int(n)


def claim_batches(engine: sa.Engine, rail: str, required_gates: tuple[str, ...], partition: str | None,
                  batch_size: int, report: DispatchReport) -> None:
    """Claim waiting intents into batches (one currency each); partitions with failed gates are refused."""
    # a waiting intent goes to whichever rail claims it (its `rail` column says which one did);
    # once claimed, only that rail sends it again
    q = sa.select(payout_intents.c.idempotency_key, payout_intents.c.partition, payout_intents.c.currency).where(
        payout_intents.c.status == INTENT)
    if partition is not None:
        q = q.where(payout_intents.c.partition == partition)
    with engine.connect() as conn:
        waiting = conn.execute(q.order_by(payout_intents.c.idempotency_key)).all()
    by_part: dict[str, list] = defaultdict(list)
    for r in waiting:
        by_part[r.partition].append(r)
    groups: dict[str, list[str]] = defaultdict(list)
    for part, rows in sorted(by_part.items()):
        failures = gate_failures(engine, part, required_gates)
        if failures:
            report.refused[part] = failures
            continue
        for r in rows:
            groups[r.currency].append(r.idempotency_key)
    for currency, keys in sorted(groups.items()):
        for i in range(0, len(keys), batch_size):
            now = datetime.now(timezone.utc)
            _claim(engine, rail, keys[i:i + batch_size], _new_batch_id(now), now.isoformat())
            crash_point("between_batch_claims")


def _orders(rows: list) -> list[PaymentOrder]:
    return [PaymentOrder(r.idempotency_key, r.claim_id, int(r.amount_cents), r.currency, r.creditor_name,
                         r.creditor_iban, f"Claim {r.claim_id} {r.reason}") for r in rows]


def record(engine: sa.Engine, outcomes: list[RailOutcome], report: DispatchReport) -> None:
    """Record rail outcomes in one transaction; a verdict never overwrites an earlier verdict.

    An outcome applies to an intent of the batch it names (`batch_id`, when given): a report about
    another file (say, a re-sent duplicate) changes nothing. `*` as key means the whole batch.
    """
    if not outcomes:
        return
    now = utcnow_iso()
    t = payout_intents
    with engine.begin() as conn:
        for o in outcomes:
            where = t.c.status.in_((SENDING, SENT))
            where &= (t.c.batch_id == o.batch_id) if o.key_is_batch else (t.c.idempotency_key == o.idempotency_key)
            if o.batch_id and not o.key_is_batch:
                where &= t.c.batch_id == o.batch_id
            if o.status == SENT:
                conn.execute(t.update().where(where & (t.c.status == SENDING))
                             .values(status=SENT, receipt=o.receipt or None, sent_at=now))
                continue
            # the transition is the write itself (UPDATE … RETURNING): two dispatchers recording the same
            # verdict cannot both count it, and the first statement takes the write lock at once.
            rows = conn.execute(t.update().where(where).values(
                status=o.status, receipt=o.receipt or None, detail=o.detail or None, settled_at=now,
                sent_at=sa.func.coalesce(t.c.sent_at, now)).returning(
                t.c.idempotency_key, t.c.claim_id, t.c.partition, t.c.amount_cents, t.c.currency,
                t.c.reason)).all()
            for r in rows:
                amount = r.amount_cents / 100
                report.settled.append(Settled(r.claim_id, r.partition, amount, r.currency, r.reason, o.status,
                                              o.receipt or r.idempotency_key, o.detail))
                if o.status == ACKNOWLEDGED:
                    conn.execute(insert_ignore(conn, payouts_table).values(
                        idempotency_key=r.idempotency_key, claim_id=r.claim_id, partition=r.partition,
                        amount=amount, currency=r.currency, reason=r.reason, receipt_id=o.receipt, paid_at=now))
            crash_point("between_outcome_records")


def send_claimed(engine: sa.Engine, rail: PaymentRail, report: DispatchReport) -> None:
    """Send every batch in `sending` (this run's and any a crashed run left) and record what the rail said."""
    t = payout_intents
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).where((t.c.status == SENDING) & (t.c.rail == rail.name))
                            .order_by(t.c.batch_id, t.c.idempotency_key)).all()
    batches: dict[str, list] = defaultdict(list)
    for r in rows:
        batches[r.batch_id].append(r)
    for batch_id, members in batches.items():
        crash_point("before_send")
        try:
            outcomes = rail.send(batch_id, members[0].batch_created_at, _orders(members))
        except RailUnavailable as exc:
            report.unavailable.append(f"{batch_id}: {exc}")
            continue
        crash_point("after_send_before_receipt")
        report.batches.append(batch_id)
        unanswered = len({m.idempotency_key for m in members} - {o.idempotency_key for o in outcomes})
        if unanswered:
            report.unavailable.append(f"{batch_id}: {unanswered} payment(s) unanswered; they stay claimed and are "
                                      f"sent again under the same key")
        report.sent += sum(1 for o in outcomes if o.status == SENT)
        record(engine, [_with_batch(o, batch_id) for o in outcomes], report)
        crash_point("after_batch_recorded")


def _with_batch(o: RailOutcome, batch_id: str) -> RailOutcome:
    return o if o.batch_id else RailOutcome(o.idempotency_key, o.status, o.receipt, o.detail, batch_id, o.source)


def collect(engine: sa.Engine, rail: PaymentRail, report: DispatchReport) -> None:
    """Record the verdicts the rail delivered since last time (status reports), then let it archive them."""
    outcomes = rail.collect()
    crash_point("after_collect_before_record")
    record(engine, outcomes, report)
    crash_point("after_record_before_archive")
    rail.collected(outcomes)


def dispatch(engine: sa.Engine, rail: PaymentRail, required_gates: tuple[str, ...] = (),
             partition: str | None = None, batch_size: int = 500) -> DispatchReport:
    """Collect late verdicts, re-send batches a crash left behind, claim and send new intents, collect again.

    Every step is idempotent: call it again after any failure (or kill) and the result is the
    same as one clean run — each intent paid once on the rail, none left behind.
    """
    ensure_outbox(engine)
    report = DispatchReport()
    collect(engine, rail, report)
    send_claimed(engine, rail, report)  # what a crashed run claimed but may not have sent
    claim_batches(engine, rail.name, required_gates, partition, batch_size, report)
    crash_point("after_claim_before_send")
    send_claimed(engine, rail, report)
    collect(engine, rail, report)
    return report
