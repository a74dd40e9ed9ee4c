"""The production profile's setup: PostgreSQL databases for the stores, Dagster and MLflow, the stores'
schema through Alembic, and the Dagster instance configuration (dagster.yaml) pointing at PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from connectors.stores.schema import upgrade
from aios.kernel.settings import Settings

DAGSTER_YAML = """\
# Written by `aios db prepare` for the production profile: runs, events and schedules in PostgreSQL.
storage:
  postgres:
    postgres_url: {url}
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
{run_queue}{run_monitoring}telemetry:
  enabled: false
"""

# At most one run per partition at a time (two runs of one day would race on its stores rows);
# the reconciliation sensor relies on it. Also written into the embedded profile's dagster.yaml.
RUN_QUEUE = """concurrency:
  runs:
    max_concurrent_runs: 2
    tag_concurrency_limits:
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      # A backfill (Dagster tags each of its runs dagster/backfill) holds at most one of the two run
      # slots, so the daily schedule's run always finds one free however many days are being backfilled.
      - key: dagster/backfill
        limit: 1
"""

# A run whose launching process or worker died is failed, never left STARTED: run monitoring (in the
# daemon) fails any run still going after its maximum runtime (AIOS_MAX_RUN_SECONDS). Production only.
RUN_MONITORING = """run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  max_runtime_seconds: {max_runtime}
  poll_interval_seconds: 30
"""


def create_database(url: str) -> bool:
    """Create the PostgreSQL database named in `url` when it is missing; True if it was created."""
    target = make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                  {"n": target.database}).scalar()
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
            return not exists
    finally:
        admin.dispose()


def _plain_postgres(url: str) -> str:
    """The URL without a SQLAlchemy driver suffix (Dagster and libpq want postgresql://)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def write_dagster_yaml(dagster_home: Path, storage_url: str, max_runtime: int = 3600) -> Path:
    """Write `dagster.yaml` under `dagster_home` with PostgreSQL storage at `storage_url`."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    path.write_text(DAGSTER_YAML.format(url=_plain_postgres(storage_url), run_queue=RUN_QUEUE,
                                        run_monitoring=RUN_MONITORING.format(max_runtime=max_runtime)))
    return path


def write_embedded_dagster_yaml(dagster_home: Path) -> Path:
    """Write the embedded profile's `dagster.yaml` (SQLite storage, the same per-partition run queue limit)
    when it is missing or still the earlier default (telemetry only); a file the user edited is left alone."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    if not path.exists() or path.read_text().strip() == "telemetry:\n  enabled: false":
        path.write_text(RUN_QUEUE + "telemetry:\n  enabled: false\n")
    return path


def prepare_production(settings: Settings, dagster_home: Path) -> list[str]:
    """Create the three databases if missing, migrate the stores to head, write dagster.yaml; returns what it did."""
    done = []
    for url in (settings.db_url, settings.dagster_storage_url, settings.mlflow_uri):
        if create_database(url):
            done.append(f"created database {make_url(url).database}")
    upgrade(settings.db_url)
    done.append(f"migrated stores at {make_url(settings.db_url).database} to head")
    done.append(f"wrote {write_dagster_yaml(dagster_home, settings.dagster_storage_url, settings.max_run_seconds)}")
    return done
