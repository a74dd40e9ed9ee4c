"""Google Cloud Pub/Sub backend against the real Pub/Sub emulator, landing into SQLite.

No broker-restart test here, by design: the emulator keeps everything in memory and a
restart loses all topics, subscriptions and messages (DESIGN.md), which says nothing
about Pub/Sub itself (a managed, replicated service that never restarts from the
client's point of view). What the client *can* live through is its own restart or
reconnect mid-stream: `test_subscriber_reconnect_mid_stream_loses_nothing` closes
the clients while messages are leased and un-acked, publishes more, and opens new
clients, which must land everything exactly once.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from models.claim_records import claim_json
from connectors.bus import open_bus
from connectors.bus.pubsub import PubSubBus
from connectors.landing import dead_letter_rows, land_batch, landed_count, pull_and_land

try:
    from tests.servers import land_until, pubsub_emulator, unique_name  # noqa: F401 - fixture
except ImportError:  # tests/ itself is on sys.path (rootdir conftest, no package)
    from servers import land_until, pubsub_emulator, unique_name  # noqa: F401

pytestmark = pytest.mark.server
PROJECT = "aios-test"
ACK_DEADLINE_S = 10  # the emulator's minimum


@pytest.fixture
def engine(tmp_path):
    e = sa.create_engine(f"sqlite:///{tmp_path / 'landing.db'}")
    yield e
    e.dispose()


def open_pubsub(host: str, topic: str, sub: str) -> PubSubBus:
    bus = open_bus("pubsub", project=PROJECT, topic=topic, subscription=sub, emulator_host=host,
                   ack_deadline_s=ACK_DEADLINE_S)
    assert isinstance(bus, PubSubBus)
    bus.ensure()
    return bus


@pytest.fixture
def names():
    return unique_name("aios-topic"), unique_name("aios-sub")


@pytest.fixture
def bus(pubsub_emulator, names):
    b = open_pubsub(pubsub_emulator, *names)
    yield b
    try:
        b.delete()
    finally:
        b.close()


@pytest.mark.timeout(60)
def test_n_published_land_exactly_once(bus, engine):
    n = 2000
    assert bus.publish_many(claim_json(i) for i in range(n)) == n
    results = land_until(bus, engine, n, max_messages=700)
    assert landed_count(engine) == n
    assert sum(r.landed for r in results) == n
    assert sum(r.duplicates + r.dead_lettered for r in results) == 0
    # everything was acked: nothing comes back once the ack deadline has passed
    time.sleep(ACK_DEADLINE_S + 1)
    assert bus.pull(100, 2.0) == []


@pytest.mark.timeout(60)
def test_crash_between_persist_and_ack_redelivers_without_duplicates_or_loss(pubsub_emulator, names, engine):
    n = 500
    first = open_pubsub(pubsub_emulator, *names)
    try:
        first.publish_many(claim_json(i) for i in range(n))
        got = first.pull(n, 10)
        assert len(got) == n
        ids = sorted(m.message_id for m in got)
        r1 = land_batch(engine, first.source, got)  # persisted ...
        assert r1.landed == n
    finally:
        first.close()  # ... and the process dies before acking

    second = open_pubsub(pubsub_emulator, *names)
    try:
        redelivered, deadline = [], time.monotonic() + ACK_DEADLINE_S + 15
        while len(redelivered) < n and time.monotonic() < deadline:
            redelivered += second.pull(n - len(redelivered), 2.0)
        assert sorted(m.message_id for m in redelivered) == ids  # same ids, new ack ids
        r2 = land_batch(engine, second.source, redelivered)
        assert (r2.landed, r2.duplicates, r2.dead_lettered) == (0, n, 0)
        assert r2.batch_id == r1.batch_id
        second.ack(redelivered)
        assert landed_count(engine) == n
        time.sleep(ACK_DEADLINE_S + 1)  # acked: nothing is redelivered after the deadline
        assert second.pull(10, 2.0) == []
    finally:
        second.delete()
        second.close()


@pytest.mark.timeout(60)
def test_subscriber_reconnect_mid_stream_loses_nothing(pubsub_emulator, names, engine):
    first = open_pubsub(pubsub_emulator, *names)
    try:
        first.publish_many(claim_json(i) for i in range(1000))
        r = pull_and_land(first, engine, first.source, 400, 5.0)
        assert r.landed == 400
        leased = first.pull(100, 5.0)  # leased, not landed, not acked when the client goes away
        assert len(leased) == 100
    finally:
        first.close()

    second = open_pubsub(pubsub_emulator, *names)  # a new process, new channels
    try:
        second.publish_many(claim_json(i) for i in range(1000, 1500))  # the stream goes on meanwhile
        land_until(second, engine, 1500, budget_s=40, max_messages=500)
        assert landed_count(engine) == 1500
        late = land_batch(engine, second.source, leased)
        assert late.landed == 0 and late.duplicates == 100
    finally:
        second.delete()
        second.close()


@pytest.mark.timeout(60)
def test_poison_messages_go_to_dead_letter_with_reason(bus, engine):
    bus.publish(b"\x00\xff not json")
    bus.publish(b'{"claim_id": "C-1", "amount": "lots"}')
    bus.publish(claim_json(7))
    r = pull_and_land(bus, engine, bus.source, 3, 5.0)
    assert (r.landed, r.dead_lettered, r.duplicates) == (1, 2, 0)
    dl = dead_letter_rows(engine)
    by_raw = dict(zip(dl["raw_b64"], dl["reason"]))
    assert by_raw["AP8gbm90IGpzb24="].startswith("not JSON")  # base64 of the exact bytes
    field_reason = next(r for r in dl["reason"] if not r.startswith("not JSON"))
    assert "policy_id: Field required" in field_reason and "amount: " in field_reason
    time.sleep(ACK_DEADLINE_S + 1)  # an un-acked message would be redelivered by now
    assert bus.pull(10, 2.0) == []  # dead letters were acked too


@pytest.mark.timeout(30)
def test_duplicate_claim_id_with_new_message_id_is_counted_not_landed(bus, engine):
    first_id = bus.publish(claim_json(1), message_id="producer-1")
    second_id = bus.publish(claim_json(1), message_id="producer-1-retry")
    assert first_id != second_id
    r = pull_and_land(bus, engine, bus.source, 2, 5.0)
    assert (r.landed, r.duplicates) == (1, 1)
    assert landed_count(engine) == 1


@pytest.mark.timeout(30)
def test_pull_is_bounded_in_time_and_count(bus):
    t = time.monotonic()
    assert bus.pull(100, 0.5) == []
    assert time.monotonic() - t < 1.5
    bus.publish_many(claim_json(i) for i in range(250))
    got = bus.pull(220, 5.0)  # more than one emulator pull (<=100 each)
    assert len(got) == 220
    bus.ack(got)
    bus.ensure()  # idempotent
