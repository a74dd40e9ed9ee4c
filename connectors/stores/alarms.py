"""The alarm store (one row per alarm, never twice the same) and the reads the alarm sensor makes."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import sqlalchemy as sa

from aios.kernel.db import ensure_tables, metadata
from connectors.stores.gates import gate_evaluations
from models.slo import Alarm

alarms_table = sa.Table(
    "alarms", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(40), nullable=False, index=True),
    sa.Column("partition", sa.String(40), nullable=False, index=True),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raised_at", sa.String(40), nullable=False),
)

def record_alarm(engine: sa.Engine, alarm: Alarm) -> bool:
    """Store `alarm` unless an alarm with its key exists; True when it is new."""
    ensure_tables(engine, alarms_table)
    value = None if pd.isna(alarm.value) else float(alarm.value)
    with engine.begin() as conn:
        exists = conn.execute(sa.select(alarms_table.c.id).where(alarms_table.c.key == alarm.key)).first()
        if exists:
            return False
        conn.execute(alarms_table.insert().values(
            key=alarm.key, kind=alarm.kind, partition=alarm.partition, value=value, threshold=alarm.threshold,
            reason=alarm.reason, raised_at=datetime.now(timezone.utc).isoformat()))
    return True


def read_alarms(engine: sa.Engine) -> pd.DataFrame:
    """Every recorded alarm, oldest first."""
    ensure_tables(engine, alarms_table)
    with engine.connect() as conn:
        return pd.read_sql(sa.select(alarms_table).order_by(alarms_table.c.id), conn)


def drift_gates_after(engine: sa.Engine, after_id: int) -> pd.DataFrame:
    """Drift gate evaluations recorded after row `after_id` (id, partition, passed, detail), oldest first."""
    ensure_tables(engine, gate_evaluations)
    g = gate_evaluations.c
    with engine.connect() as conn:
        return pd.read_sql(sa.select(g.id, g.partition, g.passed, g.detail)
                           .where((g.gate == "drift") & (g.id > after_id)).order_by(g.id), conn)


def latest_drift_gate(engine: sa.Engine, partition: str) -> tuple[bool, str] | None:
    """The latest drift gate verdict of `partition` (passed, detail), or None when never evaluated."""
    from connectors.stores.gates import latest_gates

    return latest_gates(engine, partition).get("drift")


def review_outcomes(engine: sa.Engine) -> pd.DataFrame:
    """Final review decisions (partition, decision, leaning; both `approve`/`reject`) from the review store."""
    from connectors.stores.reviews import APPROVED, REJECTED, review_actions

    ensure_tables(engine, review_actions)
    a = review_actions.c
    with engine.connect() as conn:
        rows = pd.read_sql(sa.select(a.partition, a.outcome, a.model_leaning)
                           .where(a.outcome.in_([APPROVED, REJECTED])).order_by(a.id), conn)
    return pd.DataFrame({"partition": rows["partition"],
                         "decision": rows["outcome"].map({APPROVED: "approve", REJECTED: "reject"}),
                         "leaning": rows["model_leaning"]})


def reviewed_after(engine: sa.Engine, after_id: int) -> tuple[list[str], int]:
    """The partitions with final review decisions recorded after review row `after_id`, and the last such
    row's id (`after_id` when there is none): one small read, so a caller reads every outcome only when
    something changed."""
    from connectors.stores.reviews import APPROVED, REJECTED, review_actions

    ensure_tables(engine, review_actions)
    a = review_actions.c
    final = (a.id > after_id) & a.outcome.in_([APPROVED, REJECTED])
    with engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(a.id)).where(final)).scalar()
        parts = conn.execute(sa.select(a.partition).where(final).distinct()).scalars().all() if last else []
    return sorted(parts), int(last or after_id)
