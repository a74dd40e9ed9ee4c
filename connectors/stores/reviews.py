"""The review store: reviewer accounts, server-side sessions, case locks, review actions and review metrics.

Plain SQLAlchemy Core on `aios.kernel.db.metadata` (SQLite embedded, PostgreSQL in production); no Dagster and
no web framework, so the review UI, the `aios users` CLI and the payout sensor share it.

The queue is `connectors.stores.decisions.review_cases`. Its `status` is `open` while a case waits for people (whatever
its stage here: `new`, `escalated`, or `awaiting_second` approval), then `approved` (ready to pay),
`paid` (by the review payout job), `rejected` (closed), or `payout_refused` (approved but the payout
policy refuses it). Who may do what and when four eyes are needed come from the policy set
(`governance.policy.PolicySet`), never from this module.

Secrets: passwords are stored only as argon2 hashes and session tokens only as their SHA-256, so
neither a database dump nor a log line can be replayed as a sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Protocol

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from aios.kernel.db import ensure_tables, metadata
from connectors.stores.decisions import decisions_table, review_cases
from models.routes import override_rate

WAITING = "open"
APPROVED, PAID, REJECTED, PAYOUT_REFUSED = "approved", "paid", "rejected", "payout_refused"
REVIEW_PAYOUT_REASON = "review_approved"
CLOSED_STATUSES = (APPROVED, PAID, REJECTED, PAYOUT_REFUSED)
STAGES = ("new", "escalated", "awaiting_second", "closed")
DECISIONS = ("approve", "reject", "escalate")
DECISION_ACTIONS = ("approve", "second_approve", "reject", "escalate")
SESSION_IDLE = timedelta(hours=8)
SESSION_MAX = timedelta(hours=12)
LOCK_TTL = timedelta(minutes=30)
REASON_MAX = 2000
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
MIN_PASSWORD = 8

review_users = sa.Table(
    "review_users", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(40), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("last_login_at", sa.String(40), nullable=True),
)

review_sessions = sa.Table(
    "review_sessions", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_name", sa.String(64), nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("last_seen_at", sa.String(40), nullable=False),
)

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

TABLES = (review_users, review_sessions, review_case_state, review_actions, review_cases, decisions_table)


# ---------------------------------------------------------------------------------------------
# errors: each carries a message fit to show to the person who caused it


class ReviewError(Exception):
    """A review request that cannot be done; `str(exc)` is a message for the user, `status` an HTTP code."""

    status = 400


class CaseNotFound(ReviewError):
    """There is no review case for the claim."""

    status = 404


class NotAllowed(ReviewError):
    """The user's role may not do this (rbac policy)."""

    status = 403


class Conflict(ReviewError):
    """The case is closed, claimed by someone else, or already approved by this person."""

    status = 409


class InvalidInput(ReviewError):
    """A field of the request is missing or malformed; the message names it."""

    status = 400


# ---------------------------------------------------------------------------------------------
# the policy the store consults (governance.policy.PolicySet satisfies it)


