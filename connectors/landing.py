"""The durable landing store for bus messages: persist, then ack.

`pull_and_land` pulls a bounded batch, lands it in ONE database transaction and
only after the commit acks every pulled message (landed, duplicate and
dead-lettered alike). A crash between commit and ack makes the bus redeliver;
landing is idempotent, so the redelivered messages count as duplicates and nothing
is landed twice or lost.

- Valid claims go to `landed_claims` (unique per claim_id), partitioned by the UTC date
  of `submitted_at`. A redelivery is recognised by its claim: same id, same content.
- Malformed messages go to `dead_letters` with the reason (naming the field) and the
  raw bytes (as text and as base64), unique per (source, message_id, payload hash).
- Every claim id has ONE identity across ingress paths (`claim_identities`: the first
  ingress to deliver a claim id owns it, with the hash of its content). The bus, the
  inbox (`register_claims`) and the API register there; the same content again is a
  counted duplicate, different content under a known id is dead-lettered (bus) or
  quarantined (inbox) with the reason naming the first source.
- Whether a day needs a run is read from here (`undecided_days`): registered claims
  that are neither decided nor quarantined, so no crash between land, ack and run
  request can leave a day undecided.
- The continuous consumer (`aios land`) first persists each pulled batch as ONE row of
  `landing_journal` and acks it (the broker's speed), then lands journal rows behind
  (`land_journal`) and marks each landed only after its landing committed.
- Each landing writes a `landing_batches` row; the batch id is derived from the
  source and the sorted message ids, so a retried batch gets the same id.

Tables are SQLAlchemy Core on `aios.kernel.db.metadata`: the same code runs on SQLite and
PostgreSQL. Inserts are `INSERT .. ON CONFLICT DO NOTHING .. RETURNING` (one
multi-row statement per chunk), so counts stay exact even when two landers race.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import ValidationError

from aios.kernel.db import ensure_tables, insert_ignore, metadata
from aios.kernel.contracts import Claim, claim_content_hash, describe_validation_error
from connectors.bus.base import BusMessage

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from connectors.bus.base import EventBus
    from connectors.inbox import InboxFile

landing_batches = sa.Table(
    "landing_batches",
    metadata,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("messages", sa.Integer, nullable=False),
    sa.Column("landed", sa.Integer, nullable=False),
    sa.Column("duplicates", sa.Integer, nullable=False),
    sa.Column("dead_lettered", sa.Integer, nullable=False),
    sa.Column("partitions", sa.Text, nullable=False, doc="JSON {partition: landed count}"),
)

landed_claims = sa.Table(
    "landed_claims",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(), nullable=False),
    sa.Column("message_id", sa.String(), nullable=False),
    sa.Column("claim_id", sa.String(), nullable=False),
    sa.Column("batch_id", sa.String(64), nullable=False),
    sa.Column("partition", sa.String(10), nullable=False, doc="UTC date of submitted_at, yyyy-mm-dd"),
    sa.Column("payload", sa.Text, nullable=False, doc="the message as received: JSON text of a valid Claim"),
    sa.Column("landed_at", sa.DateTime(timezone=True), nullable=False),
    # not unique per (source, message_id): the Pub/Sub emulator numbers messages from 1 again after a
    # restart, so a new claim can arrive under a landed message id (found by the chaos tests)
    sa.Index("ix_landed_claims_source_message", "source", "message_id"),
    sa.UniqueConstraint("claim_id", name="uq_landed_claims_claim_id"),
    sa.Index("ix_landed_claims_batch_id", "batch_id"),
    sa.Index("ix_landed_claims_partition", "partition"),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(), nullable=False),
    sa.Column("message_id", sa.String(), nullable=False),
    sa.Column("batch_id", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw_text", sa.Text, nullable=False, doc='payload decoded as UTF-8 with errors="replace"'),
    sa.Column("raw_b64", sa.Text, nullable=False, doc="the exact payload bytes, base64"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("raw_sha256", sa.String(64), nullable=False, doc="sha256 of the exact payload bytes"),
    # a redelivery is the same id with the same bytes; a reused id (emulator restart) with other bytes is new
    sa.UniqueConstraint("source", "message_id", "raw_sha256", name="uq_dead_letters_source_message_raw"),
)

claim_identities = sa.Table(
    "claim_identities",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True, doc="registration order"),
    sa.Column("claim_id", sa.String(), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False, doc="claim_content_hash of the first delivery"),
    sa.Column("source", sa.String(), nullable=False, doc="pubsub:<project>/<sub>, nats:<stream>/<durable>, "
                                                        "inbox:<file>, api"),
    sa.Column("partition", sa.String(40), nullable=False, doc="the day it is decided in"),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("claim_id", name="uq_claim_identities_claim_id"),
    sa.Index("ix_claim_identities_partition", "partition"),
)

landing_journal = sa.Table(
    "landing_journal",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(), nullable=False),
    sa.Column("messages", sa.Integer, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False, doc="the batch as pulled: framed (message id, payload) pairs"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("landed_at", sa.DateTime(timezone=True), nullable=True, doc="NULL until landed; purged later"),
    sa.Index("ix_landing_journal_pending", "source", "landed_at", "id"),
)
JOURNAL_KEEP = timedelta(hours=1)  # landed journal rows are kept this long (replay, measurement), then purged
LANDING_TABLES = (landing_batches, landed_claims, dead_letters, claim_identities, landing_journal)
CLAIM_COLUMNS: tuple[str, ...] = tuple(Claim.model_fields)
MAX_ID_CHARS = 512  # longer ids are refused (dead-lettered): unique btree entries have a size cap


@dataclass(frozen=True)
class LandingResult:
    """What one landing did. `partitions` maps yyyy-mm-dd to the claims newly landed in it."""

    batch_id: str
    landed: int
    duplicates: int
    dead_lettered: int
    partitions: dict[str, int] = field(default_factory=dict)
    messages: int = 0

    @property
    def empty(self) -> bool:
        """True when the landing had no messages."""
        return self.messages == 0


def ensure_landing_tables(engine: sa.Engine) -> None:
    """Create the landing tables if missing (once per engine; migrations own them in production)."""
    ensure_tables(engine, *LANDING_TABLES)


def batch_id_for(source: str, message_ids: Sequence[str]) -> str:
    """Deterministic batch id: sha256 over the source and the sorted, distinct message ids."""
    h = hashlib.sha256(source.encode())
    for mid in sorted(set(message_ids)):
        h.update(b"\x00")
        h.update(mid.encode())
    return h.hexdigest()[:24]


def parse_claim(data: bytes) -> tuple[Claim | None, str | None]:
    """(claim, None) for a valid claim, (None, reason) otherwise."""
    try:
        claim = Claim.model_validate_json(data)  # fast path: one pass in pydantic-core
    except ValidationError:
        # slow path, only for the malformed: a precise reason
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            return None, f"not JSON: {exc}"
        if not isinstance(obj, dict):
            return None, f"not a JSON object: got {type(obj).__name__}"
        try:
            claim = Claim.model_validate(obj)
        except ValidationError as exc:
            return None, "; ".join(describe_validation_error(exc))
    if len(claim.claim_id) > MAX_ID_CHARS:
        return None, f"claim_id: longer than {MAX_ID_CHARS} characters"
    if "\x00" in claim.claim_id:
        return None, "claim_id: contains a NUL character"
    return claim, None


def claim_partition(claim: Claim) -> str:
    """The claim's daily partition: the UTC date of submitted_at (naive times are taken as UTC)."""
    ts = claim.submitted_at
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    return ts.date().isoformat()


