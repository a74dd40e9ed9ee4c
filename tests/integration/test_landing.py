"""The landing store: persist durably, dedupe by message id and claim id, dead-letter the malformed."""

from __future__ import annotations

import base64
import json

import pytest
import sqlalchemy as sa

from models.claim_records import claim_json, claim_record
from connectors.bus.base import BusMessage
from connectors.landing import (
    CLAIM_COLUMNS,
    batch_id_for,
    batch_rows,
    dead_letter_rows,
    land_batch,
    landed_count,
    read_batch,
    read_partition,
)

try:
    from tests.servers import postgres_url  # noqa: F401 - fixture
except ImportError:  # tests/ itself is on sys.path (rootdir conftest, no package)
    from servers import postgres_url  # noqa: F401

SRC = "test:landing"


def msgs(n: int, start: int = 0, prefix: str = "m") -> list[BusMessage]:
    return [BusMessage(f"{prefix}{i}", claim_json(i), {}, None) for i in range(start, start + n)]


@pytest.fixture
def sqlite_engine(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'landing.db'}")
    yield engine
    engine.dispose()


@pytest.mark.timeout(30)
def test_n_published_land_exactly_once_and_read_back(sqlite_engine):
    batch = msgs(300)
    r = land_batch(sqlite_engine, SRC, batch)
    assert (r.landed, r.duplicates, r.dead_lettered, r.messages) == (300, 0, 0, 300)
    assert sum(r.partitions.values()) == 300
    assert set(r.partitions) == {"2026-11-18", "2026-11-19", "2026-11-20"}

    df = read_batch(sqlite_engine, r.batch_id)
    assert list(df.columns) == list(CLAIM_COLUMNS)
    assert len(df) == 300 and df["claim_id"].is_unique
    assert df.loc[0, "document_refs"] == ["doc-0-photo.jpg", "doc-0-form.pdf"]
    part = read_partition(sqlite_engine, "2026-11-19", with_meta=True)
    assert len(part) == r.partitions["2026-11-19"]
    assert set(part["partition"]) == {"2026-11-19"} and set(part["batch_id"]) == {r.batch_id}


@pytest.mark.timeout(30)
def test_landing_same_messages_twice_is_idempotent_sqlite(sqlite_engine):
    _assert_idempotent(sqlite_engine)


@pytest.mark.server
@pytest.mark.timeout(60)
def test_landing_same_messages_twice_is_idempotent_postgres(postgres_url):
    engine = sa.create_engine(postgres_url)
    try:
        _assert_idempotent(engine)
    finally:
        engine.dispose()


def _assert_idempotent(engine) -> None:
    batch = msgs(1200) + [BusMessage("bad-1", b"{oops", {}, None)]
    first = land_batch(engine, SRC, batch)
    assert (first.landed, first.duplicates, first.dead_lettered) == (1200, 0, 1)
    # crash before ack -> the same messages come back, in another order
    again = land_batch(engine, SRC, list(reversed(batch)))
    assert again.batch_id == first.batch_id
    assert (again.landed, again.duplicates, again.dead_lettered) == (0, 1201, 0)
    assert again.partitions == {}
    assert landed_count(engine, SRC) == 1200
    assert len(dead_letter_rows(engine, SRC)) == 1
    batches = batch_rows(engine)
    assert list(batches["batch_id"]) == [first.batch_id]
    assert int(batches.loc[0, "landed"]) == 1200  # the log keeps what the first landing did
    # a later, overlapping batch lands only what is new
    third = land_batch(engine, SRC, msgs(100, start=1150))
    assert (third.landed, third.duplicates) == (50, 50)
    assert landed_count(engine) == 1250


