"""Server-side sessions of the review UI, their CSRF tokens, and the sign-in throttle's counters.

Session tokens are stored only as their SHA-256, so neither a database dump nor a log line can be
replayed as a sign-in. The throttle table counts failed sign-ins per key (`user:<name>`, `addr:<ip>`);
what the counts mean (back-off, lockout) is the sign-in use case's, from the policy.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from aios.kernel.db import metadata
from connectors.stores.accounts import User, parse_ts, review_users, ts, utcnow

SESSION_IDLE = timedelta(hours=8)
SESSION_MAX = timedelta(hours=12)

review_sessions = sa.Table(
    "review_sessions", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_name", sa.String(64), nullable=False, index=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("last_seen_at", sa.String(40), nullable=False),
)

signin_throttle = sa.Table(
    "signin_throttle", metadata,
    sa.Column("key", sa.String(120), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_failure_at", sa.String(40), nullable=False),
    sa.Column("locked_until", sa.String(40), nullable=True),
)


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
    at = ts(now or utcnow())
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
                         .values(last_seen_at=ts(now)))
    return Session(user=User(row.user_name, row.role, bool(row.active)), csrf_token=row.csrf_token)


def end_session(engine: sa.Engine, token: str | None) -> None:
    """Delete the session of a cookie token (sign-out)."""
    if token:
        with engine.begin() as conn:
            conn.execute(review_sessions.delete().where(review_sessions.c.token_hash == _token_hash(token)))


def end_user_sessions(engine: sa.Engine, name: str) -> int:
    """Delete every session of a user (password changed, account disabled); returns how many ended."""
    with engine.begin() as conn:
        return conn.execute(review_sessions.delete().where(review_sessions.c.user_name == name)).rowcount


def csrf_ok(session: Session, submitted: str | None) -> bool:
    """Whether a submitted form carries this session's CSRF token (constant-time comparison)."""
    return bool(submitted) and hmac.compare_digest(session.csrf_token.encode(), str(submitted).encode())


# ---------------------------------------------------------------------------------------------
# throttle counters


@dataclass(frozen=True)
class FailureCount:
    """Failed sign-ins counted for one key: how many, the latest, and any lock."""

    key: str
    failures: int
    last_failure_at: datetime | None
    locked_until: datetime | None


def failure_counts(engine: sa.Engine, keys: list[str]) -> dict[str, FailureCount]:
    """The counters of the given keys (absent keys have none)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(signin_throttle).where(signin_throttle.c.key.in_(keys))).all()
    return {r.key: FailureCount(r.key, int(r.failures), parse_ts(r.last_failure_at), parse_ts(r.locked_until))
            for r in rows}


def store_failure(engine: sa.Engine, key: str, failures: int, at: datetime, locked_until: datetime | None) -> None:
    """Write one key's counter (insert or replace)."""
    values = {"failures": failures, "last_failure_at": ts(at), "locked_until": ts(locked_until) if locked_until else None}
    with engine.begin() as conn:
        n = conn.execute(signin_throttle.update().where(signin_throttle.c.key == key).values(**values)).rowcount
        if not n:
            try:
                with conn.begin_nested():
                    conn.execute(signin_throttle.insert().values(key=key, **values))
            except sa.exc.IntegrityError:  # a concurrent first failure: update the row it created
                conn.execute(signin_throttle.update().where(signin_throttle.c.key == key).values(**values))


def clear_failures(engine: sa.Engine, key: str) -> None:
    """Forget a key's failures (a successful sign-in, an administrator unlocking an account)."""
    with engine.begin() as conn:
        conn.execute(signin_throttle.delete().where(signin_throttle.c.key == key))
