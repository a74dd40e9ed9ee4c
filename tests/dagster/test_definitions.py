"""The Dagster wiring, tested once: the Definitions load and their asset graph matches the reviewed snapshot.

The snapshot (`tests/snapshots/asset_graph.json`) lists every asset with its group, upstream assets,
partitioning and checks (blocking or not), and every job, sensor and schedule. A renamed asset, a lost
dependency or a check that stopped blocking fails here. After an intended change, regenerate it with
`AIOS_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/dagster/test_definitions.py` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SNAPSHOT = Path(__file__).parents[1] / "snapshots" / "asset_graph.json"


def graph_snapshot(defs) -> dict:
    """The parts of the Definitions a reviewer cares about, as sorted plain data."""
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": type(partitions).__name__ if partitions is not None else None,
            "checks": sorted(c.name for c in node.check_keys),
        }
    blocking = sorted({f"{spec.asset_key.to_user_string()}:{spec.name}"
                       for a in repo.assets_defs_by_key.values() for spec in a.check_specs if spec.blocking})
    return {
        "assets": assets,
        "blocking_checks": blocking,
        "jobs": sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")),
        "sensors": sorted(s.name for s in repo.sensor_defs),
        "schedules": sorted(s.name for s in repo.schedule_defs),
    }


def test_asset_graph_matches_the_reviewed_snapshot(defs):
    current = graph_snapshot(defs)
    if os.environ.get("AIOS_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


def test_payout_gates_are_blocking_checks(defs):
    snap = graph_snapshot(defs)
    assert {"validated_claims:data_quality", "claim_features:drift"} <= set(snap["blocking_checks"])