@pytest.mark.timeout(30)
def test_poison_messages_go_to_dead_letter_with_reason(sqlite_engine):
    missing = claim_record(1)
    del missing["policy_id"]
    wrong_type = claim_record(2)
    wrong_type["amount"] = "a lot"
    bad_date = claim_record(3)
    bad_date["incident_date"] = "yesterday-ish"
    poison = [
        BusMessage("p-notjson", b"\xff\xfe not json at all", {}, None),
        BusMessage("p-array", b'[{"claim_id": "x"}]', {}, None),
        BusMessage("p-missing", json.dumps(missing).encode(), {}, None),
        BusMessage("p-type", json.dumps(wrong_type).encode(), {}, None),
        BusMessage("p-date", json.dumps(bad_date).encode(), {}, None),
        BusMessage("p-empty", b"", {}, None),
    ]
    good = msgs(3, start=10)
    r = land_batch(sqlite_engine, SRC, poison + good)
    assert (r.landed, r.dead_lettered, r.duplicates) == (3, 6, 0)

    dl = dead_letter_rows(sqlite_engine).set_index("message_id")
    reasons = dl["reason"].to_dict()
    assert reasons["p-notjson"].startswith("not JSON")
    assert reasons["p-empty"].startswith("not JSON")
    assert reasons["p-array"].startswith("not a JSON object")
    assert reasons["p-missing"].startswith("policy_id:")
    assert reasons["p-type"].startswith("amount:")
    assert reasons["p-date"].startswith("incident_date:")
    # the exact bytes are kept, and a readable text version
    assert base64.b64decode(dl.loc["p-notjson", "raw_b64"]) == b"\xff\xfe not json at all"
    assert "not json at all" in dl.loc["p-notjson", "raw_text"]
    assert set(dl["batch_id"]) == {r.batch_id}

    # redelivered poison is a duplicate, not a second dead letter
    again = land_batch(sqlite_engine, SRC, poison)
    assert (again.dead_lettered, again.duplicates) == (0, 6)
    assert len(dead_letter_rows(sqlite_engine)) == 6


@pytest.mark.timeout(30)
def test_duplicate_claim_id_with_new_message_id_is_counted_not_landed(sqlite_engine):
    first = land_batch(sqlite_engine, SRC, msgs(10))
    assert first.landed == 10
    # the producer re-sent claims 3..4 under new message ids, and one twice inside the batch
    resent = [BusMessage(f"new-{i}", claim_json(i), {}, None) for i in (3, 4)]
    within = [BusMessage("x-1", claim_json(50), {}, None), BusMessage("x-2", claim_json(50), {}, None)]
    r = land_batch(sqlite_engine, SRC, resent + within)
    assert (r.landed, r.duplicates, r.dead_lettered) == (1, 3, 0)
    assert landed_count(sqlite_engine) == 11
    df = read_batch(sqlite_engine, r.batch_id, with_meta=True)
    assert list(df["message_id"]) == ["x-1"]


def test_batch_id_is_deterministic_from_sorted_message_ids():
    a = batch_id_for(SRC, ["3", "1", "2"])
    assert a == batch_id_for(SRC, ["1", "2", "3"]) == batch_id_for(SRC, ["2", "3", "1", "1"])
    assert a != batch_id_for(SRC, ["1", "2"]) and a != batch_id_for("other", ["1", "2", "3"])


@pytest.mark.timeout(30)
def test_same_message_id_from_another_source_is_a_different_message(sqlite_engine):
    land_batch(sqlite_engine, "a", [BusMessage("1", claim_json(1), {}, None)])
    r = land_batch(sqlite_engine, "b", [BusMessage("1", claim_json(2), {}, None)])
    assert r.landed == 1


@pytest.mark.server
@pytest.mark.timeout(60)
def test_a_row_the_database_refuses_is_dead_lettered_not_blocking_postgres(postgres_url, monkeypatch):
    """A value PostgreSQL refuses must not wedge the stream: the batch is retried row by row."""
    import connectors.landing as landing

    engine = sa.create_engine(postgres_url)
    real = landing._insert_returning_driver

    def refuse_one(conn, table, rows, returning, driver):
        if table is landing.landed_claims and any(r["claim_id"] == "CLM-00005003" for r in rows):
            rows = [dict(r, partition="not-a-date-and-far-too-long") if r["claim_id"] == "CLM-00005003" else r
                    for r in rows]  # varchar(10) overflow -> DataError, as a real bad value would
        return real(conn, table, rows, returning, driver)

    monkeypatch.setattr(landing, "_insert_returning_driver", refuse_one)
    try:
        r = land_batch(engine, "test:refuse", msgs(5, start=5000, prefix="r"))
        assert (r.landed, r.dead_lettered, r.duplicates) == (4, 1, 0)
        dl = dead_letter_rows(engine, "test:refuse")
        assert list(dl["message_id"]) == ["r5003"]
        assert dl.loc[0, "reason"].startswith("database refused the claim")
        assert landed_count(engine, "test:refuse") == 4
    finally:
        engine.dispose()
