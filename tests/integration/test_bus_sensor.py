"""A day's claims published on a real broker reach decisions: `aios land`'s consumer persists and acks them,
the reconciliation sensor requests the day's run from the stores, the claims job decides them."""

import json

import dagster as dg
import pytest

from aios.kernel.bus_config import Subscription
from aios.usecases.land import land_until_idle
from aios.usecases.datasets import drop_batch
from aios.kernel.db import get_engine
from connectors.stores.decisions import decisions_table, quarantine_table, read_table
from connectors.bus import open_bus
from connectors.inbox import read_claims_file
from connectors.landing import dead_letter_rows, landed_count
from sensors.bus import landed_claims_sensor

try:
    from tests.servers import nats_url, pubsub_emulator, unique_name  # noqa: F401 - fixtures
except ImportError:
    from servers import nats_url, pubsub_emulator, unique_name  # noqa: F401

pytestmark = [pytest.mark.server, pytest.mark.slow]
POISON = [b"not json at all", b'{"claim_id": "P-1", "amount": "lots"}']


def _subscription(kind, request):
    if kind == "nats":
        url = request.getfixturevalue("nats_url")
        return Subscription(name="t_nats", kind="nats", config={"url": url, "stream": unique_name("AIOS_S"),
                                                                 "durable": "landing", "ack_wait_s": 5})
    host = request.getfixturevalue("pubsub_emulator")
    name = unique_name("claims")
    return Subscription(name="t_pubsub", kind="pubsub", config={"project": "aios-test", "topic": name,
                                                                 "subscription": name + "-sub", "emulator_host": host})


@pytest.mark.parametrize("kind,day", [("nats", "2026-11-14"), ("pubsub", "2026-11-13")])
def test_published_claims_are_landed_once_and_decided_per_day(kind, day, request, trained, instance, defs):
    settings = trained
    file = drop_batch(settings, day, malformed=7, fmt="jsonl")
    moved = file.rename(settings.data_dir / file.name)  # the bus carries these claims, not the inbox
    records = [json.dumps({k: v for k, v in r.items() if v is not None and v == v}, default=str).encode()
               for r in read_claims_file(moved).drop(columns=["_source"], errors="ignore").to_dict("records")]
    sub = _subscription(kind, request)
    engine = get_engine(settings.db_url)
    before = landed_count(engine)
    with open_bus(sub.kind, **sub.config) as bus:
        bus.ensure()
        bus.publish_many(records + POISON)
        stats = land_until_idle(bus, engine, idle_s=2.0)
    assert stats.acked == stats.messages >= len(records) + len(POISON)
    sensor_ctx = dg.build_sensor_context(instance=instance, resources=defs.resources)
    requests = [r for r in landed_claims_sensor(sensor_ctx).run_requests or [] if r.partition_key == day]
    landed = landed_count(engine) - before
    dead = dead_letter_rows(engine, bus.source)
    assert len(requests) == 1  # one run for the day, whatever number of batches landed it
    assert any("JSON" in reason or "json" in reason for reason in dead["reason"])
    assert dead["raw_text"].str.contains("not json at all").any()
    # every message accounted for: landed, dead-lettered, or a duplicate claim id (counted, not landed)
    assert landed + len(dead) <= len(records) + len(POISON)
    assert landed > 250
    run = defs.resolve_job_def("claims_job").execute_in_process(partition_key=day, instance=instance,
                                                               raise_on_error=False)
    assert run.success
    decided = read_table(engine, decisions_table, day)
    quarantined = read_table(engine, quarantine_table, day)
    assert len(decided) + len(quarantined) == landed
    from aios.usecases.summary import partition_summary

    summary = partition_summary(settings, day)  # a bus-only day: claims_in comes from the landing store
    assert summary["claims_in"] == landed
    assert summary["claims_in"] == summary["quarantined"] + summary["auto_approve"] + summary["human_review"] \
        + summary["refer_siu"]
    # decided: the next tick requests nothing for the day
    again = landed_claims_sensor(dg.build_sensor_context(instance=instance, resources=defs.resources))
    assert day not in {r.partition_key for r in again.run_requests or []}
