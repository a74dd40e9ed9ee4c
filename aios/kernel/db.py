"""SQLAlchemy engines and the one MetaData every store registers its tables on.

The same table code runs on SQLite (embedded) and PostgreSQL (production).
"""

from __future__ import annotations

import threading
import weakref
from functools import lru_cache

import sqlalchemy as sa

metadata = sa.MetaData()
_create_lock = threading.Lock()
_created: weakref.WeakKeyDictionary[sa.Engine, set[str]] = weakref.WeakKeyDictionary()


@lru_cache(maxsize=16)
def get_engine(url: str) -> sa.Engine:
    """A pooled engine for `url`; SQLite gets WAL and a busy timeout so readers don't block writers."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def ensure_tables(engine: sa.Engine, *tables: sa.Table) -> None:
    """Create `tables` (every registered table when none are given) where missing.

    Each table is checked at most once per engine and process: stores call this on every write,
    and a `CREATE TABLE IF NOT EXISTS` round per call would sit on the hot path.
    """
    with _create_lock:  # two threads must not both find a table missing and both create it
        done = _created.setdefault(engine, set())
        todo = [t for t in (tables or metadata.sorted_tables) if t.name not in done]
        if not todo:
            return
        try:
            metadata.create_all(engine, tables=todo)
        except sa.exc.DatabaseError:
            # another process created a table between the check and the CREATE: check again
            metadata.create_all(engine, tables=todo)
        done.update(t.name for t in todo)


def insert_ignore(bind: sa.Engine | sa.Connection, table: sa.Table) -> sa.Insert:
    """`INSERT … ON CONFLICT DO NOTHING` for `table` on SQLite or PostgreSQL (the two supported profiles)."""
    name = bind.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported profiles
        raise NotImplementedError(f"stores support sqlite and postgresql, not {name}")
    return insert(table).on_conflict_do_nothing()
