"""Content-addressed feature snapshots: each claim's features stored under the hash its decision records."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd
import sqlalchemy as sa

from aios.kernel.db import ensure_tables, insert_ignore, metadata
from aios.kernel.canonical import canonical_json, sha256_text
from models.decision import snapshot_hash, snapshot_records

feature_snapshots = sa.Table(
    "feature_snapshots", metadata,
    sa.Column("snapshot_hash", sa.String(64), primary_key=True),
    sa.Column("claim_id", sa.String(80), nullable=False, index=True),
    sa.Column("feature_version", sa.String(40), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("stored_at", sa.String(40), nullable=False),
)


def save_snapshots(engine: sa.Engine, features: pd.DataFrame, feature_version: str) -> list[str]:
    """Store each feature row under its hash (a snapshot stored before is left as it is); returns the hashes."""
    ensure_tables(engine, feature_snapshots)
    now = datetime.now(timezone.utc).isoformat()
    hashes, rows = [], {}
    for rec in snapshot_records(features):
        text = canonical_json(rec)  # serialised once: hashed (as snapshot_hash does) and stored as it is
        h = sha256_text(text)
        hashes.append(h)
        rows[h] = {"snapshot_hash": h, "claim_id": str(rec.get("claim_id")), "feature_version": feature_version,
                   "payload": text, "stored_at": now}
    if rows:
        with engine.begin() as conn:
            conn.execute(insert_ignore(conn, feature_snapshots), list(rows.values()))
    return hashes


def insert_snapshot_records(conn: sa.Connection, records: list[dict], feature_version: str) -> list[str]:
    """Inside the caller's transaction: store each feature record (claim id included, NaN as None) under the
    hash of its canonical JSON (a snapshot stored before is left as it is); returns the hashes."""
    now = datetime.now(timezone.utc).isoformat()
    hashes, rows = [], {}
    for rec in records:
        text = canonical_json(rec)
        h = sha256_text(text)
        hashes.append(h)
        rows[h] = {"snapshot_hash": h, "claim_id": str(rec.get("claim_id")), "feature_version": feature_version,
                   "payload": text, "stored_at": now}
    if rows:
        conn.execute(insert_ignore(conn, feature_snapshots), list(rows.values()))
    return hashes


def load_snapshots(engine: sa.Engine, hashes: list[str]) -> pd.DataFrame:
    """The stored feature rows (indexed by claim_id) for `hashes`, each checked against its hash.

    Raises LookupError naming a missing hash and ValueError naming one whose content does not hash to it.
    """
    ensure_tables(engine, feature_snapshots)
    found: dict[str, dict] = {}
    with engine.connect() as conn:
        for i in range(0, len(hashes), 500):
            for h, payload in conn.execute(sa.select(feature_snapshots.c.snapshot_hash, feature_snapshots.c.payload)
                                           .where(feature_snapshots.c.snapshot_hash.in_(hashes[i:i + 500]))):
                found[h] = json.loads(payload)
    records = []
    for h in hashes:
        if h not in found:
            raise LookupError(f"feature snapshot {h} is not stored")
        if snapshot_hash(found[h]) != h:
            raise ValueError(f"feature snapshot {h}: stored content does not match its hash")
        records.append(found[h])
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return frame
    frame = frame.set_index("claim_id")
    frame.index.name = "claim_id"
    return frame.apply(lambda c: pd.to_numeric(c) if c.map(lambda v: v is None or isinstance(v, (int, float))).all()
                       else c)