def _insert_returning(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]],
                      returning: Sequence[sa.Column]) -> list[tuple]:
    """INSERT .. ON CONFLICT DO NOTHING RETURNING for many rows; returns the rows actually inserted.

    On sqlite3 and psycopg2 the rows go straight to the driver as multi-row VALUES (a third
    of the cost of SQLAlchemy's per-row parameter processing, which matters at thousands of
    rows per tick), inside the same transaction. Other drivers take SQLAlchemy's
    "insertmanyvalues" executemany path.
    """
    if not rows:
        return []
    driver = conn.dialect.driver
    if driver in ("pysqlite", "psycopg2"):
        return _insert_returning_driver(conn, table, rows, returning, driver)
    stmt = insert_ignore(conn, table).returning(*returning)
    return [tuple(r) for r in conn.execute(stmt, rows).all()]


def _sqlite_value(v: Any) -> Any:
    # the format SQLAlchemy's SQLite DateTime type stores and parses
    return v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v


def _insert_returning_driver(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]],
                             returning: Sequence[sa.Column], driver: str) -> list[tuple]:
    prep = conn.dialect.identifier_preparer
    cols = list(rows[0])
    head = f"INSERT INTO {prep.format_table(table)} ({', '.join(prep.quote(c) for c in cols)}) VALUES "
    tail = f" ON CONFLICT DO NOTHING RETURNING {', '.join(prep.quote(c.name) for c in returning)}"
    cursor = conn.connection.driver_connection.cursor()
    out: list[tuple] = []
    try:
        if driver == "psycopg2":
            from psycopg2.extras import execute_values

            out = [tuple(r) for r in execute_values(cursor, head + "%s" + tail, [tuple(r[c] for c in cols) for r in rows],
                                                    page_size=1000, fetch=True)]
        else:
            per = max(1, 30_000 // len(cols))  # SQLite >= 3.32 allows 32,766 bound parameters
            one = "(" + ",".join("?" * len(cols)) + ")"
            for i in range(0, len(rows), per):
                chunk = rows[i : i + per]
                flat = [_sqlite_value(r[c]) for r in chunk for c in cols]
                out.extend(cursor.execute(head + ",".join([one] * len(chunk)) + tail, flat).fetchall())
    finally:
        cursor.close()
    return out


def land_batch(engine: sa.Engine, source: str, messages: Sequence[BusMessage]) -> LandingResult:
    """Land a batch of bus messages in one transaction; idempotent (see module doc)."""
    if not messages:
        return LandingResult(batch_id="", landed=0, duplicates=0, dead_lettered=0, partitions={}, messages=0)
    ensure_landing_tables(engine)
    batch_id = batch_id_for(source, [_message_id(m) for m in messages])
    now = datetime.now(UTC)

    duplicates = 0
    seen_mids: set[str] = set()
    seen_claims: set[str] = set()
    claim_rows: list[dict[str, Any]] = []
    dead_rows: list[dict[str, Any]] = []
    for m in messages:
        mid = _message_id(m)
        if mid in seen_mids:
            duplicates += 1
            continue
        seen_mids.add(mid)
        claim, reason = parse_claim(m.data)
        if claim is None:
            dead_rows.append(_dead_row(source, mid, batch_id, reason or "invalid", m.data, now))
            continue
        if claim.claim_id in seen_claims:
            duplicates += 1
            continue
        seen_claims.add(claim.claim_id)
        claim_rows.append({
            "source": source, "message_id": mid, "claim_id": claim.claim_id, "batch_id": batch_id,
            "partition": claim_partition(claim), "payload": _payload_text(m.data, claim), "landed_at": now,
            "_hash": claim_content_hash(claim), "_data": m.data,
        })

    try:
        with engine.begin() as conn:
            inserted, dead_inserted, n_conflicts = _write_rows(conn, claim_rows, dead_rows)
            n_dup = duplicates + (len(claim_rows) - len(inserted) - n_conflicts) + \
                (len(dead_rows) + n_conflicts - len(dead_inserted))
            partitions = _count_partitions(inserted)
            _write_batch_row(conn, batch_id, source, now, len(messages), len(inserted), n_dup,
                             len(dead_inserted), partitions)
    except _data_errors(engine):
        # One row the database refuses (bad encoding, oversize value...) must not block the
        # stream forever: retry row by row, dead-lettering exactly the rows it refuses.
        with engine.begin() as conn:
            inserted, dead_inserted = _write_rows_one_by_one(conn, claim_rows, dead_rows, messages)
            n_dup = duplicates + (len(claim_rows) + len(dead_rows) - len(inserted) - len(dead_inserted))
            partitions = _count_partitions(inserted)
            _write_batch_row(conn, batch_id, source, now, len(messages), len(inserted), n_dup,
                             len(dead_inserted), partitions)
    return LandingResult(batch_id=batch_id, landed=len(inserted), duplicates=n_dup,
                         dead_lettered=len(dead_inserted), partitions=partitions, messages=len(messages))


def _data_errors(engine_or_conn: sa.Engine | sa.Connection) -> tuple[type[BaseException], ...]:
    """The "this value is bad" errors: SQLAlchemy's wrapper and the driver's own (raw cursor path)."""
    dbapi = engine_or_conn.dialect.dbapi
    driver_error = getattr(dbapi, "DataError", None)
    return (sa.exc.DataError, driver_error) if driver_error else (sa.exc.DataError,)


def _write_rows(conn: sa.Connection, claim_rows: list[dict[str, Any]],
                dead_rows: list[dict[str, Any]]) -> tuple[list[tuple], list[tuple], int]:
    """Register, then land, the claims; dead-letter the malformed and the conflicting.

    Returns (landed rows, dead letters inserted, claims moved to dead letters as conflicts).
    A claim id already owned with the same content is a duplicate (skipped, not returned);
    with different content it becomes a dead letter naming the owner.
    """
    owned, new_ids, conflicts = _claim_ownership(conn, claim_rows)
    mine = [r for r in claim_rows if r["claim_id"] in owned]
    inserted = _insert_returning(conn, landed_claims, [_landed_row(r) for r in mine],
                                 [landed_claims.c.message_id, landed_claims.c.partition, landed_claims.c.claim_id])
    if len(inserted) < len(mine):
        # landed_claims holds the claim id without an identity (a row older than the identities):
        # the claim must not stay registered without being landed here, or its day waits forever
        landed_ids = {cid for _m, _p, cid in inserted}
        stray = [r["claim_id"] for r in mine if r["claim_id"] not in landed_ids and r["claim_id"] in new_ids]
        if stray:
            conn.execute(claim_identities.delete().where(claim_identities.c.claim_id.in_(stray)))
            conflicts += [_dead_row(r["source"], r["message_id"], r["batch_id"],
                                    f"claim_id: {r['claim_id']!r} is already in landed_claims without an "
                                    f"identity (landed before migration 0006); kept here", r["_data"], r["landed_at"])
                          for r in mine if r["claim_id"] in set(stray)]
    dead_inserted = _insert_returning(conn, dead_letters, dead_rows + conflicts, [dead_letters.c.message_id])
    return [(m, p) for m, p, _c in inserted], dead_inserted, len(conflicts)


def _landed_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def _claim_ownership(conn: sa.Connection, claim_rows: list[dict[str, Any]]
                     ) -> tuple[set[str], set[str], list[dict[str, Any]]]:
    """Register the claims (first delivery wins): ids this source owns, ids registered just now, and dead-letter rows for
    claims whose id is owned with different content. Re-deliveries of what this source owns count as owned
    (landed_claims then skips them by message id)."""
    if not claim_rows:
        return set(), set(), []
    now = claim_rows[0]["landed_at"]
    new = _insert_returning(conn, claim_identities, [
        {"claim_id": r["claim_id"], "content_hash": r["_hash"], "source": r["source"], "partition": r["partition"],
         "registered_at": now} for r in claim_rows], [claim_identities.c.claim_id])
    new_ids = {c for (c,) in new}
    owned = set(new_ids)
    rest = [r for r in claim_rows if r["claim_id"] not in owned]
    conflicts: list[dict[str, Any]] = []
    if rest:
        known = lookup_identities(conn, [r["claim_id"] for r in rest])
        for r in rest:
            source, content_hash = known.get(r["claim_id"], (None, None))
            if content_hash is None:
                continue  # vanished in between (cannot happen inside one transaction); counted a duplicate
            if content_hash != r["_hash"]:
                conflicts.append(_dead_row(r["source"], r["message_id"], r["batch_id"],
                                           conflict_reason(r["claim_id"], source), r["_data"], r["landed_at"]))
            elif source == r["source"]:
                owned.add(r["claim_id"])
    return owned, new_ids, conflicts


def conflict_reason(claim_id: str, owner: str | None) -> str:
    """The reason given for a claim id delivered again with content that differs from its first delivery."""
    return (f"claim_id: {claim_id!r} was already received from {owner} with different content; "
            f"a claim id identifies one claim across inbox, bus and API")


def lookup_identities(conn: sa.Connection, claim_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """{claim_id: (owning source, content hash)} for the registered ids among `claim_ids`."""
    out: dict[str, tuple[str, str]] = {}
    ids = list(dict.fromkeys(claim_ids))
    t = claim_identities
    for i in range(0, len(ids), 5000):
        for cid, src, h in conn.execute(sa.select(t.c.claim_id, t.c.source, t.c.content_hash).where(
                t.c.claim_id.in_(ids[i:i + 5000]))):
            out[cid] = (src, h)
    return out


def _write_rows_one_by_one(conn: sa.Connection, claim_rows: list[dict[str, Any]], dead_rows: list[dict[str, Any]],
                           messages: Sequence[BusMessage]) -> tuple[list[tuple], list[tuple]]:
    by_mid = {_message_id(m): m for m in messages}
    dead_rows = list(dead_rows)  # a refused claim moves from claim_rows to dead_rows: counted once
    inserted: list[tuple] = []
    dead_inserted: list[tuple] = []
    for row in claim_rows:
        try:
            with conn.begin_nested():
                ins, _dead, _n = _write_rows(conn, [row], [])
                inserted.extend(ins)
                dead_inserted.extend(_dead)
        except _data_errors(conn) as exc:
            m = by_mid[row["message_id"]]
            dead_rows.append(_dead_row(row["source"], row["message_id"], row["batch_id"],
                                       f"database refused the claim: {str(getattr(exc, 'orig', exc)).strip()[:500]}",
                                       m.data, row["landed_at"]))
    for row in dead_rows:
        with conn.begin_nested():
            dead_inserted.extend(_insert_returning(conn, dead_letters, [row], [dead_letters.c.message_id]))
    return inserted, dead_inserted


def _count_partitions(inserted: Sequence[tuple]) -> dict[str, int]:
    return dict(sorted(Counter(partition for _mid, partition in inserted).items()))


def _payload_text(data: bytes, claim: Claim) -> str:
    """The message as received (UTF-8 JSON, extra fields kept); re-serialized only if not UTF-8."""
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError:  # e.g. UTF-16 JSON that json.loads accepted
        return claim.model_dump_json()


def _write_batch_row(conn: sa.Connection, batch_id: str, source: str, now: datetime, n_messages: int, landed: int,
                     duplicates: int, dead_lettered: int, partitions: dict[str, int]) -> None:
    # A retried batch keeps the row of its first landing (which is what it landed).
    conn.execute(insert_ignore(conn, landing_batches).values(
        batch_id=batch_id, source=source, created_at=now, messages=n_messages, landed=landed,
        duplicates=duplicates, dead_lettered=dead_lettered, partitions=json.dumps(partitions),
    ))


def _message_id(m: BusMessage) -> str:
    """The message id as stored: ids longer than MAX_ID_CHARS are replaced by their sha256."""
    mid = m.message_id
    if len(mid) > MAX_ID_CHARS:
        return "sha256:" + hashlib.sha256(mid.encode()).hexdigest()
    return mid


def _dead_row(source: str, message_id: str, batch_id: str, reason: str, data: bytes, now: datetime) -> dict[str, Any]:
    raw = bytes(data)
    return {
        "source": source, "message_id": message_id, "batch_id": batch_id, "reason": reason,
        # PostgreSQL text cannot hold NUL; the exact bytes are in raw_b64.
        "raw_text": raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
        "raw_b64": base64.b64encode(raw).decode("ascii"), "created_at": now,
        "raw_sha256": hashlib.sha256(raw).hexdigest(),
    }


def pull_and_land(bus: EventBus, engine: sa.Engine, source: str | None = None, max_messages: int = 1000,
                  timeout_s: float = 1.0) -> LandingResult:
    """One ingest tick: pull (bounded), land (commit), THEN ack everything pulled.

    `source` defaults to `bus.source`. If landing fails nothing is acked and the bus
    redelivers later; if acking fails after the commit, redelivery lands nothing new.
    """
    src = source or bus.source
    messages = bus.pull(max_messages, timeout_s)
    if not messages:
        return LandingResult(batch_id="", landed=0, duplicates=0, dead_lettered=0, partitions={}, messages=0)
    result = land_batch(engine, src, messages)
    bus.ack(messages)
    return result


# -- readers ------------------------------------------------------------------------------
def _claims_frame(rows: Sequence[sa.Row], with_meta: bool) -> pd.DataFrame:
    import pandas as pd

    records = []
    for r in rows:
        rec = Claim.model_validate_json(r.payload).model_dump()
        if with_meta:
            rec.update(message_id=r.message_id, source=r.source, batch_id=r.batch_id,
                       partition=r.partition, landed_at=r.landed_at)
        records.append(rec)
    cols = list(CLAIM_COLUMNS) + (["message_id", "source", "batch_id", "partition", "landed_at"] if with_meta else [])
    return pd.DataFrame.from_records(records, columns=cols)


def _select_claims(engine: sa.Engine, where: Any, with_meta: bool) -> pd.DataFrame:
    ensure_landing_tables(engine)
    t = landed_claims
    q = sa.select(t.c.payload, t.c.message_id, t.c.source, t.c.batch_id, t.c.partition,
                  t.c.landed_at).where(where).order_by(t.c.id)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    return _claims_frame(rows, with_meta)


def read_batch(engine: sa.Engine, batch_id: str, with_meta: bool = False) -> pd.DataFrame:
    """The claims first landed by batch `batch_id` (columns = Claim fields, plus metadata if asked)."""
    return _select_claims(engine, landed_claims.c.batch_id == batch_id, with_meta)


def read_partition(engine: sa.Engine, partition: str, with_meta: bool = False) -> pd.DataFrame:
    """The landed claims submitted on the UTC date `partition` (yyyy-mm-dd)."""
    return _select_claims(engine, landed_claims.c.partition == partition, with_meta)


def dead_letter_rows(engine: sa.Engine, source: str | None = None) -> pd.DataFrame:
    """All dead letters (optionally of one source), oldest first."""
    import pandas as pd

    ensure_landing_tables(engine)
    q = sa.select(dead_letters).order_by(dead_letters.c.id)
    if source is not None:
        q = q.where(dead_letters.c.source == source)
    with engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in dead_letters.columns])


