"""Ingress without servers: bus settings from the environment, one claim identity across inbox and bus,
run requests from durable state (the reconciliation sensor), and the per-partition run queue limit."""

import json
import uuid
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from aios.kernel.bus_config import load_bus_config
from connectors.bus.base import BusMessage
from connectors.landing import (
    claim_identities,
    dead_letter_rows,
    decode_batch,
    dedupe_across_ingress,
    encode_batch,
    journal_backlog,
    journal_batch,
    land_batch,
    land_journal,
    landed_count,
    undecided_days,
)
from connectors.stores.decisions import decisions_table, quarantine_table
from sensors.bus import COVERS_TAG, reconcile

DAY = "2026-11-18"  # claim_dict's submission days start here


def _claim(i: int, **over) -> dict:
    c = {"claim_id": f"C-{i}", "policy_id": "P-1", "customer_id": "U-1", "submitted_at": f"{DAY}T08:00:00+00:00",
         "incident_date": "2026-11-01", "claim_type": "auto", "amount": 120.5 + i, "currency": "EUR",
         "channel": "web", "customer_tenure_days": 300, "prior_claims": 0, "description": "dent",
         "document_refs": ["d.jpg"]}
    c.update(over)
    return c


def _msgs(claims: list[dict]) -> list[BusMessage]:
    return [BusMessage(message_id=uuid.uuid4().hex, data=json.dumps(c).encode()) for c in claims]


@pytest.fixture
def engine(tmp_path):
    e = sa.create_engine(f"sqlite:///{tmp_path / 'stores.db'}")
    yield e
    e.dispose()


# -- configuration ------------------------------------------------------------------------------
BUS_YAML = """
max_messages: 100
subscriptions:
  - name: claims_pubsub
    kind: pubsub
    config: {project: p, topic: t, subscription: s, emulator_host: "127.0.0.1:8085"}
  - name: claims_nats
    kind: nats
    config: {url: "nats://127.0.0.1:4222", stream: S, durable: d}
"""


def test_every_bus_setting_is_overridable_by_the_environment(tmp_path: Path):
    path = tmp_path / "bus.yaml"
    path.write_text(BUS_YAML)
    env = {"AIOS_BUS_CONFIG": str(path), "AIOS_PUBSUB_EMULATOR_HOST": "10.0.0.5:8681",
           "AIOS_NATS_URL": "nats://nats.internal:4222", "AIOS_BUS_MAX_MESSAGES": "5000",
           "AIOS_BUS_CLAIMS_PUBSUB_TOPIC": "claims-eu", "AIOS_BUS_CLAIMS_NATS_ACK_WAIT_S": "30"}
    cfg = load_bus_config(env=env)
    assert cfg.path == str(path) and cfg.max_messages == 5000
    ps, nats = cfg.by_kind("pubsub").config, cfg.by_kind("nats").config
    assert ps["emulator_host"] == "10.0.0.5:8681" and ps["topic"] == "claims-eu"
    assert nats["url"] == "nats://nats.internal:4222" and nats["ack_wait_s"] == 30


def test_google_emulator_variable_is_honoured_and_empty_means_real_pubsub(tmp_path: Path):
    path = tmp_path / "bus.yaml"
    path.write_text(BUS_YAML)
    assert load_bus_config(path, env={"PUBSUB_EMULATOR_HOST": "127.0.0.1:9999"}).by_kind(
        "pubsub").config["emulator_host"] == "127.0.0.1:9999"
    assert load_bus_config(path, env={"AIOS_PUBSUB_EMULATOR_HOST": "", "PUBSUB_EMULATOR_HOST": "x:1"}).by_kind(
        "pubsub").config["emulator_host"] is None
    assert load_bus_config(path, env={}).by_kind("pubsub").config["emulator_host"] == "127.0.0.1:8085"


def test_unknown_subscription_names_the_configured_ones(tmp_path: Path):
    path = tmp_path / "bus.yaml"
    path.write_text(BUS_YAML)
    with pytest.raises(LookupError, match="claims_pubsub"):
        load_bus_config(path, env={}).by_name_or_kind("kafka")


