"""The audit ledger: append-only, hash-chained, one row per event.

Table `audit_ledger` (on `aios.kernel.db.metadata`): `seq` (contiguous from 1), `at`
(UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so text order is time order and never
decreases with seq), `actor` (`module@version` or a user name), `event`,
`claim_id`, `payload` and `versions` (canonical JSON: sorted keys, no spaces,
UTF-8), `snapshot_hash`, `trace_id`, `prev_hash` (the `hash` of seq-1, 64 zeros
for seq 1) and `hash` = sha256 of the canonical JSON of all other fields.

A one-row table `audit_ledger_head` records the last seq and hash. It is updated
in the same transaction as every append, so truncating the tail or appending a
forged row outside this module is detected too, and its row lock serialises
appenders: PostgreSQL takes `SELECT ... FOR UPDATE` on it, SQLite takes
`BEGIN IMMEDIATE` (one writer at a time). Two processes therefore never fork the
chain.

The database refuses changes itself: on PostgreSQL triggers raise on UPDATE,
DELETE and TRUNCATE of the ledger (and let the head only move forward to the
last ledger row), and UPDATE/DELETE/TRUNCATE are revoked from PUBLIC
(`install_postgres_guards`); on SQLite BEFORE UPDATE/DELETE triggers
RAISE(ABORT). `verify()` still finds every edited, removed, inserted or
reordered row for someone who bypasses the guards (a superuser, or anyone with
the SQLite file). Rewriting the whole chain from some row onwards *and* the
head is only detectable against a copy of the head kept elsewhere: publish
`head()` (e.g. in the daily report) and pass it to `verify(expected_head=...)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import sqlite as sqlite_dialect

from aios.kernel.canonical import canonical_json, format_ts, utc_now
from aios.kernel.contracts import LEDGER_EVENTS
from aios.kernel.db import metadata
from governance.hashchain import GENESIS_HASH, HASHED_FIELDS, ChainChecker, LedgerRow, VerifyResult, row_hash

_ROW_KEYS = {"event", "actor", "payload", "claim_id", "versions", "snapshot_hash", "trace_id"}
_PG_LOCK_KEY = 0x61696F73  # "aios": serialises schema/guard installation across processes
_PAID_STATUSES = {None, "paid", "succeeded", "completed"}

_Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY on SQLite

audit_ledger = sa.Table(
    "audit_ledger", metadata,
    sa.Column("seq", _Seq, primary_key=True, autoincrement=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("claim_id", sa.String(200), nullable=True),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("versions", sa.Text(), nullable=False),
    sa.Column("snapshot_hash", sa.String(128), nullable=True),
    sa.Column("trace_id", sa.String(64), nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_ledger_claim_id", "claim_id"),
    sa.Index("ix_audit_ledger_at", "at"),
)

audit_ledger_head = sa.Table(
    "audit_ledger_head", metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("seq", _Seq, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
)


# built once: the append path runs them on every group commit
_HEAD_FOR_UPDATE = sa.select(audit_ledger_head).where(audit_ledger_head.c.id == 1).with_for_update()
_LAST_ROW = sa.select(audit_ledger.c.seq, audit_ledger.c.hash).order_by(audit_ledger.c.seq.desc()).limit(1)


class LedgerError(RuntimeError):
    """The ledger cannot append (e.g. its head does not match its last row: run `aios audit verify`)."""


# ---------------------------------------------------------------------------------------------
# schema and database guards

_SQLITE_GUARDS = [
    """CREATE TRIGGER IF NOT EXISTS audit_ledger_no_update BEFORE UPDATE ON audit_ledger
       BEGIN SELECT RAISE(ABORT, 'audit_ledger is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_ledger_no_delete BEFORE DELETE ON audit_ledger
       BEGIN SELECT RAISE(ABORT, 'audit_ledger is append-only: DELETE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_ledger_head_forward BEFORE UPDATE ON audit_ledger_head
       WHEN NOT (NEW.id = OLD.id AND NEW.seq > OLD.seq
                 AND NEW.hash IS (SELECT l.hash FROM audit_ledger l WHERE l.seq = NEW.seq)
                 AND NOT EXISTS (SELECT 1 FROM audit_ledger l WHERE l.seq > NEW.seq))
       BEGIN SELECT RAISE(ABORT, 'audit_ledger_head only moves forward to the last ledger row'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_ledger_head_no_delete BEFORE DELETE ON audit_ledger_head
       BEGIN SELECT RAISE(ABORT, 'audit_ledger_head: DELETE refused'); END""",
]
SQLITE_TRIGGERS = ("audit_ledger_no_update", "audit_ledger_no_delete", "audit_ledger_head_forward",
                   "audit_ledger_head_no_delete")

# no '%' anywhere: these go through the DBAPI's parameter formatting
_PG_GUARDS = [
    """CREATE OR REPLACE FUNCTION aios_audit_ledger_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = TG_TABLE_NAME || ' is append-only: ' || TG_OP || ' refused';
    END $$""",
    """CREATE OR REPLACE FUNCTION aios_audit_ledger_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.seq > OLD.seq
         AND NEW.hash IS NOT DISTINCT FROM (SELECT l.hash FROM audit_ledger l WHERE l.seq = NEW.seq)
         AND NOT EXISTS (SELECT 1 FROM audit_ledger l WHERE l.seq > NEW.seq) THEN
        RETURN NEW;
      END IF;
      RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = 'audit_ledger_head only moves forward to the last ledger row: ' || TG_OP || ' refused';
    END $$""",
    "DROP TRIGGER IF EXISTS audit_ledger_no_update_delete ON audit_ledger",
    """CREATE TRIGGER audit_ledger_no_update_delete BEFORE UPDATE OR DELETE ON audit_ledger
       FOR EACH ROW EXECUTE FUNCTION aios_audit_ledger_refuse()""",
    "DROP TRIGGER IF EXISTS audit_ledger_no_truncate ON audit_ledger",
    """CREATE TRIGGER audit_ledger_no_truncate BEFORE TRUNCATE ON audit_ledger
       FOR EACH STATEMENT EXECUTE FUNCTION aios_audit_ledger_refuse()""",
    "DROP TRIGGER IF EXISTS audit_ledger_head_forward ON audit_ledger_head",
    """CREATE TRIGGER audit_ledger_head_forward BEFORE UPDATE OR DELETE ON audit_ledger_head
       FOR EACH ROW EXECUTE FUNCTION aios_audit_ledger_head_forward()""",
    "DROP TRIGGER IF EXISTS audit_ledger_head_no_truncate ON audit_ledger_head",
    """CREATE TRIGGER audit_ledger_head_no_truncate BEFORE TRUNCATE ON audit_ledger_head
       FOR EACH STATEMENT EXECUTE FUNCTION aios_audit_ledger_refuse()""",
    "REVOKE UPDATE, DELETE, TRUNCATE ON audit_ledger FROM PUBLIC",
    "REVOKE DELETE, TRUNCATE ON audit_ledger_head FROM PUBLIC",
]
PG_TRIGGERS = ("audit_ledger_no_update_delete", "audit_ledger_no_truncate", "audit_ledger_head_forward",
               "audit_ledger_head_no_truncate")


def guard_statements(dialect: str) -> list[str]:
    """The SQL that makes the database refuse changes to the ledger (for migrations); [] for other dialects."""
    return {"postgresql": list(_PG_GUARDS), "sqlite": list(_SQLITE_GUARDS)}.get(dialect, [])


def _pg_guards_present(conn: sa.Connection) -> bool:
    n = conn.execute(sa.text("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgname IN "
                             "('audit_ledger_no_update_delete', 'audit_ledger_no_truncate', "
                             "'audit_ledger_head_forward', 'audit_ledger_head_no_truncate')")).scalar_one()
    return n == len(PG_TRIGGERS)


def install_postgres_guards(engine: sa.Engine, *, force: bool = False) -> None:
    """Create the ledger tables if missing and make PostgreSQL refuse UPDATE/DELETE/TRUNCATE (idempotent).

    Serialised across processes by an advisory lock; a no-op when the triggers exist (unless `force`,
    which re-creates them, e.g. after changing their definition).
    """
    if engine.dialect.name != "postgresql":
        raise ValueError(f"install_postgres_guards needs PostgreSQL, not {engine.dialect.name}")
    with engine.begin() as conn:
        inspector = sa.inspect(conn)
        if (not force and inspector.has_table("audit_ledger") and inspector.has_table("audit_ledger_head")
                and _pg_guards_present(conn)):
            return
    with engine.begin() as conn:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
        metadata.create_all(conn, tables=[audit_ledger, audit_ledger_head], checkfirst=True)
        if force or not _pg_guards_present(conn):
            for stmt in _PG_GUARDS:
                conn.exec_driver_sql(stmt)


def install_sqlite_guards(engine: sa.Engine) -> None:
    """Create the ledger tables if missing and BEFORE UPDATE/DELETE triggers that RAISE(ABORT) (idempotent)."""
    if engine.dialect.name != "sqlite":
        raise ValueError(f"install_sqlite_guards needs SQLite, not {engine.dialect.name}")
    with engine.connect() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        metadata.create_all(conn, tables=[audit_ledger, audit_ledger_head], checkfirst=True)
        for stmt in _SQLITE_GUARDS:
            conn.exec_driver_sql(stmt)
        conn.commit()


def ensure_ledger_schema(engine: sa.Engine) -> None:
    """Tables plus the database guards for the engine's dialect."""
    if engine.dialect.name == "postgresql":
        install_postgres_guards(engine)
    elif engine.dialect.name == "sqlite":
        install_sqlite_guards(engine)
    else:
        metadata.create_all(engine, tables=[audit_ledger, audit_ledger_head], checkfirst=True)


# ---------------------------------------------------------------------------------------------
# the ledger


def _prepare(event: str, actor: str, payload: Any, claim_id: Any, versions: Any, snapshot_hash: Any,
             trace_id: Any) -> dict[str, Any]:
    if event not in LEDGER_EVENTS:
        raise ValueError(f"event must be one of {', '.join(LEDGER_EVENTS)} (aios.kernel.contracts.LEDGER_EVENTS); "
                         f"got {event!r}")
    if not isinstance(actor, str) or not actor.strip() or len(actor) > 200:
        raise ValueError(f"actor must be a non-empty string (module@version or a user name); got {actor!r}")
    return {
        "event": event, "actor": actor,
        "claim_id": None if claim_id is None else str(claim_id),
        "payload": canonical_json(payload if payload is not None else {}),
        "versions": canonical_json(versions if versions is not None else {}),
        "snapshot_hash": None if snapshot_hash is None else str(snapshot_hash),
        "trace_id": None if trace_id is None else str(trace_id),
    }


class AuditLedger:
    """Append-only, hash-chained audit ledger on a SQLAlchemy engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: sa.Engine, *, ensure_schema: bool = True,
                 clock: Callable[[], datetime] | None = None) -> None:
        """`ensure_schema` creates the tables and installs the database guards (idempotent);
        `clock` (UTC datetimes) is for tests and replays - rows never go back in time either way."""
        self.engine = engine
        self.dialect = engine.dialect.name
        self._clock = clock
        self._head_seen = False
        if ensure_schema:
            ensure_ledger_schema(engine)

    # writing -------------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[tuple[sa.Connection, int, str, str]]:
        """A transaction holding the append lock; yields (conn, last seq, last hash, last at)."""
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                init = {"id": 1, "seq": 0, "hash": GENESIS_HASH, "at": ""}
                # The head row, once there, is never deleted (the guards refuse it): a process that saw it
                # skips the insert-if-missing round on the hot path.
                head = conn.execute(_HEAD_FOR_UPDATE).first() if self._head_seen else None
                if head is None:
                    if self.dialect == "postgresql":
                        conn.execute(pg.insert(audit_ledger_head).values(**init).on_conflict_do_nothing())
                    elif self.dialect == "sqlite":
                        conn.execute(sqlite_dialect.insert(audit_ledger_head).values(**init).on_conflict_do_nothing())
                    head = conn.execute(_HEAD_FOR_UPDATE).first()
                if head is None:
                    conn.execute(audit_ledger_head.insert().values(**init))
                    head = conn.execute(_HEAD_FOR_UPDATE).one()
                self._head_seen = True
                last = conn.execute(_LAST_ROW).first()
                last_seq, last_hash = (last.seq, last.hash) if last else (0, GENESIS_HASH)
                if (last_seq, last_hash) != (head.seq, head.hash):
                    raise LedgerError(f"ledger head (seq {head.seq}) does not match its last row (seq {last_seq}); "
                                      f"refusing to append - run `aios audit verify`")
                yield conn, head.seq, head.hash, head.at
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

    def _write(self, prepared: list[dict[str, Any]],
               before: Callable[[sa.Connection], Any] | None = None) -> list[dict[str, Any]]:
        if not prepared and before is None:
            return []
        with self._locked() as (conn, seq, prev, last_at):
            if before is not None:
                before(conn)
            if not prepared:
                return []
            now = format_ts(self._clock()) if self._clock else utc_now()
            at = max(now, last_at)  # never before the previous row, even if clocks differ
            rows = []
            for p in prepared:
                seq += 1
                row = {**p, "seq": seq, "at": at, "prev_hash": prev}
                row["hash"] = prev = row_hash(row)
                rows.append(row)
            conn.execute(audit_ledger.insert(), rows)
            conn.execute(audit_ledger_head.update().where(audit_ledger_head.c.id == 1)
                         .values(seq=seq, hash=prev, at=at))
        return rows

    def append(self, event: str, actor: str, payload: Any = None, claim_id: str | None = None,
               versions: Mapping[str, Any] | None = None, snapshot_hash: str | None = None,
               trace_id: str | None = None) -> LedgerRow:
        """Append one event and return the stored row (with its seq and hash)."""
        row = self._write([_prepare(event, actor, payload, claim_id, versions, snapshot_hash, trace_id)])[0]
        return LedgerRow(**{f.name: row[f.name] for f in dataclasses.fields(LedgerRow)})

    def append_many(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Append many events in one transaction (one lock, one multi-row insert); returns the count.

        Each row is a mapping with `event`, `actor` and optionally `payload`, `claim_id`, `versions`,
        `snapshot_hash`, `trace_id`.
        """
        return len(self._write(self._checked(rows)))

    def append_many_after(self, before: Callable[[sa.Connection], Any], rows: Iterable[Mapping[str, Any]]) -> int:
        """Group commit: `before(conn)` (the writes the rows record), then the rows, in ONE transaction that
        holds the append lock; all of it is kept or none. Returns the number of rows appended.

        Rows are checked as `append_many` checks them, before the transaction starts.
        """
        return len(self._write(self._checked(rows), before))

    def _checked(self, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        prepared = []
        for i, r in enumerate(rows):
            unknown = set(r) - _ROW_KEYS
            if unknown:
                raise ValueError(f"row {i}: unknown key(s) {sorted(unknown)}; allowed {sorted(_ROW_KEYS)}")
            if "event" not in r or "actor" not in r:
                raise ValueError(f"row {i}: `event` and `actor` are required")
            prepared.append(_prepare(r["event"], r["actor"], r.get("payload"), r.get("claim_id"),
                                     r.get("versions"), r.get("snapshot_hash"), r.get("trace_id")))
        return prepared

    # reading -------------------------------------------------------------------------------------
    @contextmanager
    def _snapshot(self) -> Iterator[sa.Connection]:
        """A read transaction with one consistent snapshot (ledger and head read at the same instant)."""
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            elif self.dialect == "sqlite":
                conn.exec_driver_sql("BEGIN")
            try:
                yield conn
            finally:
                conn.rollback()

    def head(self) -> tuple[int, str]:
        """(last seq, last hash) as recorded by the head row; (0, genesis) for an empty ledger."""
        with self._snapshot() as conn:
            h = conn.execute(sa.select(audit_ledger_head).where(audit_ledger_head.c.id == 1)).first()
        return (h.seq, h.hash) if h else (0, GENESIS_HASH)

    def count(self) -> int:
        """The number of rows in the ledger."""
        with self._snapshot() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(audit_ledger)).scalar_one()

    def verify(self, *, expected_head: tuple[int, str] | None = None, batch: int = 5000) -> VerifyResult:
        """Walk the whole chain in seq order; the first bad link gives its seq and the reason.

        Detects edited fields (hash mismatch), deleted rows (seq gap, or a tail shorter than the head),
        inserted rows (unexpected seq, prev_hash mismatch, or rows past the head) and reordered rows.
        `expected_head` = a (seq, hash) published earlier: the chain must still contain it.
        """
        checker = ChainChecker()
        with self._snapshot() as conn:
            head = conn.execute(sa.select(audit_ledger_head).where(audit_ledger_head.c.id == 1)).first()
            result = conn.execution_options(yield_per=batch).execute(
                sa.select(*[audit_ledger.c[k] for k in (*HASHED_FIELDS, "hash")]).order_by(audit_ledger.c.seq))
            seen_expected = expected_head is None or expected_head[0] == 0
            for row in result:
                m = row._mapping
                bad = checker.check(m)
                if bad is not None:
                    result.close()
                    return bad
                if expected_head is not None and m["seq"] == expected_head[0]:
                    if m["hash"] != expected_head[1]:
                        result.close()
                        return checker.broken(m["seq"], "hash differs from the published head "
                                                        "(chain rewritten from here or earlier)")
                    seen_expected = True
        last = checker.expected - 1
        if head is None:
            if last:
                return checker.broken(None, f"ledger head row is missing ({last} rows in the ledger)")
        elif head.seq > last:
            return checker.broken(last + 1, f"ledger ends at seq {last} but its head records seq {head.seq}: "
                                            f"rows removed from the tail")
        elif head.seq < last:
            return checker.broken(head.seq + 1, f"row seq {head.seq + 1} lies past the recorded head "
                                                f"(seq {head.seq}): appended outside the ledger")
        elif head.hash != checker.prev:
            return checker.broken(last, "the last row's hash differs from the head's (last row edited)")
        if not seen_expected:
            return checker.broken(last + 1, f"the published head seq {expected_head[0]} is missing "
                                            f"(ledger ends at seq {last})")
        return checker.result()

    def rows(self, claim_id: str | None = None) -> list[LedgerRow]:
        """The ledger's rows in seq order; only one claim's with `claim_id`."""
        stmt = sa.select(audit_ledger).order_by(audit_ledger.c.seq)
        if claim_id is not None:
            stmt = stmt.where(audit_ledger.c.claim_id == str(claim_id))
        with self._snapshot() as conn:
            return [LedgerRow(**r._mapping) for r in conn.execute(stmt)]

    def claim_record(self, claim_id: str) -> dict[str, Any]:
        """Every row of one claim joined into one record: what was decided, on which data, by which
        model and policy versions, who reviewed it, what was paid. `events` is empty for an unknown claim.

        Conventions the record reads from payloads: `decision` rows carry `route` (and p_fraud ...),
        `review_action` rows carry `action` (claim_case, approve, reject, escalate, second_approve ...),
        `payout` rows carry `amount`, `currency`, `status` ('paid' when absent).
        """
        rows = self.rows(claim_id)
        versions: dict[str, Any] = {}
        snapshots: list[str] = []
        events = []
        decision = None
        reviews, payouts = [], []
        paid = 0.0
        for r in rows:
            payload, vers = r.payload_obj, r.versions_obj
            if isinstance(vers, dict):
                versions.update(vers)
            if r.snapshot_hash and r.snapshot_hash not in snapshots:
                snapshots.append(r.snapshot_hash)
            events.append({"seq": r.seq, "at": r.at, "event": r.event, "actor": r.actor, "payload": payload,
                           "versions": vers, "snapshot_hash": r.snapshot_hash, "trace_id": r.trace_id,
                           "hash": r.hash})
            if r.event == "decision":
                decision = {"seq": r.seq, "at": r.at, "actor": r.actor, "snapshot_hash": r.snapshot_hash,
                            "versions": vers, **(payload if isinstance(payload, dict) else {"value": payload})}
            elif r.event == "review_action":
                reviews.append({"seq": r.seq, "at": r.at, "reviewer": r.actor,
                                **(payload if isinstance(payload, dict) else {"value": payload})})
            elif r.event == "payout":
                p = payload if isinstance(payload, dict) else {"value": payload}
                payouts.append({"seq": r.seq, "at": r.at, "actor": r.actor, **p})
                amount = p.get("amount")
                if p.get("status") in _PAID_STATUSES and isinstance(amount, (int, float)) \
                        and not isinstance(amount, bool):
                    paid += float(amount)
        return {
            "claim_id": str(claim_id),
            "events": events,
            "first_at": rows[0].at if rows else None,
            "last_at": rows[-1].at if rows else None,
            "decision": decision,
            "route": decision.get("route") if decision else None,
            "snapshot_hash": (decision or {}).get("snapshot_hash") or (snapshots[-1] if snapshots else None),
            "snapshot_hashes": snapshots,
            "versions": versions,
            "reviewers": sorted({rv["reviewer"] for rv in reviews}),
            "reviews": reviews,
            "payouts": payouts,
            "paid_amount": paid,
            "rows_intact": all(row_hash(dataclasses.asdict(r)) == r.hash for r in rows),
        }

    def export(self, from_ts: datetime | date | str | None = None, to_ts: datetime | date | str | None = None,
               *, batch: int = 5000) -> Iterator[dict[str, Any]]:
        """Rows with from_ts <= at < to_ts (UTC; either bound optional) in seq order, payload/versions
        parsed. Each exported dict still verifies: `row_hash(d) == d["hash"]`, `verify_records(...)`."""
        stmt = sa.select(audit_ledger).order_by(audit_ledger.c.seq)
        if from_ts is not None:
            stmt = stmt.where(audit_ledger.c.at >= format_ts(from_ts))
        if to_ts is not None:
            stmt = stmt.where(audit_ledger.c.at < format_ts(to_ts))
        with self._snapshot() as conn:
            for r in conn.execution_options(yield_per=batch).execute(stmt):
                yield LedgerRow(**r._mapping).to_dict(parsed=True)