def landed_count(engine: sa.Engine, source: str | None = None) -> int:
    """How many claims are landed (optionally from one source)."""
    ensure_landing_tables(engine)
    q = sa.select(sa.func.count()).select_from(landed_claims)
    if source is not None:
        q = q.where(landed_claims.c.source == source)
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def batch_rows(engine: sa.Engine) -> pd.DataFrame:
    """The landing_batches log, oldest first."""
    import pandas as pd

    ensure_landing_tables(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(landing_batches).order_by(landing_batches.c.created_at)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in landing_batches.columns])


# -- one identity across ingress paths ----------------------------------------------------------
@dataclass(frozen=True)
class Registration:
    """What registering claims found: ids now owned by the caller's source, same-content duplicates
    owned by another source, and {claim_id: reason} for ids owned with different content."""

    owned: set[str]
    duplicates: set[str]
    conflicts: dict[str, str]


def register_claims(engine: sa.Engine, source: str, claims: Sequence[tuple[Claim, str]]) -> Registration:
    """Register (claim, partition) pairs under `source` (first delivery wins; idempotent for the same source).

    Used by the inbox and the API; the bus registers inside `land_batch`'s transaction.
    """
    ensure_landing_tables(engine)
    if not claims:
        return Registration(set(), set(), {})
    now = datetime.now(UTC)
    hashes: dict[str, str] = {}
    rows = []
    for claim, partition in claims:
        if claim.claim_id in hashes:
            continue  # the first row of a repeated id speaks for it (validation flags the repeat)
        hashes[claim.claim_id] = claim_content_hash(claim)
        rows.append({"claim_id": claim.claim_id, "content_hash": hashes[claim.claim_id], "source": source,
                     "partition": partition, "registered_at": now})
    with engine.begin() as conn:
        _insert_returning(conn, claim_identities, rows, [claim_identities.c.claim_id])
        known = lookup_identities(conn, list(hashes))
    owned, dups, conflicts = set(), set(), {}
    for cid, h in hashes.items():
        owner, owner_hash = known[cid]
        if owner == source:
            owned.add(cid)
        elif owner_hash == h:
            dups.add(cid)
        else:
            conflicts[cid] = conflict_reason(cid, owner)
    return Registration(owned, dups, conflicts)


