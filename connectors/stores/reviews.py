"""The review store: the case state and review action tables, the queue, case history, the payout hand-off
and the review metrics.

Plain SQLAlchemy Core on `aios.kernel.db.metadata` (SQLite embedded, PostgreSQL in production). The queue is
`connectors.stores.decisions.review_cases`. Its `status` is `open` while a case waits for people (whatever
its stage here: `new`, `escalated`, or `awaiting_second` approval), then `approved` (ready to pay),
`paid` (by the review payout job), `rejected` (closed), or `payout_refused` (approved but the payout
policy refuses it). What may happen to a case, by whom, is the review workflow's
(`aios.usecases.review_workflow`); this module only reads and writes rows, inside the caller's transaction
where a step must be atomic. Accounts are `connectors.stores.accounts`, sessions `connectors.stores.sessions`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from aios.kernel.db import ensure_tables, metadata
from aios.kernel.errors import CaseNotFound, Conflict
from connectors.stores.accounts import parse_ts, review_users, ts, utcnow
from connectors.stores.decisions import decisions_table, review_cases
from connectors.stores.sessions import review_sessions, signin_throttle
from models.routes import override_rate

WAITING = "open"
APPROVED, PAID, REJECTED, PAYOUT_REFUSED = "approved", "paid", "rejected", "payout_refused"
REVIEW_PAYOUT_REASON = "review_approved"
CLOSED_STATUSES = (APPROVED, PAID, REJECTED, PAYOUT_REFUSED)
STAGES = ("new", "escalated", "awaiting_second", "closed")
DECISION_ACTIONS = ("approve", "second_approve", "reject", "escalate")
LOCK_TTL = timedelta(minutes=30)

review_case_state = sa.Table(
    "review_case_state", metadata,
    sa.Column("claim_id", sa.String(80), primary_key=True),
    sa.Column("stage", sa.String(20), nullable=False),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("claimed_at", sa.String(40), nullable=True),
    sa.Column("updated_at", sa.String(40), nullable=False),
)

review_actions = sa.Table(
    "review_actions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("claim_id", sa.String(80), nullable=False, index=True),
    sa.Column("partition", sa.String(40), nullable=False, index=True),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("role", sa.String(40), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("model_leaning", sa.String(10), nullable=False),
    sa.Column("amount", sa.Float, nullable=False),
    sa.Column("started_at", sa.String(40), nullable=True),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("review_seconds", sa.Float, nullable=True),
)

TABLES = (review_users, review_sessions, signin_throttle, review_case_state, review_actions, review_cases,
          decisions_table)


def ensure_review_tables(engine: sa.Engine) -> None:
    """Create the review tables (accounts, sessions, and the queue, decision and payout-outbox tables they use)
    if missing."""
    from connectors.rails.outbox import payout_intents

    ensure_tables(engine, *TABLES, payout_intents)


# ---------------------------------------------------------------------------------------------
# the queue


@dataclass(frozen=True)
class QueueFilter:
    """What the queue shows: status (`open` or a closed status), stage, partition, amount range, p_fraud
    floor, only cases claimed by `claimed_by`, or only unclaimed ones."""

    status: str = WAITING
    stage: str | None = None
    partition: str | None = None
    min_amount: float | None = None
    max_amount: float | None = None
    min_p_fraud: float | None = None
    claimed_by: str | None = None
    unclaimed: bool = False
    limit: int = 200


def _lock_live(claimed_by: str | None, claimed_at: str | None, now: datetime) -> bool:
    return bool(claimed_by) and claimed_at is not None and now - parse_ts(claimed_at) < LOCK_TTL


def list_queue(engine: sa.Engine, flt: QueueFilter = QueueFilter(), now: datetime | None = None
               ) -> list[dict[str, Any]]:
    """Cases matching the filter, soonest SLA first, each with its stage, live lock holder, age and breach flag."""
    now = now or utcnow()
    rc, st = review_cases, review_case_state
    q = (sa.select(rc, st.c.stage, st.c.claimed_by, st.c.claimed_at)
         .select_from(rc.outerjoin(st, st.c.claim_id == rc.c.claim_id))
         .where(rc.c.status == flt.status))
    if flt.stage:
        q = q.where(sa.func.coalesce(st.c.stage, "new") == flt.stage)
    if flt.partition:
        q = q.where(rc.c.partition == flt.partition)
    if flt.min_amount is not None:
        q = q.where(rc.c.amount >= flt.min_amount)
    if flt.max_amount is not None:
        q = q.where(rc.c.amount <= flt.max_amount)
    if flt.min_p_fraud is not None:
        q = q.where(rc.c.p_fraud >= flt.min_p_fraud)
    if flt.claimed_by:
        q = q.where(st.c.claimed_by == flt.claimed_by)
    q = q.order_by(rc.c.sla_due_at, rc.c.enqueued_at, rc.c.claim_id)
    out = []
    with engine.connect() as conn:
        for r in conn.execute(q):
            row = dict(r._mapping)
            live = _lock_live(row["claimed_by"], row["claimed_at"], now)
            if flt.unclaimed and live:
                continue
            if flt.claimed_by and not live:
                continue
            row["stage"] = row["stage"] or "new"
            row["locked_by"] = row["claimed_by"] if live else None
            row["age_hours"] = (now - parse_ts(row["enqueued_at"])).total_seconds() / 3600
            row["sla_breached"] = now > parse_ts(row["sla_due_at"])
            out.append(row)
            if len(out) >= flt.limit:
                break
    return out


def queue_partitions(engine: sa.Engine) -> list[str]:
    """Partitions that have review cases, newest first (for the queue's filter)."""
    with engine.connect() as conn:
        return list(conn.execute(sa.select(review_cases.c.partition).distinct()
                                 .order_by(review_cases.c.partition.desc())).scalars())


@dataclass
class CaseView:
    """Everything the case page shows from the stores: the case, its stage and lock, the decision, the actions."""

    case: dict[str, Any]
    stage: str
    locked_by: str | None
    locked_at: str | None
    decision: dict[str, Any] | None
    actions: list[dict[str, Any]]

    @property
    def approvals(self) -> list[tuple[str, str]]:
        """(user, role) of every approval given so far."""
        return [(a["actor"], a["role"]) for a in self.actions if a["action"] in ("approve", "second_approve")]


def get_case(engine: sa.Engine, claim_id: str, now: datetime | None = None) -> CaseView:
    """One case with its decision and history; CaseNotFound if there is no review case for the claim."""
    now = now or utcnow()
    with engine.connect() as conn:
        case = conn.execute(sa.select(review_cases).where(review_cases.c.claim_id == claim_id)).first()
        if case is None:
            raise CaseNotFound(f"there is no review case for claim {claim_id!r}")
        state = conn.execute(sa.select(review_case_state).where(review_case_state.c.claim_id == claim_id)).first()
        decision = conn.execute(sa.select(decisions_table).where(decisions_table.c.claim_id == claim_id)).first()
        actions = [dict(r._mapping) for r in conn.execute(
            sa.select(review_actions).where(review_actions.c.claim_id == claim_id).order_by(review_actions.c.id))]
    live = state is not None and _lock_live(state.claimed_by, state.claimed_at, now)
    return CaseView(case=dict(case._mapping), stage=state.stage if state else "new",
                    locked_by=state.claimed_by if live else None, locked_at=state.claimed_at if live else None,
                    decision=dict(decision._mapping) if decision is not None else None, actions=actions)


# ---------------------------------------------------------------------------------------------
# rows the workflow changes, inside its transaction


def transaction(engine: sa.Engine) -> Any:
    """A transaction for one workflow step (`with transaction(engine) as conn:`)."""
    return engine.begin()


def lock_live(claimed_by: str | None, claimed_at: str | None, now: datetime) -> bool:
    """Whether a case lock (holder, since) still holds at `now`."""
    return _lock_live(claimed_by, claimed_at, now)


def open_case(conn: sa.Connection, claim_id: str) -> tuple[Any, Any]:
    """(case row, state row or None) of an open case; CaseNotFound, or Conflict when it is closed."""
    case = conn.execute(sa.select(review_cases).where(review_cases.c.claim_id == claim_id)).first()
    if case is None:
        raise CaseNotFound(f"there is no review case for claim {claim_id!r}")
    if case.status != WAITING:
        raise Conflict(f"claim {claim_id} is closed ({case.status}); it can no longer be worked")
    state = conn.execute(sa.select(review_case_state).where(review_case_state.c.claim_id == claim_id)).first()
    return case, state


def approvals_of(conn: sa.Connection, claim_id: str) -> list[tuple[str, str]]:
    """(user, role) of every approval of a case so far, oldest first."""
    return [(r.actor, r.role) for r in conn.execute(
        sa.select(review_actions.c.actor, review_actions.c.role).where(
            (review_actions.c.claim_id == claim_id) & review_actions.c.action.in_(("approve", "second_approve")))
        .order_by(review_actions.c.id))]


def take_lock(conn: sa.Connection, claim_id: str, state: Any, user_name: str, now: datetime) -> bool:
    """Lock the case for `user_name` if its state is still `state` (None: no state row yet); False if it moved
    (including two first locks at the same instant: the other one won)."""
    if state is None:
        try:
            with conn.begin_nested():
                conn.execute(review_case_state.insert().values(claim_id=claim_id, stage="new", claimed_by=user_name,
                                                               claimed_at=ts(now), updated_at=ts(now)))
        except sa.exc.IntegrityError:
            return False
        return True
    moved = conn.execute(review_case_state.update().where(
        (review_case_state.c.claim_id == claim_id)
        & (sa.func.coalesce(review_case_state.c.claimed_by, "") == (state.claimed_by or ""))
        & (sa.func.coalesce(review_case_state.c.claimed_at, "") == (state.claimed_at or "")))
        .values(claimed_by=user_name, claimed_at=ts(now), updated_at=ts(now))).rowcount
    return moved == 1


def set_stage(conn: sa.Connection, claim_id: str, stage: str | None, now: datetime) -> None:
    """Unlock the case, moving it to `stage` (None keeps the stage)."""
    values: dict[str, Any] = {"claimed_by": None, "claimed_at": None, "updated_at": ts(now)}
    if stage is not None:
        values["stage"] = stage
    conn.execute(review_case_state.update().where(review_case_state.c.claim_id == claim_id).values(**values))


def set_open_status(conn: sa.Connection, claim_id: str, status: str) -> bool:
    """Move an open case to `status`; False if it was not open any more (someone else closed it)."""
    return conn.execute(review_cases.update().where(
        (review_cases.c.claim_id == claim_id) & (review_cases.c.status == WAITING)).values(status=status)).rowcount == 1


def record_action(conn: sa.Connection, case: Any, user_name: str, role: str, action: str, reason: str,
                  outcome: str, leaning: str, started_at: str | None, now: datetime) -> int:
    """Store one review action; returns its id."""
    seconds = (now - parse_ts(started_at)).total_seconds() if started_at else None
    res = conn.execute(review_actions.insert().values(
        claim_id=case.claim_id, partition=case.partition, actor=user_name, role=role, action=action,
        reason=reason, outcome=outcome, model_leaning=leaning, amount=float(case.amount), started_at=started_at,
        at=ts(now), review_seconds=seconds))
    return int(res.inserted_primary_key[0])


def open_review_claims(engine: sa.Engine, claim_ids: Sequence[str]) -> set[str]:
    """Those of `claim_ids` whose review case is still open (waiting for people)."""
    if not claim_ids:
        return set()
    with engine.connect() as conn:
        return set(conn.execute(sa.select(review_cases.c.claim_id).where(
            review_cases.c.claim_id.in_(list(claim_ids)) & (review_cases.c.status == WAITING))).scalars())


# ---------------------------------------------------------------------------------------------
# the human pause: what the payout sensor and job read and write


def actions_since(engine: sa.Engine, after_id: int, limit: int = 10_000) -> list[tuple[int, str]]:
    """(action id, partition) of review actions recorded after `after_id`, oldest first."""
    with engine.connect() as conn:
        return [(int(r.id), r.partition) for r in conn.execute(
            sa.select(review_actions.c.id, review_actions.c.partition).where(review_actions.c.id > after_id)
            .order_by(review_actions.c.id).limit(limit))]


def approved_partitions(engine: sa.Engine) -> dict[str, int]:
    """Partitions holding approved, not yet paid cases → the id of the latest approval among them."""
    q = (sa.select(review_cases.c.partition, sa.func.max(review_actions.c.id))
         .select_from(review_cases.join(review_actions, review_actions.c.claim_id == review_cases.c.claim_id))
         .where((review_cases.c.status == APPROVED) & (review_actions.c.outcome == APPROVED))
         .group_by(review_cases.c.partition))
    with engine.connect() as conn:
        return {p: int(i) for p, i in conn.execute(q)}


def approved_cases(engine: sa.Engine, partition: str) -> list[dict[str, Any]]:
    """The partition's approved, unpaid cases: claim_id, amount, currency and their approvals (user, role)."""
    with engine.connect() as conn:
        cases = [dict(r._mapping) for r in conn.execute(
            sa.select(review_cases.c.claim_id, review_cases.c.amount, review_cases.c.currency)
            .where((review_cases.c.partition == partition) & (review_cases.c.status == APPROVED))
            .order_by(review_cases.c.claim_id))]
        ids = [c["claim_id"] for c in cases]
        approvals: dict[str, list[tuple[str, str]]] = {}
        for i in range(0, len(ids), 500):
            for r in conn.execute(sa.select(review_actions.c.claim_id, review_actions.c.actor, review_actions.c.role)
                                  .where(review_actions.c.claim_id.in_(ids[i:i + 500])
                                         & review_actions.c.action.in_(("approve", "second_approve")))
                                  .order_by(review_actions.c.id)):
                approvals.setdefault(r.claim_id, []).append((r.actor, r.role))
    for c in cases:
        c["approvals"] = approvals.get(c["claim_id"], [])
    return cases


def close_approved(engine: sa.Engine, claim_ids: Iterable[str], status: str = PAID) -> int:
    """Move approved cases to `paid` (or `payout_refused`); returns how many moved."""
    if status not in (PAID, PAYOUT_REFUSED):
        raise ValueError(f"status must be {PAID} or {PAYOUT_REFUSED}")
    ids = list(claim_ids)
    n = 0
    with engine.begin() as conn:
        for i in range(0, len(ids), 500):
            n += conn.execute(review_cases.update().where(
                review_cases.c.claim_id.in_(ids[i:i + 500]) & (review_cases.c.status == APPROVED))
                .values(status=status)).rowcount
    return n


def waiting_counts(engine: sa.Engine, partitions: Iterable[str]) -> dict[str, dict[str, int]]:
    """Per partition: cases still waiting for people (`waiting`), by stage, and approved but unpaid."""
    parts = sorted(set(partitions))
    out = {p: {"waiting": 0, "new": 0, "escalated": 0, "awaiting_second": 0, "approved_unpaid": 0} for p in parts}
    if not parts:
        return out
    rc, st = review_cases, review_case_state
    q = (sa.select(rc.c.partition, rc.c.status, sa.func.coalesce(st.c.stage, "new"), sa.func.count())
         .select_from(rc.outerjoin(st, st.c.claim_id == rc.c.claim_id))
         .where(rc.c.partition.in_(parts) & rc.c.status.in_((WAITING, APPROVED)))
         .group_by(rc.c.partition, rc.c.status, sa.func.coalesce(st.c.stage, "new")))
    with engine.connect() as conn:
        for p, status, stage, n in conn.execute(q):
            if status == APPROVED:
                out[p]["approved_unpaid"] += int(n)
            else:
                out[p]["waiting"] += int(n)
                out[p][stage if stage in out[p] else "new"] += int(n)
    return out


# ---------------------------------------------------------------------------------------------
# metrics


@dataclass(frozen=True)
class ReviewMetrics:
    """The review metrics at `now` (hours and seconds as floats; None where there is nothing to average)."""

    now: str
    queue_size: int
    by_stage: dict[str, int]
    oldest_age_hours: float | None
    mean_age_hours: float | None
    decisions: int
    avg_review_seconds: float | None
    closed: int
    approved: int
    rejected: int
    overrides: int
    override_rate: float | None
    sla_breached_waiting: int
    sla_breached_closed: int

    @property
    def sla_breaches(self) -> int:
        """Waiting cases past due plus cases closed late."""
        return self.sla_breached_waiting + self.sla_breached_closed

    def as_dict(self) -> dict[str, Any]:
        """The metrics as a plain dict (with `sla_breaches`)."""
        d = dict(self.__dict__)
        d["sla_breaches"] = self.sla_breaches
        return d


def review_metrics(engine: sa.Engine, now: datetime | None = None,
                   partitions: Sequence[str] | None = None) -> ReviewMetrics:
    """Queue size and age, average review time, override rate and SLA breaches (optionally for some partitions).

    - queue size / age: cases still waiting for people, age = now - enqueued;
    - average review time: over decision actions (approve, second approval, reject, escalate), from the
      moment the reviewer claimed the case to the decision;
    - override rate: closed decisions (final approve or reject) against the model's leaning at decision
      time, over all closed decisions;
    - SLA breaches: waiting cases past their due time, plus cases closed after it.
    """
    now = now or utcnow()
    rc = review_cases
    where_c = rc.c.partition.in_(list(partitions)) if partitions is not None else sa.true()
    where_a = review_actions.c.partition.in_(list(partitions)) if partitions is not None else sa.true()
    with engine.connect() as conn:
        waiting = conn.execute(sa.select(rc.c.claim_id, rc.c.enqueued_at, rc.c.sla_due_at, review_case_state.c.stage)
                               .select_from(rc.outerjoin(review_case_state,
                                                         review_case_state.c.claim_id == rc.c.claim_id))
                               .where(where_c & (rc.c.status == WAITING))).all()
        acts = conn.execute(sa.select(review_actions.c.claim_id, review_actions.c.action, review_actions.c.outcome,
                                      review_actions.c.model_leaning, review_actions.c.review_seconds,
                                      review_actions.c.at, rc.c.sla_due_at)
                            .select_from(review_actions.join(rc, rc.c.claim_id == review_actions.c.claim_id))
                            .where(where_a & review_actions.c.action.in_(DECISION_ACTIONS))
                            .order_by(review_actions.c.id)).all()
    ages = [(now - parse_ts(w.enqueued_at)).total_seconds() / 3600 for w in waiting]
    by_stage = {s: 0 for s in STAGES if s != "closed"}
    for w in waiting:
        by_stage[w.stage or "new"] = by_stage.get(w.stage or "new", 0) + 1
    times = [a.review_seconds for a in acts if a.review_seconds is not None]
    final = [a for a in acts if a.outcome in (APPROVED, REJECTED)]
    overrides, rate = override_rate([a.outcome == APPROVED for a in final],
                                    [a.model_leaning == "approve" for a in final])
    return ReviewMetrics(
        now=ts(now),
        queue_size=len(waiting),
        by_stage=by_stage,
        oldest_age_hours=max(ages) if ages else None,
        mean_age_hours=sum(ages) / len(ages) if ages else None,
        decisions=len(acts),
        avg_review_seconds=sum(times) / len(times) if times else None,
        closed=len(final),
        approved=sum(1 for a in final if a.outcome == APPROVED),
        rejected=sum(1 for a in final if a.outcome == REJECTED),
        overrides=overrides,
        override_rate=rate,
        sla_breached_waiting=sum(1 for w in waiting if now > parse_ts(w.sla_due_at)),
        sla_breached_closed=sum(1 for a in final if parse_ts(a.at) > parse_ts(a.sla_due_at)),
    )
