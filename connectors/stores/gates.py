"""Gate evaluations: the verdict of each blocking check per partition, which payout code consults.

Dagster's blocking checks stop downstream assets only within the same run; a payout
launched in another run must still refuse a partition whose gates did not pass.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from aios.kernel.db import ensure_tables, metadata

gate_evaluations = sa.Table(
    "gate_evaluations", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("partition", sa.String(40), nullable=False, index=True),
    sa.Column("gate", sa.String(80), nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("evaluated_at", sa.String(40), nullable=False),
)


def record_gate(engine: sa.Engine, partition: str, gate: str, passed: bool, detail: str) -> None:
    """Append a gate verdict (the latest one per partition and gate is in force)."""
    ensure_tables(engine, gate_evaluations)
    with engine.begin() as conn:
        conn.execute(gate_evaluations.insert().values(
            partition=partition, gate=gate, passed=passed, detail=detail,
            evaluated_at=datetime.now(timezone.utc).isoformat()))


def latest_gates(engine: sa.Engine, partition: str) -> dict[str, tuple[bool, str]]:
    """The latest verdict of each gate of a partition: gate → (passed, detail)."""
    ensure_tables(engine, gate_evaluations)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(gate_evaluations).where(gate_evaluations.c.partition == partition)
                            .order_by(gate_evaluations.c.id)).all()
    out: dict[str, tuple[bool, str]] = {}
    for r in rows:
        out[r.gate] = (bool(r.passed), r.detail)
    return out


def gate_failures(engine: sa.Engine, partition: str, required: tuple[str, ...]) -> list[str]:
    """Why the partition may not pay: each required gate that failed or was never evaluated."""
    latest = latest_gates(engine, partition)
    reasons = []
    for gate in required:
        if gate not in latest:
            reasons.append(f"{gate} has not been evaluated for {partition}")
        elif not latest[gate][0]:
            reasons.append(f"{gate} failed: {latest[gate][1]}")
    return reasons