def register_file(engine: sa.Engine, f: InboxFile) -> None:
    """Register the claims of an inbox file under `inbox:<file name>` for its day (rows that are no claims are
    left to validation; an unreadable file is left to the run, which rejects it with its reason)."""
    from connectors.inbox import UnreadableFile, read_claims_file

    try:
        frame = read_claims_file(f.path)
    except (UnreadableFile, OSError):
        return
    dedupe_across_ingress(engine, frame, str(f.partition))


def dedupe_across_ingress(engine: sa.Engine, raw: pd.DataFrame, partition: str) -> tuple[pd.DataFrame, int]:
    """Register the day's inbox rows (column `_source` = file name) and apply one identity per claim id.

    Rows another ingress delivered first with the same content are dropped (returned as a count);
    rows whose id is owned with different content get a `_reject` reason (validation quarantines
    them). Rows that are not valid claims are left for validation to quarantine.
    """
    if raw.empty or "claim_id" not in raw.columns:
        return raw, 0
    records = raw.to_dict("records")
    by_source: dict[str, list[tuple[int, Claim]]] = {}
    for i, rec in enumerate(records):
        claim = _as_claim(rec)
        if claim is not None:
            by_source.setdefault(f"inbox:{rec.get('_source')}", []).append((i, claim))
    drop: set[int] = set()
    reject: dict[int, str] = {}
    for source, items in by_source.items():
        reg = register_claims(engine, source, [(c, partition) for _i, c in items])
        for i, c in items:
            if c.claim_id in reg.duplicates:
                drop.add(i)
            elif c.claim_id in reg.conflicts:
                reject[i] = reg.conflicts[c.claim_id]
    if not drop and not reject:
        return raw, 0
    out = raw.copy()
    if reject:
        out["_reject"] = [reject.get(i) for i in range(len(out))]
    keep = [i for i in range(len(out)) if i not in drop]
    out = out.iloc[keep].reset_index(drop=True)
    return out, len(drop)


