"""Sign-in to the review UI: throttled per account and per address, audited, one session per browser.

Before any password is checked, the throttle counters of the account (`user:<name>`) and of the
address (`addr:<ip>`) are read; a key in back-off or locked out is refused (`Throttled`) WITHOUT an
argon2 computation, so a flood of wrong passwords costs a database read each, not 64 MiB and tens of
milliseconds. The numbers come from the rbac policy (SIGNIN_*): after `free_failures` failures each
further attempt waits `backoff_seconds * 2^(extra)` (capped at `backoff_max_seconds`); at
`lockout_failures` (per address `address_lockout_failures`) the key is locked for `lockout_seconds`.
The argon2 verification itself runs in the bounded pool of `connectors.stores.accounts`.

Sign-in, sign-out and failures go to the audit ledger with the address (and the user name only when
such an account exists: people type passwords into the name field).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aios.kernel.errors import Throttled
from connectors.stores import accounts, sessions
from connectors.stores.accounts import User, utcnow
from connectors.stores.audit import ledger

UNKNOWN_USER = "<unknown>"


def _keys(name: str, address: str) -> tuple[str, str]:
    return f"user:{name[:100]}", f"addr:{address[:100]}"


def _wait(count: sessions.FailureCount | None, limits: dict[str, float], free: float, lockout_at: float,
          now: datetime) -> float:
    """Seconds this key must still wait (0: may try now)."""
    if count is None or count.last_failure_at is None:
        return 0.0
    if now - count.last_failure_at > timedelta(seconds=limits["reset_seconds"]):
        return 0.0
    if count.locked_until is not None and now < count.locked_until:
        return (count.locked_until - now).total_seconds()
    if count.failures >= lockout_at:  # a lock that has run out: the next failure locks again
        return 0.0
    extra = count.failures - int(free)
    if extra < 0:
        return 0.0
    delay = min(limits["backoff_max_seconds"], limits["backoff_seconds"] * 2 ** extra)
    return max(0.0, (count.last_failure_at + timedelta(seconds=delay) - now).total_seconds())


def _record_failure(engine: Any, key: str, count: sessions.FailureCount | None, limits: dict[str, float],
                    lockout_at: float, now: datetime) -> None:
    fresh = count is None or count.last_failure_at is None or \
        now - count.last_failure_at > timedelta(seconds=limits["reset_seconds"])
    failures = 1 if fresh else count.failures + 1
    locked = now + timedelta(seconds=limits["lockout_seconds"]) if failures >= lockout_at else None
    sessions.store_failure(engine, key, failures, now, locked)


def sign_in(engine: Any, policy: Any, name: str, password: str, address: str,
            previous_token: str | None = None, now: datetime | None = None) -> sessions.Session | None:
    """A new session for a correct name and password, else None; Throttled (no password check at all) while
    the account or the address is in back-off or locked out. A successful sign-in ends the browser's
    previous session (`previous_token`). Every outcome is in the audit ledger."""
    now = now or utcnow()
    limits = policy.signin_limits
    user_key, addr_key = _keys(name, address)
    known = accounts.account_exists(engine, name)
    actor = name if known else UNKNOWN_USER
    # an unknown name has no account counter: it may be a password typed into the name field, never stored
    keys = [user_key, addr_key] if known else [addr_key]
    counts = sessions.failure_counts(engine, keys)
    waits = {addr_key: _wait(counts.get(addr_key), limits, limits["address_free_failures"],
                             limits["address_lockout_failures"], now)}
    if known:
        waits[user_key] = _wait(counts.get(user_key), limits, limits["free_failures"], limits["lockout_failures"], now)
    if max(waits.values()) > 0:
        retry = max(waits.values())
        ledger(engine).append("sign_in_refused", actor, {"address": address, "retry_after_s": round(retry, 1),
                                                         "reason": "throttled"})
        raise Throttled(f"too many failed sign-ins; try again in {int(retry) + 1} s", retry)
    user: User | None = accounts.verify_password(engine, name, password, now)
    if user is None:
        if known:
            _record_failure(engine, user_key, counts.get(user_key), limits, limits["lockout_failures"], now)
        _record_failure(engine, addr_key, counts.get(addr_key), limits, limits["address_lockout_failures"], now)
        ledger(engine).append("sign_in_failed", actor, {"address": address})
        return None
    sessions.clear_failures(engine, user_key)  # the address keeps its count: one good account must not reset it
    if previous_token:
        sessions.end_session(engine, previous_token)
    session = sessions.create_session(engine, user, now)
    ledger(engine).append("sign_in", user.name, {"address": address, "role": user.role})
    return session


def sign_out(engine: Any, session: sessions.Session, token: str | None, address: str) -> None:
    """End the session of `token` and record the sign-out."""
    sessions.end_session(engine, token)
    ledger(engine).append("sign_out", session.user.name, {"address": address})
