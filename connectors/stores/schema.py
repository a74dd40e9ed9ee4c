"""Every table of the platform registered on `aios.kernel.db.metadata`, and Alembic migrations to build them."""

from __future__ import annotations

import importlib
from pathlib import Path

import sqlalchemy as sa

from aios.kernel.db import metadata

# Modules whose import registers tables on the shared metadata.
TABLE_MODULES = ("connectors.stores.decisions", "connectors.stores.snapshots", "connectors.payout", "connectors.rails.outbox",
                 "connectors.stores.gates", "connectors.landing", "connectors.stores.ledger", "connectors.stores.accounts",
                 "connectors.stores.sessions", "connectors.stores.reviews", "connectors.stores.alarms",
                 "connectors.stores.clients")
MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "aios_alembic_version"  # Dagster and MLflow keep their own alembic_version elsewhere


def all_tables() -> sa.MetaData:
    """The metadata with every platform table registered (modules that do not exist yet are skipped)."""
    for name in TABLE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return metadata


def alembic_config(url: str):  # -> alembic.config.Config
    """An Alembic configuration for the stores database at `url` (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["version_table"] = VERSION_TABLE
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the stores database at `url` to `revision` (default: the latest)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    finally:
        engine.dispose()