# -- one identity per claim id ------------------------------------------------------------------
def test_same_claim_from_two_buses_is_a_counted_duplicate_and_other_content_is_dead_lettered(engine):
    first = land_batch(engine, "pubsub:p/s", _msgs([_claim(1), _claim(2)]))
    assert first.landed == 2
    again = land_batch(engine, "nats:S/d", _msgs([_claim(1), _claim(2, amount=999.0)]))
    assert (again.landed, again.duplicates, again.dead_lettered) == (0, 1, 1)
    dead = dead_letter_rows(engine, "nats:S/d")
    assert "'C-2' was already received from pubsub:p/s with different content" in dead["reason"].iat[0]
    assert landed_count(engine) == 2


def test_redelivered_batch_lands_nothing_new(engine):
    msgs = _msgs([_claim(i) for i in range(5)])
    assert land_batch(engine, "nats:S/d", msgs).landed == 5
    again = land_batch(engine, "nats:S/d", msgs)
    assert (again.landed, again.duplicates, again.dead_lettered) == (0, 5, 0)


def test_inbox_rows_already_on_the_bus_are_dropped_and_conflicting_ones_flagged_for_quarantine(engine):
    land_batch(engine, "pubsub:p/s", _msgs([_claim(1), _claim(2)]))
    # a CSV carries strings: the same claim validates to the same content
    rows = [{k: (";".join(v) if isinstance(v, list) else str(v)) for k, v in _claim(i).items()} for i in (1, 3)]
    rows.append({**rows[0], "claim_id": "C-2", "amount": "5.0"})
    raw = pd.DataFrame(rows)
    raw["_source"] = f"claims-{DAY}.csv"
    out, dropped = dedupe_across_ingress(engine, raw, DAY)
    assert dropped == 1
    assert list(out["claim_id"]) == ["C-3", "C-2"]
    assert out["_reject"].iat[0] is None and "already received from pubsub:p/s" in out["_reject"].iat[1]
    # a re-run of the same day registers nothing new and keeps its own rows
    out2, dropped2 = dedupe_across_ingress(engine, raw, DAY)
    assert dropped2 == 1 and list(out2["claim_id"]) == ["C-3", "C-2"]


def test_validation_quarantines_a_rejected_row_with_its_reason():
    from models.validation import validate_claims

    row = {k: (";".join(v) if isinstance(v, list) else v) for k, v in _claim(7).items()}
    raw = pd.DataFrame([{**row, "_source": "f.csv", "_reject": "claim_id: 'C-7' was already received from api"}])
    result = validate_claims(raw)
    assert result.valid.empty
    assert result.quarantined["reasons"].iat[0] == ["claim_id: 'C-7' was already received from api"]


# -- the journal --------------------------------------------------------------------------------
def test_journal_round_trips_the_batch_and_lands_it_once(engine):
    msgs = _msgs([_claim(i) for i in range(3)]) + [BusMessage(message_id="m-bad", data=b"\x00\xffnot json")]
    assert [(m.message_id, m.data) for m in decode_batch(encode_batch(msgs))] == [(m.message_id, m.data) for m in msgs]
    journal_batch(engine, "nats:S/d", msgs)
    assert journal_backlog(engine) == {"nats:S/d": 4}
    [r] = land_journal(engine, "nats:S/d")
    assert (r.landed, r.dead_lettered) == (3, 1)
    assert journal_backlog(engine) == {} and land_journal(engine, "nats:S/d") == []


# -- run requests from durable state ------------------------------------------------------------
def _add_run(instance, day: str, status: dg.DagsterRunStatus, covers: int | None = None) -> None:
    tags = {"dagster/partition": day, **({COVERS_TAG: str(covers)} if covers is not None else {})}
    instance.add_run(dg.DagsterRun(job_name="claims_job", run_id=str(uuid.uuid4()), status=status, tags=tags))