class ReviewPolicy(Protocol):
    """What the store asks of the policy set (roles, rbac, four eyes, redaction of free text)."""

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles the rbac policy knows."""

    def is_allowed(self, role: str, action: str) -> bool:
        """Whether `role` may do `action` (rbac policy)."""

    def needs_four_eyes(self, amount: float) -> bool:
        """Whether a claim of this amount needs four eyes (a second approval)."""

    def four_eyes_satisfied(self, amount: float, approvals: Any, senior_approvals: int | None = None) -> bool:
        """Whether the approvals meet the four-eyes rule; `approvals` is a count or (user, role) pairs."""

    def redact_text(self, text: str, names: Iterable[str] = ()) -> str:
        """`text` with personal data and the given `names` masked."""


def leaning_threshold(policy: Any) -> float:
    """The posterior above which the model leans towards fraud: the middle of the human-review band
    of the routing policy (its auto-approve and refer-to-SIU limits), 0.5 if the policy names none."""
    try:
        c = policy.policies["routing"].constants
        return (float(c["AUTO_APPROVE_MAX_P"]) + float(c["REFER_SIU_MIN_P"])) / 2
    except (AttributeError, KeyError, TypeError, ValueError):
        return 0.5


def model_leaning(p_fraud: float, threshold: float) -> str:
    """`reject` when the posterior leans to fraud, else `approve`."""
    return "reject" if float(p_fraud) >= threshold else "approve"


# ---------------------------------------------------------------------------------------------
# time


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(timezone.utc)


def _ts(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat()


def parse_ts(s: str | None) -> datetime | None:
    """A stored ISO timestamp as an aware UTC datetime (None stays None)."""
    if not s:
        return None
    t = datetime.fromisoformat(s)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def ensure_review_tables(engine: sa.Engine) -> None:
    """Create the review tables (and the queue, decision and payout-outbox tables they use) if missing."""
    from connectors.rails.outbox import payout_intents

    ensure_tables(engine, *TABLES, payout_intents)


# ---------------------------------------------------------------------------------------------
# accounts


@dataclass(frozen=True)
class User:
    """A reviewer account (never carries the password hash out of this module)."""

    name: str
    role: str
    active: bool = True


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Verifying against this for unknown names keeps sign-in time the same whether or not a name exists.
    return _hasher().hash(secrets.token_urlsafe(16))


def validate_new_account(name: str, role: str, password: str, roles: Sequence[str]) -> None:
    """Raise InvalidInput naming what is wrong with a new account's name, role or password."""
    if not NAME_RE.match(name or ""):
        raise InvalidInput("user name: 2-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if role not in roles:
        raise InvalidInput(f"role: must be one of {', '.join(roles)}")
    if len(password or "") < MIN_PASSWORD:
        raise InvalidInput(f"password: at least {MIN_PASSWORD} characters")


def create_user(engine: sa.Engine, name: str, role: str, password: str, roles: Sequence[str],
                created_by: str, now: datetime | None = None) -> User:
    """Create an account with an argon2-hashed password; InvalidInput if invalid, Conflict if the name exists."""
    validate_new_account(name, role, password, roles)
    with engine.begin() as conn:
        if conn.execute(sa.select(review_users.c.name).where(review_users.c.name == name)).first():
            raise Conflict(f"user {name!r} already exists")
        conn.execute(review_users.insert().values(
            name=name, role=role, password_hash=_hasher().hash(password), active=True,
            created_at=_ts(now or utcnow()), created_by=created_by))
    return User(name, role)


def set_password(engine: sa.Engine, name: str, password: str) -> None:
    """Replace a user's password (hashed) and end their sessions; InvalidInput if the user does not exist."""
    if len(password or "") < MIN_PASSWORD:
        raise InvalidInput(f"password: at least {MIN_PASSWORD} characters")
    with engine.begin() as conn:
        n = conn.execute(review_users.update().where(review_users.c.name == name)
                         .values(password_hash=_hasher().hash(password))).rowcount
        conn.execute(review_sessions.delete().where(review_sessions.c.user_name == name))
    if not n:
        raise InvalidInput(f"no user {name!r}")


def set_active(engine: sa.Engine, name: str, active: bool) -> None:
    """Enable or disable an account; disabling ends its sessions."""
    with engine.begin() as conn:
        n = conn.execute(review_users.update().where(review_users.c.name == name).values(active=active)).rowcount
        if not active:
            conn.execute(review_sessions.delete().where(review_sessions.c.user_name == name))
    if not n:
        raise InvalidInput(f"no user {name!r}")


def list_users(engine: sa.Engine) -> list[dict[str, Any]]:
    """Every account: name, role, active, created_at, created_by, last_login_at (no hashes)."""
    cols = [c for c in review_users.c if c.name != "password_hash"]
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(*cols).order_by(review_users.c.name))]