def _as_claim(record: dict[str, Any]) -> Claim | None:
    """The row as a Claim when it is one (blank and NaN values count as absent), else None."""
    clean = {k: v for k, v in record.items() if not str(k).startswith("_") and v is not None
             and not (isinstance(v, float) and v != v) and not (isinstance(v, str) and not v.strip())}
    try:
        return Claim.model_validate(clean)
    except (ValidationError, ValueError, TypeError):
        return None


# -- durable state for run requests --------------------------------------------------------------
@dataclass(frozen=True)
class UndecidedDay:
    """A day with registered claims that are neither decided nor quarantined."""

    partition: str
    claims: int
    max_seq: int

    @property
    def run_key(self) -> str:
        """A key derived from the content the run covers: the day, its newest registration, the count."""
        return f"landed:{self.partition}:{self.max_seq}:{self.claims}"


def undecided_days(engine: sa.Engine) -> list[UndecidedDay]:
    """Days whose registered claims are not all decided (decisions) or quarantined (quarantine), oldest first."""
    from connectors.stores.decisions import decisions_table, quarantine_table

    ensure_landing_tables(engine)
    ensure_tables(engine, decisions_table, quarantine_table)
    ci, d, q = claim_identities, decisions_table, quarantine_table
    stmt = (sa.select(ci.c.partition, sa.func.count(), sa.func.max(ci.c.seq))
            .where(~sa.exists().where(d.c.claim_id == ci.c.claim_id))
            .where(~sa.exists().where((q.c.claim_id == ci.c.claim_id) & (q.c.partition == ci.c.partition)))
            .group_by(ci.c.partition).order_by(ci.c.partition))
    with engine.connect() as conn:
        return [UndecidedDay(p, int(n), int(m)) for p, n, m in conn.execute(stmt)]


