"""Time from publish to stored decisions for one day's batch, per bus backend, against the file-drop path.

For each backend: publish one generated day (~400 claims) on a fresh topic/stream, land it with
the bus sensor's tick (`pull_and_land`: bounded pull, one transaction, then ack), and run the
claims job for the day in a child process (the one launcher's `run_in_child(..., "partition", DAY)`, a
fresh process as the daemon would start for the sensor's run request). The clock stops when the decisions are stored. Baseline, measured
in the same run: the same kind of batch dropped as a file into the inbox and run by
`run_in_child(..., "ingest")`. Most of either figure is the Dagster run (process start,
imports of Great Expectations and Evidently), not the bus.

    python -m bench.bench_publish_to_decision [--backends nats,pubsub]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

import sqlalchemy as sa

from aios.usecases.datasets import drop_batch
from aios.kernel.db import get_engine
from connectors.stores.decisions import decisions_table
from aios_assets.launch import run_in_child
from bench._home import trained_settings
from connectors.bus import open_bus
from connectors.bus.local_servers import ensure_nats_server, ensure_pubsub_emulator
from connectors.inbox import read_claims_file
from connectors.landing import pull_and_land

DAYS = {"file": "2026-11-21", "nats": "2026-11-22", "pubsub": "2026-11-23"}


def _decided(engine: sa.Engine, day: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(decisions_table)
                                .where(decisions_table.c.partition == day)).scalar_one())


def _file_path(settings) -> dict:
    day = DAYS["file"]
    t0 = time.perf_counter()
    drop_batch(settings, day, malformed=0, name=f"bench-{uuid.uuid4().hex[:6]}-{day}.csv")
    run_in_child(settings, "ingest", timeout=600)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "decided": _decided(get_engine(settings.db_url), day)}


def _bus_path(settings, kind: str) -> dict:
    day = DAYS[kind]
    file = drop_batch(settings, day, malformed=0, fmt="jsonl", name=f"bus-{uuid.uuid4().hex[:6]}-{day}.jsonl")
    moved = file.rename(settings.data_dir / file.name)  # carried by the bus, not the inbox
    records = [json.dumps({k: v for k, v in r.items() if v is not None and v == v}, default=str).encode()
               for r in read_claims_file(moved).drop(columns=["_source"], errors="ignore").to_dict("records")]
    name = f"bench{uuid.uuid4().hex[:8]}"
    if kind == "nats":
        server = ensure_nats_server()  # started here only if not running; closed (stopped) only then
        bus = open_bus("nats", url=f"nats://{server.address}", stream=name.upper(), durable="landing")
    else:
        server = ensure_pubsub_emulator()
        bus = open_bus("pubsub", project="aios-bench", topic=name, subscription=name, emulator_host=server.address)
    engine = get_engine(settings.db_url)
    try:
        bus.ensure()
        t0 = time.perf_counter()
        bus.publish_many(records)
        landed, seen, ticks = 0, 0, 0
        # every message accounted for: landed, or a duplicate of a claim landed before, or dead-lettered
        while seen < len(records) and ticks < 50 and time.perf_counter() - t0 < 120:
            r = pull_and_land(bus, engine, max_messages=2000, timeout_s=2)
            landed, seen, ticks = landed + r.landed, seen + r.landed + r.duplicates + r.dead_lettered, ticks + 1
        t_landed = time.perf_counter() - t0
        run_in_child(settings, "partition", day, timeout=600)
        seconds = time.perf_counter() - t0
    finally:
        try:
            bus.delete()
        finally:
            bus.close()
            server.close()
    return {"seconds": seconds, "landed_seconds": t_landed, "landed": landed, "published": len(records),
            "decided": _decided(engine, day)}


def measure(backends: tuple[str, ...] = ("nats", "pubsub")) -> list[dict]:
    """One entry per backend: seconds from publish to stored decisions, with the file-drop path as baseline."""
    settings = trained_settings()
    baseline = _file_path(settings)
    entries = []
    for kind in backends:
        r = _bus_path(settings, kind)
        entries.append({"name": f"publish_to_decisions_{kind}", "value": round(r["seconds"], 2), "unit": "s",
                        "baseline": round(baseline["seconds"], 2), "baseline_name": "file drop to decisions",
                        "ratio": round(baseline["seconds"] / r["seconds"], 3),  # >1: faster than the file path
                        "landed_seconds": round(r["landed_seconds"], 2), "claims": r["decided"],
                        "published": r["published"], "landed": r["landed"]})
    return entries


def run(quick: bool = False) -> list[dict]:
    """Entry point for `python -m bench`: both backends (NATS only with `quick`)."""
    return measure(("nats",) if quick else ("nats", "pubsub"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default="nats,pubsub")
    a = p.parse_args(argv)
    entries = measure(tuple(b.strip() for b in a.backends.split(",") if b.strip()))
    print(f"{'benchmark':<30}{'seconds':>9}{'baseline':>10}{'ratio':>7}{'landed in':>11}{'claims':>8}")
    for e in entries:
        print(f"{e['name']:<30}{e['value']:>9.2f}{e['baseline']:>10.2f}{e['ratio']:>7.2f}"
              f"{e['landed_seconds']:>10.2f}s{e['claims']:>8}")
    print("baseline = the same kind of batch dropped as a file and run by the inbox path, in this run")


if __name__ == "__main__":
    main()
