"""Alembic environment: the platform's tables, on the URL the caller configured (see aios/schema.py)."""

import sqlalchemy as sa
from alembic import context

from connectors.stores.schema import VERSION_TABLE, all_tables

config = context.config
target_metadata = all_tables()


def run_migrations_offline() -> None:
    """Emit the migrations as SQL for the configured URL, without connecting."""
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply the migrations over a connection to the configured URL."""
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url"), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, version_table=VERSION_TABLE,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
