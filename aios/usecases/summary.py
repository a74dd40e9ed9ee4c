"""The run summary: what happened to a partition, from the stores (not from the run's own report)."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from aios.kernel.db import ensure_tables, get_engine
from aios.kernel.settings import Settings
from connectors.stores.decisions import decisions_table, quarantine_table
from connectors.stores.gates import latest_gates
from connectors.inbox import SUFFIXES, UnreadableFile, read_claims_file
from connectors.landing import landed_claims
from connectors.payout import payouts_table
from models.routes import AUTO, REVIEW, SIU

SUMMARY_COUNTED_ROUTES = (AUTO, REVIEW, SIU)


def _rows_in(path) -> int:
    try:
        return len(read_claims_file(path))
    except UnreadableFile:
        return 0  # the next run of its day moves it to the rejected folder


def partition_summary(settings: Settings, partition: str) -> dict:
    """Counts for a partition: rows landed, quarantined, per route, paid; drift verdict; versions in force."""
    engine = get_engine(settings.db_url)
    ensure_tables(engine)
    folder = settings.landing_dir / partition
    claims_in = sum(_rows_in(p) for p in sorted(folder.glob("*")) if p.suffix in SUFFIXES) \
        if folder.exists() else 0
    with engine.connect() as conn:
        # claims that came by bus are in the landing store, not in files
        claims_in += conn.execute(sa.select(sa.func.count()).select_from(landed_claims)
                                  .where(landed_claims.c.partition == partition)).scalar_one()
        quarantined = conn.execute(sa.select(sa.func.count()).select_from(quarantine_table)
                                   .where(quarantine_table.c.partition == partition)).scalar_one()
        routes = dict(conn.execute(sa.select(decisions_table.c.route, sa.func.count())
                                   .where(decisions_table.c.partition == partition)
                                   .group_by(decisions_table.c.route)).all())
        paid = conn.execute(sa.select(sa.func.count()).select_from(payouts_table)
                            .where(payouts_table.c.partition == partition)).scalar_one()
        versions = conn.execute(sa.select(decisions_table.c.versions)
                                .where(decisions_table.c.partition == partition).limit(1)).scalar()
    gates = latest_gates(engine, partition)
    drift = gates.get("drift")
    return {
        "partition": partition,
        "claims_in": int(claims_in),
        "quarantined": int(quarantined),
        **{r: int(routes.get(r, 0)) for r in SUMMARY_COUNTED_ROUTES},
        "paid": int(paid),
        "drift_detected": None if drift is None else (not drift[0]),
        "gates": {k: {"passed": v[0], "detail": v[1]} for k, v in gates.items()},
        "versions": _versions_in_force(versions),
    }


def _versions_in_force(stored: str | None) -> dict[str, str]:
    """A decision's versions as the partition's: each decision module's version, not that claim's state."""
    versions = json.loads(stored) if stored else {}
    modules = versions.pop("modules", None)
    if isinstance(modules, dict):
        versions["modules"] = ", ".join(f"{n} {m.get('version')}" for n, m in sorted(modules.items()))
    return versions


def write_summary(summary: dict, path: Path) -> Path:
    """Write the summary as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return path