def authenticate(engine: sa.Engine, name: str, password: str, now: datetime | None = None) -> User | None:
    """The active user whose password matches, else None (same cost for unknown names and wrong passwords)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(review_users).where(review_users.c.name == (name or ""))).first()
    stored = row.password_hash if row is not None else _dummy_hash()
    try:
        ok = _hasher().verify(stored, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if not ok or row is None or not row.active:
        return None
    values: dict[str, Any] = {"last_login_at": _ts(now or utcnow())}
    if _hasher().check_needs_rehash(stored):
        values["password_hash"] = _hasher().hash(password)
    with engine.begin() as conn:
        conn.execute(review_users.update().where(review_users.c.name == row.name).values(**values))
    return User(row.name, row.role, bool(row.active))


# ---------------------------------------------------------------------------------------------
# sessions


@dataclass(frozen=True)
class Session:
    """A signed-in user's server-side session; `token` is only set right after creation."""

    user: User
    csrf_token: str
    token: str = field(default="", repr=False)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(engine: sa.Engine, user: User, now: datetime | None = None) -> Session:
    """Open a session; the returned token goes into the cookie and is stored only as its hash."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    at = _ts(now or utcnow())
    with engine.begin() as conn:
        conn.execute(review_sessions.insert().values(token_hash=_token_hash(token), user_name=user.name,
                                                     csrf_token=csrf, created_at=at, last_seen_at=at))
    return Session(user=user, csrf_token=csrf, token=token)


def load_session(engine: sa.Engine, token: str | None, now: datetime | None = None) -> Session | None:
    """The live session for a cookie token (None if unknown, expired, or its user is disabled); touches it."""
    if not token or len(token) > 200:
        return None
    now = now or utcnow()
    h = _token_hash(token)
    with engine.connect() as conn:
        row = conn.execute(sa.select(review_sessions, review_users.c.role, review_users.c.active)
                           .join(review_users, review_users.c.name == review_sessions.c.user_name)
                           .where(review_sessions.c.token_hash == h)).first()
    if row is None:
        return None
    created, seen = parse_ts(row.created_at), parse_ts(row.last_seen_at)
    if not row.active or now - created > SESSION_MAX or now - seen > SESSION_IDLE:
        end_session(engine, token)
        return None
    if now - seen > timedelta(minutes=1):
        with engine.begin() as conn:
            conn.execute(review_sessions.update().where(review_sessions.c.token_hash == h)
                         .values(last_seen_at=_ts(now)))
    return Session(user=User(row.user_name, row.role, bool(row.active)), csrf_token=row.csrf_token)


def end_session(engine: sa.Engine, token: str | None) -> None:
    """Delete the session of a cookie token (sign-out)."""
    if token:
        with engine.begin() as conn:
            conn.execute(review_sessions.delete().where(review_sessions.c.token_hash == _token_hash(token)))


def csrf_ok(session: Session, submitted: str | None) -> bool:
    """Whether a submitted form carries this session's CSRF token (constant-time comparison)."""
    return bool(submitted) and hmac.compare_digest(session.csrf_token.encode(), str(submitted).encode())


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
# working a case


@dataclass(frozen=True)
class ActionResult:
    """What a review action did: the action stored (id 0 when nothing was stored), the case's status and
    stage after it, a message for the user and the payload for the audit ledger."""

    action_id: int
    action: str
    status: str
    stage: str
    message: str
    payload: dict[str, Any]


def _require(policy: ReviewPolicy, user: User, action: str, what: str) -> None:
    if not policy.is_allowed(user.role, action):
        raise NotAllowed(f"your role ({user.role}) may not {what}")


def _record(conn: sa.Connection, case: Any, user: User, action: str, reason: str, outcome: str, leaning: str,
            started_at: str | None, now: datetime) -> int:
    seconds = (now - parse_ts(started_at)).total_seconds() if started_at else None
    res = conn.execute(review_actions.insert().values(
        claim_id=case.claim_id, partition=case.partition, actor=user.name, role=user.role, action=action,
        reason=reason, outcome=outcome, model_leaning=leaning, amount=float(case.amount), started_at=started_at,
        at=_ts(now), review_seconds=seconds))
    return int(res.inserted_primary_key[0])


def _open_case(conn: sa.Connection, claim_id: str) -> tuple[Any, Any]:
    case = conn.execute(sa.select(review_cases).where(review_cases.c.claim_id == claim_id)).first()
    if case is None:
        raise CaseNotFound(f"there is no review case for claim {claim_id!r}")
    if case.status != WAITING:
        raise Conflict(f"claim {claim_id} is closed ({case.status}); it can no longer be worked")
    state = conn.execute(sa.select(review_case_state).where(review_case_state.c.claim_id == claim_id)).first()
    return case, state


def _audited(fn):
    """Record each stored review action in the audit ledger (actor: the reviewer), whatever calls it."""
    import functools
    import inspect

    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> ActionResult:
        result = fn(*args, **kwargs)
        if result.action_id:
            from connectors.stores.audit import ledger
            from aios.kernel.tracing import claim_trace_hex

            call = signature.bind(*args, **kwargs).arguments
            label = getattr(call["policy"], "label", None)
            ledger(call["engine"]).append(
                "review_action", call["user"].name, {**result.payload, "action_id": result.action_id},
                claim_id=call["claim_id"], versions={"policy": label} if label else None,
                trace_id=claim_trace_hex(call["claim_id"]))
        return result

    return wrapper


