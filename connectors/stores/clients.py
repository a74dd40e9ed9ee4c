"""Service clients of the decision API: hashed API keys with scopes and a rate, and which client owns a claim.

A key is `aios_<client_id>_<secret>`, the secret 32 random bytes (256 bits). Only SHA-256 of the secret
is stored: a key that long cannot be guessed or brute-forced from its hash, so the slow password hashes
(argon2) that protect human passwords buy nothing here and would cost ~50 ms and 64 MiB per request.
Verifying a key is one primary-key read and one constant-time compare.

`api_claim_owners` records the client that first submitted each claim id: only that client may submit
it again, read it, or add documents to it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from aios.kernel.contracts import ID_MAX_LENGTH
from aios.kernel.db import metadata
from aios.kernel.errors import Conflict, InvalidInput, NotFound
from connectors.stores.accounts import ts, utcnow

SCOPES = ("decisions:write", "claims:read", "metrics:read")
KEY_PREFIX = "aios_"
CLIENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
DEFAULT_RATE_PER_MINUTE = 600

api_clients = sa.Table(
    "api_clients", metadata,
    sa.Column("client_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("scopes", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("rate_per_minute", sa.Integer, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("revoked_at", sa.String(40), nullable=True),
)

api_claim_owners = sa.Table(
    "api_claim_owners", metadata,
    sa.Column("claim_id", sa.String(ID_MAX_LENGTH), primary_key=True),
    sa.Column("client_id", sa.String(32), nullable=False, index=True),
    sa.Column("created_at", sa.String(40), nullable=False),
)

TABLES = (api_clients, api_claim_owners)


@dataclass(frozen=True)
class Client:
    """An authenticated service client."""

    client_id: str
    name: str
    scopes: frozenset[str]
    rate_per_minute: int

    @property
    def actor(self) -> str:
        """How the audit ledger names this client."""
        return f"client:{self.client_id}"


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def add_client(engine: sa.Engine, name: str, scopes: Iterable[str], created_by: str,
               rate_per_minute: int = DEFAULT_RATE_PER_MINUTE, now: datetime | None = None) -> tuple[Client, str]:
    """Register a client; returns it and its API key (shown once, never stored). InvalidInput names the bad
    field; Conflict if the name is taken."""
    if not CLIENT_NAME_RE.match(name or ""):
        raise InvalidInput("name: 2-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    wanted = sorted(set(scopes))
    bad = [s for s in wanted if s not in SCOPES]
    if bad or not wanted:
        raise InvalidInput(f"scope: {', '.join(bad) or 'none given'}; must be some of {', '.join(SCOPES)}")
    if not 1 <= int(rate_per_minute) <= 1_000_000:
        raise InvalidInput("rate: requests per minute, 1 to 1000000")
    client_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        if conn.execute(sa.select(api_clients.c.name).where(api_clients.c.name == name)).first():
            raise Conflict(f"client {name!r} already exists")
        conn.execute(api_clients.insert().values(
            client_id=client_id, name=name, scopes=" ".join(wanted), key_hash=_secret_hash(secret),
            rate_per_minute=int(rate_per_minute), active=True, created_at=ts(now or utcnow()), created_by=created_by))
    return Client(client_id, name, frozenset(wanted), int(rate_per_minute)), f"{KEY_PREFIX}{client_id}_{secret}"


def revoke_client(engine: sa.Engine, name_or_id: str, now: datetime | None = None) -> str:
    """Revoke a client's key at once (by name or id); returns its id. NotFound if no such active client."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(api_clients.c.client_id).where(
            ((api_clients.c.name == name_or_id) | (api_clients.c.client_id == name_or_id))
            & api_clients.c.active)).first()
        if row is None:
            raise NotFound(f"no active client {name_or_id!r}")
        conn.execute(api_clients.update().where(api_clients.c.client_id == row.client_id)
                     .values(active=False, revoked_at=ts(now or utcnow())))
    return str(row.client_id)


def list_clients(engine: sa.Engine) -> list[dict[str, Any]]:
    """Every client: id, name, scopes, rate, active, created, revoked (never a hash)."""
    cols = [c for c in api_clients.c if c.name != "key_hash"]
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(*cols).order_by(api_clients.c.name))]


def authenticate_key(engine: sa.Engine, key: str | None) -> Client | None:
    """The active client holding `key`, else None (malformed, unknown, revoked or wrong secret)."""
    if not key or not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    client_id, sep, secret = key[len(KEY_PREFIX):].partition("_")
    if not sep or not client_id or not secret:
        return None
    with engine.connect() as conn:
        row = conn.execute(sa.select(api_clients).where(api_clients.c.client_id == client_id)).first()
    if row is None or not row.active or not hmac.compare_digest(row.key_hash, _secret_hash(secret)):
        return None
    return Client(row.client_id, row.name, frozenset(row.scopes.split()), int(row.rate_per_minute))


def claim_owners(engine: sa.Engine, claim_ids: Sequence[str]) -> dict[str, str]:
    """claim id → the client that first submitted it (claims never submitted through the API are absent)."""
    if not claim_ids:
        return {}
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(api_claim_owners.c.claim_id, api_claim_owners.c.client_id).where(
            api_claim_owners.c.claim_id.in_(list(claim_ids)))).all())


def own_claims(engine: sa.Engine, owners: Mapping[str, str], now: datetime | None = None) -> None:
    """Record each claim's owner (claim id → client id) where it has none yet, in one transaction (an existing
    owner is kept)."""
    if not owners:
        return
    at = ts(now or utcnow())
    ids = list(owners)
    with engine.begin() as conn:
        taken = set(conn.execute(sa.select(api_claim_owners.c.claim_id).where(
            api_claim_owners.c.claim_id.in_(ids))).scalars())
        rows = [{"claim_id": c, "client_id": owners[c], "created_at": at} for c in ids if c not in taken]
        if rows:
            conn.execute(api_claim_owners.insert(), rows)
