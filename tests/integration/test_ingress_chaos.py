"""Ingress under failure, on the real servers: every published claim ends up landed exactly once and its day
gets a run, whatever is killed when.

- `kill -9` of the `aios land` process at random points while it lands;
- a crash between persist and ack (the batch is redelivered);
- the daemon dying between land and run request (the reconciliation sensor still requests the day, once);
- a day republished on the bus and as an inbox file after it was decided;
- a Pub/Sub emulator restart under a running consumer (the emulator loses its topics: we create our own).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from aios.usecases.land import consume, land_until_idle
from connectors.bus import open_bus
from connectors.bus.local_servers import ServerUnavailable, ensure_pubsub_emulator, free_port
from connectors.landing import (
    claim_identities,
    dead_letter_rows,
    journal_backlog,
    journal_batch,
    journaled_count,
    land_batch,
    landed_claims,
)
from models.claim_records import claim_record
from sensors.bus import reconcile

try:
    from tests.servers import nats_url, postgres_url, server_unavailable, unique_name  # noqa: F401
except ImportError:
    from servers import nats_url, postgres_url, server_unavailable, unique_name  # noqa: F401

pytestmark = [pytest.mark.server, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _claims(n: int, prefix: str, day: str = "2026-11-18") -> list[bytes]:
    out = []
    for i in range(n):
        c = claim_record(i, claim_id=f"{prefix}-{i:05d}")
        c["submitted_at"] = f"{day}T{8 + i % 10:02d}:{i % 60:02d}:00+00:00"
        out.append(json.dumps(c).encode())
    return out


def _landed_ids(engine: sa.Engine, prefix: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(landed_claims.c.claim_id).where(
            landed_claims.c.claim_id.like(f"{prefix}-%"))).scalars())


def _registered(engine: sa.Engine, prefix: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(claim_identities).where(
            claim_identities.c.claim_id.like(f"{prefix}-%"))).scalar_one())


def _assert_landed_once_and_requested(engine: sa.Engine, prefix: str, n: int, day: str = "2026-11-18") -> None:
    ids = _landed_ids(engine, prefix)
    assert len(ids) == n and len(set(ids)) == n  # every published claim, exactly once
    assert _registered(engine, prefix) == n
    requests = reconcile(dg.DagsterInstance.ephemeral(), engine).run_requests
    assert day in {r.partition_key for r in requests}  # and its day gets a run


# -- kill -9 of the landing process -------------------------------------------------------------
def _land_env(tmp_path: Path, sub: dict, db_url: str) -> dict[str, str]:
    cfg = tmp_path / "bus.yaml"
    cfg.write_text(yaml.safe_dump({"max_messages": 300, "max_seconds": 2, "subscriptions": [sub]}))
    env = {**os.environ, "AIOS_BUS_CONFIG": str(cfg), "AIOS_DATABASE_URL": db_url, "AIOS_LOG_LEVEL": "WARNING"}
    for k in ("AIOS_PUBSUB_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"):
        env.pop(k, None)
    return env


def _start_land(env: dict[str, str], name: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aios", "land", "--bus", name, *extra], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _published_nats(nats_url: str, postgres_url: str, tmp_path, tag: str, n: int, ack_wait_s: int):
    """`n` claims published on a fresh JetStream stream: (claim id prefix, stores engine, bus source, env of
    `aios land` on that stream)."""
    prefix = f"{tag}{uuid.uuid4().hex[:6]}"
    stream = unique_name(f"AIOS_{tag}").upper().replace("-", "_")
    sub = {"name": "chaos_nats", "kind": "nats",
           "config": {"url": nats_url, "stream": stream, "durable": "landing", "ack_wait_s": ack_wait_s}}
    engine = sa.create_engine(postgres_url)
    with open_bus("nats", **sub["config"]) as bus:
        bus.ensure()
        bus.publish_many(_claims(n, prefix))
        source = bus.source
    return prefix, engine, source, _land_env(tmp_path, sub, postgres_url)


def test_kill_9_of_the_landing_process_at_random_points_loses_and_doubles_nothing(nats_url, postgres_url, tmp_path):
    n = 3000
    prefix, engine, source, env = _published_nats(nats_url, postgres_url, tmp_path, "K9", n, ack_wait_s=2)
    rnd = random.Random(19)
    kills = []
    for _ in range(3):  # kill at a random count of persisted messages, or after a random time
        proc = _start_land(env, "chaos_nats")
        target = journaled_count(engine, source) + rnd.randrange(100, 900)
        deadline = time.monotonic() + rnd.uniform(3.0, 12.0)
        while time.monotonic() < deadline and journaled_count(engine, source) < target and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills.append(journaled_count(engine, source))
    final = _start_land(env, "chaos_nats", "--idle-exit", "6")
    _, err = final.communicate(timeout=240)
    assert final.returncode == 0, err.decode()[-2000:]
    assert journal_backlog(engine).get(source, 0) == 0
    assert dead_letter_rows(engine, source).empty
    _assert_landed_once_and_requested(engine, prefix, n)
    engine.dispose()


def test_sigterm_stops_the_landing_process_cleanly(nats_url, postgres_url, tmp_path):
    n = 1500
    prefix, engine, source, env = _published_nats(nats_url, postgres_url, tmp_path, "ST", n, ack_wait_s=30)
    proc = _start_land(env, "chaos_nats")
    deadline = time.monotonic() + 60
    while journaled_count(engine, source) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    # everything it acked is persisted: a restart with a 30 s ack_wait can only see what was never acked,
    # so all n land without waiting for a redelivery
    final = _start_land(env, "chaos_nats", "--idle-exit", "4")
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()[-2000:]
    _assert_landed_once_and_requested(engine, prefix, n)
    engine.dispose()


# -- a crash between persist and ack ------------------------------------------------------------
@pytest.mark.parametrize("step", ["landed", "journaled"])
def test_a_crash_between_persist_and_ack_redelivers_and_lands_nothing_twice(step, nats_url, postgres_url):
    n, prefix = 400, f"PA{uuid.uuid4().hex[:6]}"
    cfg = {"url": nats_url, "stream": unique_name("AIOS_PA").upper().replace("-", "_"), "durable": "landing",
           "ack_wait_s": 2}
    engine = sa.create_engine(postgres_url)
    with open_bus("nats", **cfg) as bus:
        bus.ensure()
        bus.publish_many(_claims(n, prefix))
        got = []
        while len(got) < n:
            got += bus.pull(n - len(got), 2.0)
        # persisted, then the process "dies" before the ack
        if step == "landed":
            assert land_batch(engine, bus.source, got).landed == n
        else:
            journal_batch(engine, bus.source, got)
    time.sleep(2.5)  # past ack_wait: JetStream redelivers
    with open_bus("nats", **cfg) as bus:
        stats = land_until_idle(bus, engine, idle_s=3.0)
    assert stats.acked >= n
    _assert_landed_once_and_requested(engine, prefix, n)
    engine.dispose()


# -- the daemon dies between land and request; a day republished --------------------------------
def test_a_day_landed_while_the_daemon_was_dead_is_decided_once_and_a_republished_day_changes_nothing(
        nats_url, trained, instance, defs):
    from aios.kernel.db import get_engine
    from aios.usecases.datasets import drop_batch
    from connectors.inbox import read_claims_file
    from connectors.stores.decisions import decisions_table, quarantine_table
    from sensors.bus import landed_claims_sensor
    from sensors.inbox import inbox_sensor

    settings, day = trained, "2026-11-12"
    file = drop_batch(settings, day, malformed=0, fmt="jsonl")
    moved = file.rename(settings.data_dir / file.name)  # published on the bus, not dropped in the inbox
    records = [json.dumps({k: v for k, v in r.items() if v is not None and v == v}, default=str).encode()
               for r in read_claims_file(moved).drop(columns=["_source"], errors="ignore").to_dict("records")]
    engine = get_engine(settings.db_url)
    cfg = {"url": nats_url, "stream": unique_name("AIOS_DD").upper().replace("-", "_"), "durable": "landing"}
    with open_bus("nats", **cfg) as bus:
        bus.ensure()
        bus.publish_many(records)
        land_until_idle(bus, engine, idle_s=2.0)  # landed and acked; the daemon died: no tick ran
    ctx = lambda: dg.build_sensor_context(instance=instance, resources=defs.resources)  # noqa: E731
    first = [r for r in landed_claims_sensor(ctx()).run_requests if r.partition_key == day]
    again = [r for r in landed_claims_sensor(ctx()).run_requests if r.partition_key == day]
    assert len(first) == 1 and [r.run_key for r in again] == [first[0].run_key]  # one run for the content
    run = defs.resolve_job_def("claims_job").execute_in_process(partition_key=day, instance=instance,
                                                               tags=first[0].tags, raise_on_error=False)
    assert run.success

    def outcome() -> tuple[int, int]:
        with engine.connect() as conn:
            d = conn.execute(sa.select(sa.func.count()).select_from(decisions_table).where(
                decisions_table.c.partition == day)).scalar_one()
            q = conn.execute(sa.select(sa.func.count()).select_from(quarantine_table).where(
                quarantine_table.c.partition == day)).scalar_one()
        return int(d), int(q)

    decided = outcome()
    assert sum(decided) == len(records)  # every claim decided or quarantined exactly once
    assert day not in {r.partition_key for r in landed_claims_sensor(ctx()).run_requests}

    # republished: the same claims on the bus again, and the same claims as an inbox file
    with open_bus("nats", **{**cfg, "stream": cfg["stream"] + "_R"}) as bus:
        bus.ensure()
        bus.publish_many(records)
        stats = land_until_idle(bus, engine, idle_s=2.0)
    assert stats.landed == 0 and stats.duplicates == len(records)
    assert day not in {r.partition_key for r in landed_claims_sensor(ctx()).run_requests}
    drop_batch(settings, day, malformed=0, fmt="jsonl")  # the same generated day (same seed) as a file
    ctx_inbox = dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs)
    assert [r.partition_key for r in inbox_sensor(ctx_inbox).run_requests] == [day]
    rerun = defs.resolve_job_def("claims_job").execute_in_process(partition_key=day, instance=instance,
                                                                 raise_on_error=False)
    assert rerun.success  # the quarantine bound holds: duplicates were dropped, not quarantined
    assert outcome() == decided
    raw = rerun.asset_materializations_for_node("raw_claims")[0].metadata
    assert raw["duplicates_across_ingress"].value == len(records)


# -- an emulator restart ------------------------------------------------------------------------
def test_an_emulator_restart_stops_the_consumer_with_an_error_and_a_restart_lands_the_rest(postgres_url):
    try:
        server = ensure_pubsub_emulator(port=free_port(), timeout_s=90)  # our own: restarting it disturbs nobody
    except ServerUnavailable as exc:
        server_unavailable(str(exc))
        return
    engine = sa.create_engine(postgres_url)
    prefix_a, prefix_b = f"EA{uuid.uuid4().hex[:6]}", f"EB{uuid.uuid4().hex[:6]}"
    name = unique_name("chaos")
    cfg = {"project": "aios-chaos", "topic": name, "subscription": name, "emulator_host": server.address,
           "ack_deadline_s": 10}
    try:
        with open_bus("pubsub", **cfg) as bus:
            bus.ensure()
            bus.publish_many(_claims(500, prefix_a))
            stats = land_until_idle(bus, engine, idle_s=2.0)
            assert stats.landed == 500
        # a consumer running when the emulator restarts (and loses topic, subscription and messages)
        stop, errors = threading.Event(), []
        bus = open_bus("pubsub", **cfg)

        def run() -> None:
            try:
                consume(bus, engine, stop, max_messages=200, pull_timeout_s=1.0)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        time.sleep(1.0)
        server.restart(timeout_s=90)
        t.join(timeout=120)
        stop.set()
        assert not t.is_alive() and errors  # it stopped with the broker's error (the supervisor restarts it)
        bus.close()
        # the restarted consumer recreates its topic and subscription and lands what is published now
        with open_bus("pubsub", **cfg) as bus:
            bus.ensure()
            bus.publish_many(_claims(500, prefix_b, day="2026-11-19"))
            stats_b = land_until_idle(bus, engine, idle_s=15.0)  # a just-restarted emulator JVM is slow to deliver
        assert stats_b.landed == 500, (stats_b, errors)
        _assert_landed_once_and_requested(engine, prefix_a, 500)
        _assert_landed_once_and_requested(engine, prefix_b, 500, day="2026-11-19")
    finally:
        engine.dispose()
        server.close()