@_audited
def claim_case(engine: sa.Engine, claim_id: str, user: User, policy: ReviewPolicy, threshold: float | None = None,
               now: datetime | None = None) -> ActionResult:
    """Lock an open case for `user` (for LOCK_TTL) so nobody else works it; Conflict if someone else holds it."""
    threshold = leaning_threshold(policy) if threshold is None else threshold
    _require(policy, user, "claim_case", "claim cases")
    now = now or utcnow()
    try:
        return _claim(engine, claim_id, user, policy, threshold, now)
    except sa.exc.IntegrityError as exc:  # two first claims at the same instant: the other one won
        raise Conflict(f"claim {claim_id} was claimed by someone else just now") from exc


def _claim(engine: sa.Engine, claim_id: str, user: User, policy: ReviewPolicy, threshold: float,
           now: datetime) -> ActionResult:
    with engine.begin() as conn:
        case, state = _open_case(conn, claim_id)
        stage = state.stage if state else "new"
        if stage in ("escalated", "awaiting_second") and not policy.is_allowed(user.role, "second_approve"):
            raise NotAllowed(f"claim {claim_id} " + ("was escalated" if stage == "escalated" else
                             "waits for a second approval") + ": only a senior reviewer may take it")
        live = state is not None and _lock_live(state.claimed_by, state.claimed_at, now)
        if live and state.claimed_by != user.name:
            raise Conflict(f"claim {claim_id} is being worked by {state.claimed_by}")
        if live:  # already ours: keep the original start so review time is measured from it
            return ActionResult(0, "claim_case", WAITING, stage, f"you are already working claim {claim_id}",
                                {"action": "claim_case", "partition": case.partition})
        if state is None:
            conn.execute(review_case_state.insert().values(claim_id=claim_id, stage="new", claimed_by=user.name,
                                                           claimed_at=_ts(now), updated_at=_ts(now)))
        else:
            moved = conn.execute(review_case_state.update().where(
                (review_case_state.c.claim_id == claim_id)
                & (sa.func.coalesce(review_case_state.c.claimed_by, "") == (state.claimed_by or ""))
                & (sa.func.coalesce(review_case_state.c.claimed_at, "") == (state.claimed_at or "")))
                .values(claimed_by=user.name, claimed_at=_ts(now), updated_at=_ts(now))).rowcount
            if moved != 1:
                raise Conflict(f"claim {claim_id} was claimed by someone else just now")
        leaning = model_leaning(case.p_fraud, threshold)
        aid = _record(conn, case, user, "claim_case", "", WAITING, leaning, None, now)
    return ActionResult(aid, "claim_case", WAITING, stage, f"you are working claim {claim_id}",
                        {"action": "claim_case", "partition": case.partition})


@_audited
def release_case(engine: sa.Engine, claim_id: str, user: User, policy: ReviewPolicy, threshold: float | None = None,
                 now: datetime | None = None) -> ActionResult:
    """Give a claimed case back to the queue; Conflict if `user` does not hold it."""
    threshold = leaning_threshold(policy) if threshold is None else threshold
    _require(policy, user, "claim_case", "release cases")
    now = now or utcnow()
    with engine.begin() as conn:
        case, state = _open_case(conn, claim_id)
        if state is None or state.claimed_by != user.name or not _lock_live(state.claimed_by, state.claimed_at, now):
            raise Conflict(f"you are not working claim {claim_id}")
        conn.execute(review_case_state.update().where(review_case_state.c.claim_id == claim_id)
                     .values(claimed_by=None, claimed_at=None, updated_at=_ts(now)))
        aid = _record(conn, case, user, "release_case", "", WAITING, model_leaning(case.p_fraud, threshold),
                      None, now)
    return ActionResult(aid, "release_case", WAITING, state.stage, f"claim {claim_id} is back in the queue",
                        {"action": "release_case", "partition": case.partition})


