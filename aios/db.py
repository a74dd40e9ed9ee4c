"""SQLAlchemy engines and the one MetaData every store registers its tables on.

The same table code runs on SQLite (embedded) and PostgreSQL (production).
"""

from __future__ import annotations

from functools import lru_cache

import sqlalchemy as sa

metadata = sa.MetaData()


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


def create_tables(engine: sa.Engine) -> None:
    """Create every registered table that does not exist yet."""
    metadata.create_all(engine)
