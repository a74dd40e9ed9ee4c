"""Reviewer accounts: the `review_users` table, argon2 password hashing in a bounded pool, who provisioned whom.

Passwords are stored only as argon2 hashes. Hashing costs ~64 MiB and tens of milliseconds each, so every
hash and verify runs inside a bounded pool (`HASH_POOL`): a burst of sign-ins queues (and is refused with
`Busy` past a wait) instead of growing memory without limit.

Every account records who provisioned it (`created_by`) and, for roles that need a second administrator
(the rbac policy's `needs_second_admin`), who confirmed it (`confirmed_by`); until confirmed such an
account is `pending` and cannot sign in. Separation of duties (governance/policies/four_eyes.yaml) reads both.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from aios.kernel.db import metadata
from aios.kernel.errors import Busy, Conflict, InvalidInput, NotAllowed

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
MIN_PASSWORD = 8
HASH_SLOTS = 2  # one per core: argon2 is CPU- and memory-bound, more in parallel only queues in the kernel
HASH_WAIT_S = 10.0

review_users = sa.Table(
    "review_users", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(40), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("last_login_at", sa.String(40), nullable=True),
    sa.Column("pending", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("confirmed_by", sa.String(64), nullable=True),
)


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(timezone.utc)


def ts(t: datetime) -> str:
    """A datetime as the stores' ISO UTC string."""
    return t.astimezone(timezone.utc).isoformat()


def parse_ts(s: str | None) -> datetime | None:
    """A stored ISO timestamp as an aware UTC datetime (None stays None)."""
    if not s:
        return None
    t = datetime.fromisoformat(s)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class User:
    """A reviewer account (never carries the password hash out of this module)."""

    name: str
    role: str
    active: bool = True


class HashPool:
    """At most `slots` argon2 computations at once; callers wait up to `wait_s`, then get `Busy`."""

    def __init__(self, slots: int = HASH_SLOTS, wait_s: float = HASH_WAIT_S) -> None:
        self.slots = slots
        self.wait_s = wait_s
        self._sem = threading.BoundedSemaphore(slots)
        self.computations = 0  # how many argon2 computations ran (read by tests and metrics)

    def run(self, fn: Any, *args: Any) -> Any:
        """`fn(*args)` inside a slot of the pool."""
        if not self._sem.acquire(timeout=self.wait_s):
            raise Busy("the sign-in service is busy; try again in a few seconds")
        try:
            self.computations += 1
            return fn(*args)
        finally:
            self._sem.release()


HASH_POOL = HashPool()


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Verifying against this for unknown names keeps sign-in time the same whether or not a name exists.
    return _hasher().hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """The argon2 hash of `password`, computed in the bounded pool."""
    return HASH_POOL.run(_hasher().hash, password)


def validate_new_account(name: str, role: str, password: str, roles: Sequence[str]) -> None:
    """Raise InvalidInput naming what is wrong with a new account's name, role or password."""
    if not NAME_RE.match(name or ""):
        raise InvalidInput("user name: 2-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if role not in roles:
        raise InvalidInput(f"role: must be one of {', '.join(roles)}")
    if len(password or "") < MIN_PASSWORD:
        raise InvalidInput(f"password: at least {MIN_PASSWORD} characters")


def create_user(engine: sa.Engine, name: str, role: str, password: str, roles: Sequence[str],
                created_by: str, now: datetime | None = None, pending: bool = False) -> User:
    """Create an account with an argon2-hashed password, provisioned by `created_by`; a `pending` account
    cannot sign in until another administrator confirms it. InvalidInput if invalid, Conflict if the name exists."""
    validate_new_account(name, role, password, roles)
    hashed = hash_password(password)
    with engine.begin() as conn:
        if conn.execute(sa.select(review_users.c.name).where(review_users.c.name == name)).first():
            raise Conflict(f"user {name!r} already exists")
        conn.execute(review_users.insert().values(
            name=name, role=role, password_hash=hashed, active=True, pending=pending,
            created_at=ts(now or utcnow()), created_by=created_by))
    return User(name, role, not pending)


def confirm_user(engine: sa.Engine, name: str, confirmed_by: str) -> User:
    """Confirm a pending account as the second administrator; NotAllowed for the one who created it."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(review_users).where(review_users.c.name == name)).first()
        if row is None:
            raise InvalidInput(f"no user {name!r}")
        if not row.pending:
            raise Conflict(f"account {name} is not waiting for a confirmation")
        if row.created_by == confirmed_by:
            raise NotAllowed(f"account {name} was created by you: a different administrator must confirm it")
        conn.execute(review_users.update().where(review_users.c.name == name)
                     .values(pending=False, confirmed_by=confirmed_by))
    return User(row.name, row.role, bool(row.active))


def provisioners(engine: sa.Engine, names: Sequence[str]) -> dict[str, list[str]]:
    """name → the accounts that provisioned it (its creator and its confirmer, when there is one)."""
    if not names:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(review_users.c.name, review_users.c.created_by, review_users.c.confirmed_by)
                            .where(review_users.c.name.in_(list(names)))).all()
    return {r.name: [p for p in (r.created_by, r.confirmed_by) if p] for r in rows}


def set_password(engine: sa.Engine, name: str, password: str) -> None:
    """Replace a user's password (hashed); InvalidInput if the user does not exist. The caller ends sessions."""
    if len(password or "") < MIN_PASSWORD:
        raise InvalidInput(f"password: at least {MIN_PASSWORD} characters")
    hashed = hash_password(password)
    with engine.begin() as conn:
        n = conn.execute(review_users.update().where(review_users.c.name == name)
                         .values(password_hash=hashed)).rowcount
    if not n:
        raise InvalidInput(f"no user {name!r}")


def set_active_flag(engine: sa.Engine, name: str, active: bool) -> None:
    """Enable or disable an account (the caller ends its sessions when disabling)."""
    with engine.begin() as conn:
        n = conn.execute(review_users.update().where(review_users.c.name == name).values(active=active)).rowcount
    if not n:
        raise InvalidInput(f"no user {name!r}")


def list_users(engine: sa.Engine) -> list[dict[str, Any]]:
    """Every account: name, role, active, pending, created_at, created_by, confirmed_by, last_login_at (no hashes)."""
    cols = [c for c in review_users.c if c.name != "password_hash"]
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(*cols).order_by(review_users.c.name))]


def account_exists(engine: sa.Engine, name: str) -> bool:
    """Whether an account of this name exists (active or not)."""
    with engine.connect() as conn:
        return conn.execute(sa.select(review_users.c.name).where(review_users.c.name == name)).first() is not None


def verify_password(engine: sa.Engine, name: str, password: str, now: datetime | None = None) -> User | None:
    """The active, confirmed user whose password matches, else None (same cost for unknown names and wrong
    passwords); one argon2 verification in the bounded pool. Records the sign-in time on success."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(review_users).where(review_users.c.name == (name or ""))).first()
    stored = row.password_hash if row is not None else _dummy_hash()

    def check() -> bool:
        try:
            return _hasher().verify(stored, password or "")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    ok = HASH_POOL.run(check)
    if not ok or row is None or not row.active or row.pending:
        return None
    values: dict[str, Any] = {"last_login_at": ts(now or utcnow())}
    if _hasher().check_needs_rehash(stored):
        values["password_hash"] = hash_password(password)
    with engine.begin() as conn:
        conn.execute(review_users.update().where(review_users.c.name == row.name).values(**values))
    return User(row.name, row.role, bool(row.active))
