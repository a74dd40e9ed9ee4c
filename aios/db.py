"""SQLAlchemy engines and the one MetaData every store registers its tables on.

The same table code runs on SQLite (embedded) and PostgreSQL (production).
"""

from __future__ import annotations

import weakref
from functools import lru_cache

import sqlalchemy as sa

metadata = sa.MetaData()
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
    done = _created.setdefault(engine, set())
    todo = [t for t in (tables or metadata.sorted_tables) if t.name not in done]
    if todo:
        metadata.create_all(engine, tables=todo)
        done.update(t.name for t in todo)
