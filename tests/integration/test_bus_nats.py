"""NATS JetStream backend against a real nats-server, landing into SQLite."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from models.claim_records import claim_json
from connectors.bus import open_bus
from connectors.bus.nats import NatsBus
from connectors.landing import dead_letter_rows, land_batch, landed_count, pull_and_land

try:
    from tests.servers import land_until, nats_restartable, nats_url, unique_name  # noqa: F401 - fixtures
except ImportError:  # tests/ itself is on sys.path (rootdir conftest, no package)
    from servers import land_until, nats_restartable, nats_url, unique_name  # noqa: F401

pytestmark = pytest.mark.server


@pytest.fixture
def engine(tmp_path):
    e = sa.create_engine(f"sqlite:///{tmp_path / 'landing.db'}")
    yield e
    e.dispose()


def make_bus(url: str, **kw) -> NatsBus:
    bus = open_bus("nats", url=url, stream=unique_name("AIOS_T"), durable="landing", **kw)
    assert isinstance(bus, NatsBus)
    bus.ensure()
    return bus


@pytest.fixture
def bus(nats_url):
    b = make_bus(nats_url, ack_wait_s=2)
    yield b
    try:
        b.delete()
    finally:
        b.close()


def wait_all_acked(bus, budget_s: float = 5.0) -> int:
    """Poll the consumer until nothing is pending or un-acked (bounded); return what is left."""
    deadline = time.monotonic() + budget_s
    while (left := bus.pending()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.mark.timeout(60)
def test_n_published_land_exactly_once(bus, engine):
    n = 2000
    assert bus.publish_many(claim_json(i) for i in range(n)) == n
    results = land_until(bus, engine, n, max_messages=700)
    assert landed_count(engine) == n
    assert sum(r.landed for r in results) == n
    assert sum(r.duplicates + r.dead_lettered for r in results) == 0
    # everything was acked: nothing comes back, not even after ack_wait
    time.sleep(bus.ack_wait_s + 0.5)
    assert bus.pull(100, 0.5) == []
    assert bus.pending() == 0


@pytest.mark.timeout(60)
def test_crash_between_persist_and_ack_redelivers_without_duplicates_or_loss(nats_url, engine):
    n = 500
    stream = unique_name("AIOS_T")
    first = open_bus("nats", url=nats_url, stream=stream, durable="landing", ack_wait_s=2)
    first.ensure()
    try:
        ids = [first.publish(claim_json(i), message_id=f"claim-{i}") for i in range(n)]
        got = first.pull(n, 10)
        assert len(got) == n and sorted(m.message_id for m in got) == sorted(ids)
        r1 = land_batch(engine, first.source, got)  # persisted ...
        assert r1.landed == n
    finally:
        first.close()  # ... and the process dies before acking

    second = open_bus("nats", url=nats_url, stream=stream, durable="landing", ack_wait_s=2)
    try:
        second.ensure()
        redelivered, deadline = [], time.monotonic() + 15
        while len(redelivered) < n and time.monotonic() < deadline:
            redelivered += second.pull(n - len(redelivered), 1.0)
        assert sorted(m.message_id for m in redelivered) == sorted(ids)
        r2 = land_batch(engine, second.source, redelivered)
        assert (r2.landed, r2.duplicates, r2.dead_lettered) == (0, n, 0)
        assert r2.batch_id == r1.batch_id
        second.ack(redelivered)
        assert landed_count(engine) == n
        assert wait_all_acked(second) == 0
    finally:
        second.delete()
        second.close()


@pytest.mark.timeout(90)
def test_broker_restart_mid_stream_loses_nothing(nats_restartable, engine):
    n = 1500
    url = f"nats://{nats_restartable.address}"
    bus = make_bus(url, ack_wait_s=2)
    try:
        assert bus.publish_many(claim_json(i) for i in range(1000)) == 1000
        r = pull_and_land(bus, engine, bus.source, 400, 2.0)
        assert r.landed == 400
        in_flight = bus.pull(300, 2.0)  # delivered, not yet landed nor acked when the broker dies
        assert len(in_flight) == 300

        nats_restartable.restart()

        # the client reconnects by itself; publishing resumes, file storage kept the stream
        assert bus.publish_many(claim_json(i) for i in range(1000, n)) == n - 1000
        land_until(bus, engine, n, budget_s=40, max_messages=500, timeout_s=1.0)
        assert landed_count(engine) == n
        # the in-flight deliveries from before the restart are harmless duplicates now
        late = land_batch(engine, bus.source, in_flight)
        assert late.landed == 0 and late.duplicates == 300
    finally:
        bus.close()


@pytest.mark.timeout(30)
def test_publish_with_same_message_id_is_deduplicated_by_jetstream(bus):
    assert bus.publish(b"{}", message_id="dup-1") == "dup-1"
    assert bus.publish(b"{}", message_id="dup-1") == "dup-1"
    got = bus.pull(10, 0.5)
    assert [m.message_id for m in got] == ["dup-1"]
    bus.ack(got)


@pytest.mark.timeout(30)
def test_pull_is_bounded_in_time_and_count(bus):
    t = time.monotonic()
    assert bus.pull(100, 0.5) == []
    assert time.monotonic() - t < 1.5
    bus.publish_many(claim_json(i) for i in range(50))
    got = bus.pull(20, 5.0)
    assert len(got) == 20
    bus.ack(got)


@pytest.mark.timeout(30)
def test_poison_messages_go_to_dead_letter_with_reason(bus, engine):
    bus.publish(b"not json", message_id="bad-1")
    bus.publish(b'{"claim_id": "C-1"}', message_id="bad-2")
    bus.publish(claim_json(1), message_id="good-1")
    r = pull_and_land(bus, engine, bus.source, 3, 5.0)
    assert (r.landed, r.dead_lettered) == (1, 2)
    reasons = dead_letter_rows(engine).set_index("message_id")["reason"]
    assert reasons["bad-1"].startswith("not JSON") and "policy_id" in reasons["bad-2"]
    assert wait_all_acked(bus) == 0  # dead letters were acked too


@pytest.mark.timeout(30)
def test_ensure_is_idempotent_and_updates_ack_wait(nats_url):
    stream = unique_name("AIOS_T")
    a = open_bus("nats", url=nats_url, stream=stream, durable="landing", ack_wait_s=30)
    try:
        a.ensure()
        a.ensure()
        b = open_bus("nats", url=nats_url, stream=stream, durable="landing", ack_wait_s=3)
        try:
            b.ensure()
            info = b.consumer_info()
            assert info.config.ack_wait == pytest.approx(3)
        finally:
            b.close()
    finally:
        a.delete()
        a.close()
