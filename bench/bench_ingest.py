"""Ingest throughput: messages/s pulled, persisted to the landing store and acknowledged.

For each bus backend (Pub/Sub emulator, NATS JetStream): publish n realistic claims
(~400-byte JSON) to a fresh topic/stream, then time `pull_and_land` ticks (bounded
pull -> one landing transaction -> ack) until all n are persisted and acked. The
landing store is SQLite (the embedded profile) in a temporary directory, or
PostgreSQL with `--store postgres`. Each backend is warmed up first with a throw-away
batch (a freshly started emulator JVM is slow for its first few thousand messages).
Besides wall-clock msg/s, entries carry the time split (pull / land / ack) and the
messages per CPU-second of this process, which varies less on a busy machine.

Baseline: the issue's goal of 5,000 msg/s persisted-and-acknowledged.

`--product` measures the product path instead, per backend in the same run: the broker's
own pull+ack rate (no landing: the ceiling) and the rate of the `aios land` process
(a child process, from its first landed message until all n are persisted and acked);
the ratio is product / broker (goal >= 0.8).

    python -m bench.bench_ingest [--n 20000] [--store sqlite|postgres] [--backends pubsub,nats] [--product]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from connectors.bus import open_bus
from connectors.bus.local_servers import (
    LocalServer,
    ServerUnavailable,
    check_jetstream,
    create_postgres_database,
    drop_postgres_database,
    ensure_nats_server,
    ensure_pubsub_emulator,
    free_port,
)
from connectors.landing import ensure_landing_tables, journaled_count, landed_count, pull_and_land
from models.claim_records import claim_json

BASELINE_MSG_S = 5000
BASELINE_NAME = "goal"
TICK_MAX_MESSAGES = 5000
TICK_TIMEOUT_S = 1.0


def make_claims(n: int, seed: int = 7) -> list[bytes]:
    """n realistic claims as JSON bytes (~400 bytes each, `models.claim_records`), claim ids unique to this
    call (`seed` picks where in the generator's sequence they start)."""
    run = uuid.uuid4().hex[:6]
    return [claim_json(seed * n + i, claim_id=f"CLM-{run}-{i:08d}") for i in range(n)]


class _TimedBus:
    """Delegates to a bus and adds up the time spent in pull and ack (the rest of a tick is landing)."""

    def __init__(self, bus) -> None:
        self.bus, self.pull_s, self.ack_s = bus, 0.0, 0.0
        self.source = bus.source

    def pull(self, max_messages: int, timeout_s: float):
        t = time.perf_counter()
        try:
            return self.bus.pull(max_messages, timeout_s)
        finally:
            self.pull_s += time.perf_counter() - t

    def ack(self, messages) -> None:
        t = time.perf_counter()
        try:
            self.bus.ack(messages)
        finally:
            self.ack_s += time.perf_counter() - t


def _entry(kind: str, value: float | None, **extra) -> dict:
    return {
        "name": f"ingest_{kind}", "value": value, "unit": "msg/s", "baseline": BASELINE_MSG_S,
        "baseline_name": BASELINE_NAME, "ratio": (value / BASELINE_MSG_S) if value else None, **extra,
    }


def _open(kind: str, servers: dict[str, LocalServer]):
    name = f"bench-{uuid.uuid4().hex[:10]}"
    if kind == "pubsub":
        if "pubsub" not in servers:
            # our own emulator on a free port: the shared one on 8085 belongs to whoever started it
            servers["pubsub"] = ensure_pubsub_emulator(port=free_port())
        return open_bus("pubsub", project="aios-bench", topic=name, subscription=name,
                        emulator_host=servers["pubsub"].address, ack_deadline_s=60)
    if kind == "nats":
        if "nats" not in servers:
            servers["nats"] = ensure_nats_server()
            check_jetstream(f"nats://{servers['nats'].address}")
        return open_bus("nats", url=f"nats://{servers['nats'].address}", stream=name.upper().replace("-", "_"),
                        durable="bench", ack_wait_s=60)
    raise ValueError(kind)


def _warm_up(kind: str, servers: dict[str, LocalServer], n: int = 3000) -> None:
    """Publish, pull and ack a throw-away batch: a freshly started emulator (JVM) is slow at first."""
    bus = _open(kind, servers)
    try:
        bus.ensure()
        bus.publish_many(make_claims(n, seed=1))
        got, deadline = 0, time.monotonic() + 30
        while got < n and time.monotonic() < deadline:
            msgs = bus.pull(n - got, 1.0)
            bus.ack(msgs)
            got += len(msgs)
    finally:
        try:
            bus.delete()
        finally:
            bus.close()


def _measure_one(kind: str, n: int, engine: sa.Engine, servers: dict[str, LocalServer]) -> dict:
    _warm_up(kind, servers)
    ensure_landing_tables(engine)
    bus = _open(kind, servers)
    try:
        bus.ensure()
        payloads = make_claims(n)
        t0 = time.perf_counter()
        assert bus.publish_many(payloads) == n
        publish_s = time.perf_counter() - t0

        timed = _TimedBus(bus)
        landed = dups = ticks = 0
        budget = max(120.0, n / 500)  # bounded: never slower than 500 msg/s before giving up
        t0, cpu0 = time.perf_counter(), time.process_time()
        while landed < n and time.perf_counter() - t0 < budget and ticks < 10 * (n // TICK_MAX_MESSAGES + 10):
            r = pull_and_land(timed, engine, bus.source, TICK_MAX_MESSAGES, TICK_TIMEOUT_S)
            landed += r.landed
            dups += r.duplicates
            ticks += 1
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        assert landed_count(engine, bus.source) == landed
        complete = landed == n
        value = n / elapsed if complete else None
        return _entry(kind, value, n=n, landed=landed, duplicates=dups, seconds=round(elapsed, 3), ticks=ticks,
                      tick_max_messages=TICK_MAX_MESSAGES, publish_msg_s=round(n / publish_s),
                      pull_s=round(timed.pull_s, 3), ack_s=round(timed.ack_s, 3),
                      land_s=round(elapsed - timed.pull_s - timed.ack_s, 3),
                      # CPU of this process only (not the broker's): less sensitive to a busy machine
                      cpu_s=round(cpu, 3), msg_per_cpu_s=round(n / cpu) if cpu > 0 else None,
                      store=engine.dialect.name, **({} if complete else {"error": f"only {landed}/{n} landed"}))
    finally:
        try:
            bus.delete()
        finally:
            bus.close()


def measure(n: int = 20_000, backends: tuple[str, ...] = ("pubsub", "nats"), store: str = "sqlite") -> list[dict]:
    """One entry per backend: messages/s persisted (landing store) and acknowledged."""
    servers: dict[str, LocalServer] = {}
    tmp = Path(tempfile.mkdtemp(prefix="aios-bench-ingest-"))
    pg_db: str | None = None
    results: list[dict] = []
    try:
        for kind in backends:
            if store == "postgres":
                if pg_db:
                    drop_postgres_database(pg_db)
                pg_db, url = create_postgres_database(prefix="aios_bench_")
            else:
                url = f"sqlite:///{tmp / f'{kind}.db'}"
            engine = sa.create_engine(url)
            try:
                results.append(_measure_one(kind, n, engine, servers))
            except ServerUnavailable as exc:
                results.append(_entry(kind, None, n=n, error=str(exc)))
            finally:
                engine.dispose()
    finally:
        for s in servers.values():
            s.close()  # only stops servers started here
        if pg_db:
            drop_postgres_database(pg_db)
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def _raw_pull_ack(bus, n: int) -> float:
    """The broker's own rate: pull and ack n messages, nothing persisted (msg/s)."""
    got, t0 = 0, time.perf_counter()
    while got < n and time.perf_counter() - t0 < max(120.0, n / 500):
        msgs = bus.pull(TICK_MAX_MESSAGES, TICK_TIMEOUT_S)
        bus.ack(msgs)
        got += len(msgs)
    return got / (time.perf_counter() - t0) if got == n else 0.0


def _land_process(kind: str, sub_config: dict, n: int, url: str, engine: sa.Engine, tmp: Path) -> dict:
    """Run `aios land --bus <kind>` as a child process until all n are landed; its rate from the first landing."""
    import os
    import subprocess
    import sys

    import yaml

    cfg = tmp / f"bus-{kind}.yaml"
    cfg.write_text(yaml.safe_dump({"max_messages": TICK_MAX_MESSAGES, "max_seconds": 5, "subscriptions": [
        {"name": f"bench_{kind}", "kind": kind, "config": sub_config}]}))
    env = {**os.environ, "AIOS_BUS_CONFIG": str(cfg), "AIOS_DATABASE_URL": url, "OMP_NUM_THREADS": "1",
           "AIOS_LOG_LEVEL": "WARNING"}
    env.pop("AIOS_PUBSUB_EMULATOR_HOST", None)
    env.pop("PUBSUB_EMULATOR_HOST", None)
    proc = subprocess.Popen([sys.executable, "-m", "aios", "land", "--bus", f"bench_{kind}"], env=env)
    try:
        t_first = t_done = t_landed = None
        deadline = time.monotonic() + max(180.0, n / 300)
        while time.monotonic() < deadline and proc.poll() is None:
            count = journaled_count(engine)
            if count and t_first is None:
                t_first = (time.perf_counter(), count)
            if count >= n and t_done is None:
                t_done = time.perf_counter()
            if t_done is not None and landed_count(engine) >= n:
                t_landed = time.perf_counter()
                break
            time.sleep(0.02)
    finally:
        proc.terminate()  # SIGTERM: a clean stop (finish, ack, exit 0)
        rc = proc.wait(timeout=60)
    if t_first is None or t_done is None:
        return {"rate": None, "exit": rc, "error": f"persisted {journaled_count(engine)}/{n}"}
    (t1, c1) = t_first
    return {"rate": (n - c1) / max(t_done - t1, 1e-9), "exit": rc,
            "landed_rate": (n - c1) / max(t_landed - t1, 1e-9) if t_landed else None}


def measure_product(n: int = 20_000, backends: tuple[str, ...] = ("pubsub", "nats"), rounds: int = 3) -> list[dict]:
    """Per backend, same run: the broker's raw pull+ack rate and the `aios land` process rate (PostgreSQL store),
    alternated `rounds` times (this machine is shared: load moves both); the medians and their ratio."""
    import statistics

    servers: dict[str, LocalServer] = {}
    tmp = Path(tempfile.mkdtemp(prefix="aios-bench-land-"))
    out = []
    try:
        for kind in backends:
            try:
                _warm_up(kind, servers)
                raws, lands, landed_rates, exits = [], [], [], []
                for _ in range(rounds):
                    raws.append(_raw_round(kind, n, servers))
                    land = _land_round(kind, n, servers, tmp)
                    lands.append(land["rate"] or 0.0)
                    landed_rates.append(land.get("landed_rate") or 0.0)
                    exits.append(land["exit"])
                raw, value = statistics.median(raws), statistics.median(lands)
                out.append({"name": f"land_process_{kind}", "value": round(value) if value else None, "unit": "msg/s",
                            "baseline": round(raw), "baseline_name": "broker pull+ack, same run",
                            "ratio": round(value / raw, 3) if value and raw else None, "n": n, "rounds": rounds,
                            "raw_rounds": [round(x) for x in raws], "land_rounds": [round(x) for x in lands],
                            "landed_msg_s": round(statistics.median(landed_rates)), "exit_codes": exits})
            except ServerUnavailable as exc:
                out.append({"name": f"land_process_{kind}", "value": None, "error": str(exc), "n": n})
    finally:
        for s in servers.values():
            s.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _raw_round(kind: str, n: int, servers: dict[str, LocalServer]) -> float:
    bus = _open(kind, servers)
    try:
        bus.ensure()
        bus.publish_many(make_claims(n, seed=3))
        return _raw_pull_ack(bus, n)
    finally:
        bus.delete()
        bus.close()


def _land_round(kind: str, n: int, servers: dict[str, LocalServer], tmp: Path) -> dict:
    bus = _open(kind, servers)
    pg_db, url = create_postgres_database(prefix="aios_bench_")
    engine = sa.create_engine(url)
    try:
        bus.ensure()
        bus.publish_many(make_claims(n))
        ensure_landing_tables(engine)
        return _land_process(kind, _sub_config(kind, bus), n, url, engine, tmp)
    finally:
        engine.dispose()
        drop_postgres_database(pg_db)
        bus.delete()
        bus.close()


def _sub_config(kind: str, bus) -> dict:
    if kind == "pubsub":
        import os

        return {"project": bus.project, "topic": bus.topic, "subscription": bus.subscription,
                "emulator_host": os.environ.get("PUBSUB_EMULATOR_HOST"), "ack_deadline_s": 60}
    return {"url": bus.url, "stream": bus.stream, "durable": bus.durable, "ack_wait_s": 60}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--backends", default="pubsub,nats")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")
    p.add_argument("--product", action="store_true", help="the `aios land` process against the broker's raw rate")
    a = p.parse_args(argv)
    if a.product:
        entries = measure_product(a.n, tuple(b.strip() for b in a.backends.split(",") if b.strip()))
        print(json.dumps(entries, indent=2) if a.json else "\n".join(
            f"{e['name']:<20}{e['value'] or '-':>8} msg/s persisted+acked   broker pull+ack {e.get('baseline') or '-':>6} "
            f"msg/s   ratio {e.get('ratio') or '-'}   rounds {e.get('land_rounds')} vs {e.get('raw_rounds')}   "
            f"validated into landed_claims {e.get('landed_msg_s') or '-'} msg/s   exits {e.get('exit_codes')}  "
            f"{e.get('error', '')}" for e in entries))
        return
    entries = measure(a.n, tuple(b.strip() for b in a.backends.split(",") if b.strip()), a.store)
    if a.json:
        print(json.dumps(entries, indent=2))
        return
    print(f"{'benchmark':<16}{'msg/s':>10}{'baseline':>10}{'ratio':>8}{'n':>8}{'seconds':>9}{'ticks':>7}"
          f"{'publish/s':>11}{'pull s':>8}{'land s':>8}{'ack s':>7}{'msg/cpu-s':>11}  store")
    for e in entries:
        if e["value"] is None:
            print(f"{e['name']:<16}{'-':>10}{e['baseline']:>10}{'-':>8}{e['n']:>8}  {e.get('error', '')}")
            continue
        print(f"{e['name']:<16}{e['value']:>10,.0f}{e['baseline']:>10,}{e['ratio']:>8.2f}{e['n']:>8}"
              f"{e['seconds']:>9.2f}{e['ticks']:>7}{e['publish_msg_s']:>11,}{e['pull_s']:>8.2f}{e['land_s']:>8.2f}"
              f"{e['ack_s']:>7.2f}{e['msg_per_cpu_s'] or 0:>11,}  {e['store']}")
    print(f"baseline = the issue's {BASELINE_NAME} of {BASELINE_MSG_S:,} msg/s persisted and acknowledged")


if __name__ == "__main__":
    main()
