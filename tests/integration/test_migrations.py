"""The Alembic migrations build exactly the tables the code declares, on PostgreSQL and SQLite."""

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from connectors.stores.schema import VERSION_TABLE, all_tables, current_revision, upgrade

try:
    from tests.servers import postgres_url  # noqa: F401 - fixture
except ImportError:
    from servers import postgres_url  # noqa: F401


def _drift(url: str) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            diff = compare_metadata(ctx, all_tables())
    finally:
        engine.dispose()
    # the version table is Alembic's own, not declared by the code
    return [d for d in diff if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)]


@pytest.mark.server
def test_migrations_match_the_declared_tables_on_postgresql(postgres_url):
    upgrade(postgres_url)
    assert current_revision(postgres_url) is not None
    assert _drift(postgres_url) == []


def test_migrations_match_the_declared_tables_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    assert _drift(url) == []