def max_registered_seq(engine: sa.Engine, partition: str) -> int:
    """The newest registration of the day (0 when none): what a run requested now covers at least."""
    ensure_landing_tables(engine)
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(claim_identities.c.seq), 0)).where(
            claim_identities.c.partition == partition)).scalar_one())


# -- the landing journal: persisted at the broker's speed, landed behind ---------------------------
_FRAME = struct.Struct(">II")


def encode_batch(messages: Sequence[BusMessage]) -> bytes:
    """The messages' ids and payloads as one byte string (length-prefixed frames)."""
    parts = []
    for m in messages:
        mid = m.message_id.encode()
        data = bytes(m.data)
        parts += (_FRAME.pack(len(mid), len(data)), mid, data)
    return b"".join(parts)


def decode_batch(body: bytes) -> list[BusMessage]:
    """The messages of `encode_batch` (no ack tokens: they were acked when journaled)."""
    out, pos, view = [], 0, memoryview(body)
    while pos < len(body):
        n_mid, n_data = _FRAME.unpack_from(body, pos)
        pos += _FRAME.size
        mid = bytes(view[pos:pos + n_mid]).decode()
        pos += n_mid
        out.append(BusMessage(message_id=mid, data=bytes(view[pos:pos + n_data])))
        pos += n_data
    return out


