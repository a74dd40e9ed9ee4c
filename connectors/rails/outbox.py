"""The payout outbox: one `payout_intents` row per claim to pay, written in the transaction that decides it.

An intent is written with `add_intents(conn, ...)` on the caller's connection, so the approval (or
decision) and the intent to pay commit together or not at all: no approval without its payout, no
payout without its approval. The dispatcher (connectors/rails/dispatch.py) moves intents through
`intent` → `sending` (claimed into a batch) → `sent` (handed to the rail) → `acknowledged` or
`rejected` (the rail's verdict, with its receipt). The idempotency key is the primary key, so an
intent written twice (a re-run, a retry) is one intent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from aios.kernel.db import ensure_tables, insert_ignore, metadata

INTENT, SENDING, SENT, ACKNOWLEDGED, REJECTED = "intent", "sending", "sent", "acknowledged", "rejected"
STATUSES = (INTENT, SENDING, SENT, ACKNOWLEDGED, REJECTED)

payout_intents = sa.Table(
    "payout_intents", metadata,
    sa.Column("idempotency_key", sa.String(120), primary_key=True),
    sa.Column("claim_id", sa.String(80), nullable=False, index=True),
    sa.Column("partition", sa.String(40), nullable=False, index=True),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("creditor_name", sa.String(140), nullable=False),
    sa.Column("creditor_iban", sa.String(34), nullable=False),
    sa.Column("reason", sa.String(40), nullable=False),
    sa.Column("rail", sa.String(20), nullable=False, index=True),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("batch_id", sa.String(35), nullable=True, index=True),
    sa.Column("batch_created_at", sa.String(40), nullable=True),
    sa.Column("receipt", sa.String(120), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("sent_at", sa.String(40), nullable=True),
    sa.Column("settled_at", sa.String(40), nullable=True),
)

# The acknowledged payouts, one row per claim, with the rail's receipt: written in the transaction
# that records the rail's acknowledgement (dispatch.record), read by whoever counts paid claims.
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


def utcnow_iso() -> str:
    """Now, UTC, ISO 8601."""
    return datetime.now(timezone.utc).isoformat()


def to_cents(amount: float | int | str) -> int:
    """An amount in major units as integer cents, rounded half-up (never float arithmetic on money later)."""
    from decimal import ROUND_HALF_UP, Decimal

    cents = (Decimal(str(amount)) * 100).quantize(Decimal("1"), rounding=ROUND_HALF_UP)
    return int(cents)


def demo_iban(reference: str) -> str:
    """A syntactically valid IBAN (mod-97 check digits, bank code `MOCK`) derived from `reference`.

    The synthetic claims carry no payee bank account; until a payee directory exists the embedded
    profile pays each claimant into this stand-in account at a bank that does not exist.
    """
    digits = str(int(hashlib.sha256(reference.encode()).hexdigest(), 16))[:10].rjust(10, "0")
    bban = "MOCK" + digits
    numeric = "".join(str(int(ch, 36)) for ch in bban + "NL00")
    check = 98 - int(numeric) % 97
    return f"NL{check:02d}{bban}"


@dataclass(frozen=True)
class Intent:
    """What to pay, for which claim and partition, on which rail."""

    claim_id: str
    partition: str
    amount: float
    currency: str
    reason: str
    rail: str
    creditor_name: str = ""
    creditor_iban: str = ""

    @property
    def idempotency_key(self) -> str:
        """The key that makes paying this claim happen at most once (also the ISO EndToEndId)."""
        return f"payout:{self.claim_id}"


def _row(i: Intent, now: str) -> dict:
    if not i.claim_id:
        raise ValueError("claim_id: required for a payout intent")
    cents = to_cents(i.amount)
    if cents <= 0:
        raise ValueError(f"amount: must be positive for claim {i.claim_id}, got {i.amount}")
    if len(i.currency) != 3:
        raise ValueError(f"currency: three-letter ISO 4217 code expected for claim {i.claim_id}, got {i.currency!r}")
    return {"idempotency_key": i.idempotency_key, "claim_id": i.claim_id, "partition": i.partition,
            "amount_cents": cents, "currency": i.currency.upper(),
            "creditor_name": (i.creditor_name or f"Claimant {i.claim_id}")[:140],
            "creditor_iban": i.creditor_iban or demo_iban(i.claim_id), "reason": i.reason, "rail": i.rail,
            "status": INTENT, "created_at": now}


def add_intents(conn: sa.Connection, intents: Iterable[Intent]) -> int:
    """Write intents on the caller's connection (its transaction); an existing key is left as it is.

    Returns how many were new. The caller's `engine.begin()` block makes the intent and the
    decision that causes it one atomic write.
    """
    now = utcnow_iso()
    rows = list({r["idempotency_key"]: r for r in (_row(i, now) for i in intents)}.values())
    if not rows:
        return 0
    new = conn.execute(insert_ignore(conn, payout_intents).returning(payout_intents.c.idempotency_key), rows)
    return len(list(new.scalars()))


def ensure_outbox(engine: sa.Engine) -> None:
    """Create the outbox table where missing."""
    ensure_tables(engine, payout_intents, payouts_table)


def status_counts(engine: sa.Engine, partition: str | None = None) -> dict[str, dict[str, int]]:
    """Per rail, how many intents are in each status (optionally for one partition)."""
    ensure_outbox(engine)
    q = sa.select(payout_intents.c.rail, payout_intents.c.status, sa.func.count()).group_by(
        payout_intents.c.rail, payout_intents.c.status)
    if partition is not None:
        q = q.where(payout_intents.c.partition == partition)
    out: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for rail, status, n in conn.execute(q):
            out.setdefault(rail, {s: 0 for s in STATUSES})[status] = int(n)
    return out


def unsettled(engine: sa.Engine) -> dict[str, int]:
    """How many intents still wait for the rail, per status (intent, sending, sent): what a dispatch run is for."""
    ensure_outbox(engine)
    q = (sa.select(payout_intents.c.status, sa.func.count()).where(
        payout_intents.c.status.in_((INTENT, SENDING, SENT))).group_by(payout_intents.c.status))
    with engine.connect() as conn:
        counts = {status: int(n) for status, n in conn.execute(q)}
    return {s: counts.get(s, 0) for s in (INTENT, SENDING, SENT)}