def test_a_landed_day_that_no_tick_requested_is_requested_from_the_stores(engine):
    instance = dg.DagsterInstance.ephemeral()
    land_batch(engine, "nats:S/d", _msgs([_claim(i) for i in range(4)]))
    # the daemon "died" between land/ack and the run request: nothing requested it; a later tick does
    first = reconcile(instance, engine)
    [req] = first.run_requests
    assert req.partition_key == DAY and req.tags[COVERS_TAG] == "4"
    # same content, same run key: Dagster launches it once however many ticks see it
    assert [r.run_key for r in reconcile(instance, engine).run_requests] == [req.run_key]


def test_a_day_with_a_queued_run_is_not_requested_again(engine):
    instance = dg.DagsterInstance.ephemeral()
    land_batch(engine, "nats:S/d", _msgs([_claim(1)]))
    # NOT_STARTED: requested, not launched (a QUEUED run needs a code location origin; both count as waiting)
    _add_run(instance, DAY, dg.DagsterRunStatus.NOT_STARTED)
    land_batch(engine, "nats:S/d", _msgs([_claim(2)]))  # lands while the run waits: it will read it too
    result = reconcile(instance, engine)
    assert not result.run_requests and "queued" in result.skip_reason.skip_message


def test_a_running_run_covers_what_landed_before_it_and_not_after(engine):
    instance = dg.DagsterInstance.ephemeral()
    land_batch(engine, "nats:S/d", _msgs([_claim(1), _claim(2)]))
    [day] = undecided_days(engine)
    _add_run(instance, DAY, dg.DagsterRunStatus.STARTED, covers=day.max_seq)
    assert not reconcile(instance, engine).run_requests
    land_batch(engine, "nats:S/d", _msgs([_claim(3)]))
    [req] = reconcile(instance, engine).run_requests
    assert req.tags[COVERS_TAG] == str(day.max_seq + 1)


def test_decided_and_quarantined_claims_need_no_run(engine):
    instance = dg.DagsterInstance.ephemeral()
    land_batch(engine, "nats:S/d", _msgs([_claim(1), _claim(2)]))
    undecided_days(engine)  # creates the decision store's tables, as the stores resource does
    with engine.begin() as conn:
        conn.execute(decisions_table.insert().values(
            claim_id="C-1", partition=DAY, amount=1, currency="EUR", score=0, p_fraud=0, p_fraud_low=0,
            p_fraud_high=0, route="auto_approve", rationale="", uncertainty_drivers="", versions="{}",
            snapshot_hash="h", decided_at="t"))
        conn.execute(quarantine_table.insert().values(partition=DAY, claim_id="C-2", source="s", reasons="[]",
                                                      raw="{}", quarantined_at="t"))
    assert undecided_days(engine) == []
    assert not reconcile(instance, engine).run_requests


def test_days_outside_the_partitions_are_reported_not_requested(engine):
    instance = dg.DagsterInstance.ephemeral()
    land_batch(engine, "nats:S/d", _msgs([_claim(1, submitted_at="2019-01-01T00:00:00+00:00")]))
    result = reconcile(instance, engine)
    assert not result.run_requests and "2019-01-01: not a partition" in result.skip_reason.skip_message


def test_registrations_are_ordered_so_run_keys_follow_the_content(engine):
    land_batch(engine, "nats:S/d", _msgs([_claim(1)]))
    k1 = undecided_days(engine)[0].run_key
    land_batch(engine, "nats:S/d", _msgs([_claim(2)]))
    k2 = undecided_days(engine)[0].run_key
    assert k1 != k2
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(claim_identities)).scalar_one() == 2


# -- the run queue ------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["production", "embedded"])
def test_dagster_yaml_allows_one_run_per_partition_at_a_time(tmp_path, which, monkeypatch):
    from aios.usecases.production import write_dagster_yaml, write_embedded_dagster_yaml

    if which == "production":
        path = write_dagster_yaml(tmp_path, "postgresql+psycopg2://postgres@127.0.0.1:5432/none")
        text = path.read_text()
        # only the run queue is checked here: the storage section needs a live database
        text = text[text.index("run_coordinator:"):]
        path.write_text(text)
    else:
        write_embedded_dagster_yaml(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = dg.DagsterInstance.get()
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
    finally:
        instance.dispose()