def journal_batch(engine: sa.Engine, source: str, messages: Sequence[BusMessage]) -> int:
    """Persist a pulled batch as ONE journal row (one small transaction); the caller acks after it returns.

    Landing (validation, identities, dead letters) happens behind, in `land_journal`; the journal
    row is marked landed only after its landing committed, so a crash anywhere loses nothing.
    """
    if not messages:
        return 0
    ensure_landing_tables(engine)
    with engine.begin() as conn:
        conn.execute(landing_journal.insert().values(source=source, messages=len(messages),
                                                     body=encode_batch(messages), created_at=datetime.now(UTC)))
    return len(messages)


def land_journal(engine: sa.Engine, source: str, max_rows: int = 1) -> list[LandingResult]:
    """Land the oldest pending journaled batches of `source` (idempotent: a batch landed twice lands nothing
    new), mark them landed, and purge rows landed more than JOURNAL_KEEP ago."""
    ensure_landing_tables(engine)
    j = landing_journal
    with engine.connect() as conn:
        rows = conn.execute(sa.select(j.c.id, j.c.body).where((j.c.source == source) & j.c.landed_at.is_(None))
                            .order_by(j.c.id).limit(max_rows)).all()
    results = []
    for row_id, body in rows:
        results.append(land_batch(engine, source, decode_batch(bytes(body))))
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(j.update().where(j.c.id == row_id).values(landed_at=now))
            if row_id % 100 == 0:
                conn.execute(j.delete().where((j.c.source == source) & (j.c.landed_at < now - JOURNAL_KEEP)))
    return results


def journaled_count(engine: sa.Engine, source: str | None = None) -> int:
    """Messages persisted in the journal (landed or not, until purged), optionally of one source."""
    ensure_landing_tables(engine)
    q = sa.select(sa.func.coalesce(sa.func.sum(landing_journal.c.messages), 0))
    if source is not None:
        q = q.where(landing_journal.c.source == source)
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def journal_backlog(engine: sa.Engine) -> dict[str, int]:
    """{source: messages journaled (persisted and acked) but not landed yet}."""
    ensure_landing_tables(engine)
    j = landing_journal
    with engine.connect() as conn:
        return {s: int(n) for s, n in conn.execute(sa.select(j.c.source, sa.func.sum(j.c.messages))
                                                    .where(j.c.landed_at.is_(None)).group_by(j.c.source))}
