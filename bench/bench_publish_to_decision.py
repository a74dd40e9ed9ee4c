"""Time from publish to stored decisions for a 2,000-claim burst, per bus backend, through the product path.

For each backend: an `aios land` process runs on a fresh topic/stream; one generated day of
2,000 claims is published; the reconciliation sensor's function (`sensors.bus.reconcile`) is
evaluated every SENSOR_INTERVAL_S from the publish on (the worst phase of the daemon's tick), and the run it requests is launched
in a child process (the one launcher's `run_in_child(..., "partition", DAY)`). The clock stops when every
landed claim of the day is decided or quarantined. The bound the issue sets is one sensor
interval plus one run: entries carry the run's own duration to compare. Baseline, measured in
the same run: the same kind of batch dropped as a file into the inbox and run by
`run_in_child(..., "ingest")`. Most of either figure is the Dagster run (process start,
imports of Great Expectations and Evidently), not the bus.

    python -m bench.bench_publish_to_decision [--backends nats,pubsub] [--claims 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid

import sqlalchemy as sa

from aios.usecases.datasets import drop_batch
from aios.kernel.db import get_engine
from connectors.stores.decisions import decisions_table
from aios_assets.launch import child_env, run_in_child
from bench._home import trained_settings
from connectors.bus import open_bus
from connectors.bus.local_servers import ensure_nats_server, ensure_pubsub_emulator, free_port
from connectors.inbox import read_claims_file

from sensors.bus import INTERVAL_S as SENSOR_INTERVAL_S

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


def _bus_path(settings, kind: str, claims: int) -> dict:
    import dagster as dg
    import yaml

    from connectors.landing import journaled_count, landed_count
    from sensors.bus import reconcile

    day = DAYS[kind]
    file = drop_batch(settings, day, malformed=0, fmt="jsonl", per_day=claims,
                      name=f"bus-{uuid.uuid4().hex[:6]}-{day}.jsonl")
    moved = file.rename(settings.data_dir / file.name)  # carried by the bus, not the inbox
    records = [json.dumps({k: v for k, v in r.items() if v is not None and v == v}, default=str).encode()
               for r in read_claims_file(moved).drop(columns=["_source"], errors="ignore").to_dict("records")]
    name = f"bench{uuid.uuid4().hex[:8]}"
    if kind == "nats":
        server = ensure_nats_server()  # started here only if not running; closed (stopped) only then
        config = {"url": f"nats://{server.address}", "stream": name.upper(), "durable": "landing"}
    else:
        server = ensure_pubsub_emulator(port=free_port())  # our own emulator: nobody else's state
        config = {"project": "aios-bench", "topic": name, "subscription": name, "emulator_host": server.address}
    cfg = settings.home / f"bus-{kind}.yaml"
    cfg.write_text(yaml.safe_dump({"max_messages": 2000, "max_seconds": 1,  # as config/bus.yaml
                                   "subscriptions": [{"name": f"bench_{kind}", "kind": kind, "config": config}]}))
    env = {**child_env(settings), "AIOS_BUS_CONFIG": str(cfg), "AIOS_LOG_LEVEL": "WARNING"}
    env.pop("PUBSUB_EMULATOR_HOST", None)
    env.pop("AIOS_PUBSUB_EMULATOR_HOST", None)
    engine = get_engine(settings.db_url)
    bus = open_bus(kind, **config)
    bus.ensure()
    proc = subprocess.Popen([sys.executable, "-m", "aios", "land", "--bus", f"bench_{kind}"], env=env)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    instance = dg.DagsterInstance.get()
    try:
        time.sleep(8)  # the consumer is up and idle before the clock starts (its start-up is not ingress)
        before_j, before_l = journaled_count(engine), landed_count(engine)
        t0 = time.perf_counter()
        bus.publish_many(records)
        t_persisted = t_landed = t_requested = run_s = None
        next_tick = t0 + SENSOR_INTERVAL_S  # the daemon's next tick: worst case, a whole interval after publish
        while time.perf_counter() - t0 < 600:
            if t_persisted is None and journaled_count(engine) - before_j >= len(records):
                t_persisted = time.perf_counter() - t0
            if t_landed is None and landed_count(engine) - before_l >= len(records):
                t_landed = time.perf_counter() - t0
            if time.perf_counter() >= next_tick:
                next_tick += SENSOR_INTERVAL_S
                requests = [r for r in reconcile(instance, engine).run_requests if r.partition_key == day]
                if t_landed is not None and requests:
                    t_requested = time.perf_counter() - t0
                    t_run = time.perf_counter()
                    run_in_child(settings, "partition", day, timeout=600)
                    run_s = time.perf_counter() - t_run
                    break
            time.sleep(0.1)
        seconds = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        instance.dispose()
        try:
            bus.delete()
        finally:
            bus.close()
            server.close()
    return {"seconds": seconds, "persisted_seconds": t_persisted, "landed_seconds": t_landed,
            "requested_seconds": t_requested, "run_seconds": run_s, "published": len(records),
            "decided": _decided(engine, day)}


def measure(backends: tuple[str, ...] = ("nats", "pubsub"), claims: int = 2000) -> list[dict]:
    """One entry per backend: seconds from publish to stored decisions, with the file-drop path as baseline."""
    settings = trained_settings()
    baseline = _file_path(settings)
    entries = []
    for kind in backends:
        r = _bus_path(settings, kind, claims)
        entries.append({"name": f"publish_to_decisions_{kind}", "value": round(r["seconds"], 2), "unit": "s",
                        "baseline": round(baseline["seconds"], 2), "baseline_name": "file drop to decisions",
                        "ratio": round(baseline["seconds"] / r["seconds"], 3),  # >1: faster than the file path
                        "persisted_seconds": _r2(r["persisted_seconds"]), "landed_seconds": _r2(r["landed_seconds"]),
                        "requested_seconds": _r2(r["requested_seconds"]), "run_seconds": _r2(r["run_seconds"]),
                        "bound_seconds": _r2(SENSOR_INTERVAL_S + r["run_seconds"]) if r["run_seconds"] else None,
                        "claims": r["decided"], "published": r["published"]})
    return entries


def _r2(x: float | None) -> float | None:
    return round(x, 2) if x is not None else None


def run(quick: bool = False) -> list[dict]:
    """Entry point for `python -m bench`: both backends (NATS only with `quick`)."""
    return measure(("nats",) if quick else ("nats", "pubsub"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default="nats,pubsub")
    p.add_argument("--claims", type=int, default=2000)
    a = p.parse_args(argv)
    entries = measure(tuple(b.strip() for b in a.backends.split(",") if b.strip()), a.claims)
    print(json.dumps(entries, indent=2))
    print("baseline = the same kind of batch dropped as a file and run by the inbox path, in this run")


if __name__ == "__main__":
    main()