@_audited
def decide(engine: sa.Engine, claim_id: str, user: User, decision: str, reason: str, policy: ReviewPolicy,
           threshold: float | None = None, now: datetime | None = None) -> ActionResult:
    """Approve, reject or escalate a case `user` has claimed, with a reason.

    Approving records an approval; the case becomes `approved` when the policy's four-eyes rule is
    satisfied by the distinct approvers so far, else it waits for a further approval from someone
    else (`awaiting_second`), who needs the `second_approve` permission. Nobody approves a case twice.
    An escalated case can only be decided by a role allowed to `second_approve`. Rejecting closes it.
    """
    threshold = leaning_threshold(policy) if threshold is None else threshold
    if decision not in DECISIONS:
        raise InvalidInput(f"decision: must be one of {', '.join(DECISIONS)}")
    text = (reason or "").strip()
    if not text:
        raise InvalidInput("reason: give a reason for the decision")
    if len(text) > REASON_MAX:
        raise InvalidInput(f"reason: at most {REASON_MAX} characters")
    text = policy.redact_text(text)  # reviewer notes never carry personal data into the stores or the ledger
    now = now or utcnow()
    with engine.begin() as conn:
        case, state = _open_case(conn, claim_id)
        if state is None or state.claimed_by != user.name or not _lock_live(state.claimed_by, state.claimed_at, now):
            holder = state.claimed_by if state is not None and _lock_live(state.claimed_by, state.claimed_at, now) \
                else None
            raise Conflict(f"claim {claim_id} is being worked by {holder}" if holder
                           else f"claim the case before deciding it (claim {claim_id} is not claimed by you)")
        stage = state.stage
        senior = policy.is_allowed(user.role, "second_approve")
        if stage == "escalated" and not senior:
            raise NotAllowed(f"claim {claim_id} was escalated: only a senior reviewer may decide it")
        approvals = [(r.actor, r.role) for r in conn.execute(
            sa.select(review_actions.c.actor, review_actions.c.role).where(
                (review_actions.c.claim_id == claim_id)
                & review_actions.c.action.in_(("approve", "second_approve")))
            .order_by(review_actions.c.id))]
        amount = float(case.amount)
        if decision == "approve":
            if user.name in {u for u, _ in approvals}:
                raise Conflict(f"you already approved claim {claim_id}; a different senior reviewer must give "
                               f"the second approval")
            action = "second_approve" if approvals else "approve"
            _require(policy, user, action, "give the second approval" if approvals else "approve claims")
            done = policy.four_eyes_satisfied(amount, [*approvals, (user.name, user.role)])
            status, new_stage = (APPROVED, "closed") if done else (WAITING, "awaiting_second")
            message = (f"claim {claim_id} approved; it will be paid by the next payout run" if done else
                       f"approval recorded; claim {claim_id} needs a further approval from a different senior "
                       f"reviewer (four eyes above {case.currency} "
                       f"{getattr(policy, 'four_eyes_amount', amount):,.2f})")
        elif decision == "reject":
            action = "reject"
            _require(policy, user, action, "reject claims")
            status, new_stage, message = REJECTED, "closed", f"claim {claim_id} rejected and closed"
        else:
            action = "escalate"
            _require(policy, user, action, "escalate claims")
            status, new_stage, message = WAITING, "escalated", f"claim {claim_id} escalated to a senior reviewer"
        updated = conn.execute(review_cases.update().where(
            (review_cases.c.claim_id == claim_id) & (review_cases.c.status == WAITING)).values(status=status))
        if updated.rowcount != 1:
            raise Conflict(f"claim {claim_id} was closed by someone else just now")
        conn.execute(review_case_state.update().where(review_case_state.c.claim_id == claim_id)
                     .values(stage=new_stage, claimed_by=None, claimed_at=None, updated_at=_ts(now)))
        leaning = model_leaning(case.p_fraud, threshold)
        outcome = status if status != WAITING else new_stage
        aid = _record(conn, case, user, action, text, outcome, leaning, state.claimed_at, now)
        if status == APPROVED:
            _payout_intent(conn, case, amount, [*approvals, (user.name, user.role)], policy)
    payload = {"action": action, "reason": text, "outcome": outcome, "partition": case.partition,
               "amount": amount, "p_fraud": float(case.p_fraud), "model_leaning": leaning, "role": user.role}
    return ActionResult(aid, action, status, new_stage, message, payload)


def _payout_intent(conn: sa.Connection, case: Any, amount: float, approvals: list, policy: Any) -> None:
    """The approval's payout intent, in the approval's own transaction (outbox): both or neither commit.

    Only when the payout policy allows it now; a refused one is closed by the payout job instead.
    """
    from connectors.rails.outbox import Intent, add_intents

    from aios.kernel.settings import get_settings

    may_pay = getattr(policy, "may_pay", None)
    if may_pay is None or not may_pay(amount, "human_review", approvals):
        return
    add_intents(conn, [Intent(case.claim_id, case.partition, amount, str(case.currency), REVIEW_PAYOUT_REASON,
                              get_settings().payout_rail)])


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
        now=_ts(now),
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
