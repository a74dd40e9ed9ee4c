"""The production profile end to end on the real PostgreSQL: stores via Alembic, Dagster instance storage
and MLflow's backend store all in PostgreSQL; one partition materialized and read back from there."""

import json
import os
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa

pytestmark = [pytest.mark.server, pytest.mark.slow]

try:
    from tests.servers import server_unavailable
except ImportError:
    from servers import server_unavailable


@pytest.fixture
def databases():
    from connectors.bus.local_servers import ServerUnavailable, drop_postgres_database

    base = f"aios_prod_{uuid.uuid4().hex[:8]}"
    names = {"stores": base, "dagster": base + "_dagster", "mlflow": base + "_mlflow"}
    try:
        import psycopg2

        psycopg2.connect("dbname=postgres user=postgres host=127.0.0.1 port=5432", connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001
        server_unavailable(f"PostgreSQL on 127.0.0.1:5432: {exc}")
    yield {k: f"postgresql+psycopg2://postgres@127.0.0.1:5432/{v}" for k, v in names.items()}
    for name in names.values():
        try:
            drop_postgres_database(name)
        except ServerUnavailable:
            pass


def _aios(env, *args):
    proc = subprocess.run([sys.executable, "-m", "aios", *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"aios {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_a_partition_on_the_production_profile_lands_in_postgresql(databases, tmp_path):
    home, dagster_home = tmp_path / "home", tmp_path / "dagster"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_")}
    env.update(AIOS_PROFILE="production", AIOS_HOME=str(home), DAGSTER_HOME=str(dagster_home),
               AIOS_DATABASE_URL=databases["stores"], AIOS_DAGSTER_DATABASE_URL=databases["dagster"],
               AIOS_MLFLOW_TRACKING_URI=databases["mlflow"].replace("+psycopg2", ""),
               AIOS_PAYOUT_BANK_STANDIN="true",  # no bank here: the stand-in answers the pain.001 files
               DAGSTER_DISABLE_TELEMETRY="1")
    out = _aios(env, "db", "prepare")
    assert "migrated stores" in out and "postgres" in (dagster_home / "dagster.yaml").read_text()
    _aios(env, "generate", "--days", "80", "--per-day", "250")
    _aios(env, "train")
    _aios(env, "drop", "--date", "2026-11-20", "--per-day", "250")
    _aios(env, "ingest")
    summary = json.loads((home / "last_run.json").read_text()) if (home / "last_run.json").exists() else None

    stores = sa.create_engine(databases["stores"])
    with stores.connect() as conn:
        assert conn.exec_driver_sql("select version_num from aios_alembic_version").scalar() is not None
        decided = conn.exec_driver_sql("select count(*) from decisions where partition='2026-11-20'").scalar()
        auto = conn.exec_driver_sql("select count(*) from decisions where partition='2026-11-20' "
                                    "and route='auto_approve'").scalar()
        paid = conn.exec_driver_sql("select count(*) from payouts where partition='2026-11-20'").scalar()
        ledger_rows = conn.exec_driver_sql("select count(*) from audit_ledger").scalar()
    assert decided > 150 and paid == auto > 0 and ledger_rows > decided
    if summary is not None:
        assert summary["paid"] == paid
    stores.dispose()

    dagster_db = sa.create_engine(databases["dagster"])
    with dagster_db.connect() as conn:
        runs = conn.exec_driver_sql("select pipeline_name, status from runs").all()
    dagster_db.dispose()
    assert ("claims_job", "SUCCESS") in [(r[0], r[1]) for r in runs]
    assert ("training_job", "SUCCESS") in [(r[0], r[1]) for r in runs]

    mlflow_db = sa.create_engine(databases["mlflow"])
    with mlflow_db.connect() as conn:
        aliases = conn.exec_driver_sql("select name, alias, version from registered_model_aliases").all()
    mlflow_db.dispose()
    assert ("aios-fraud", "champion", 1) in [tuple(a) for a in aliases]
