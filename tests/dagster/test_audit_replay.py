"""The ledger records a partition's whole decision path; replay recomputes decisions from frozen snapshots."""

import json
import shutil

import pytest
import sqlalchemy as sa

from aios.kernel.db import get_engine
from aios.usecases.replay import counterfactual, replay_claim, replay_partition
from connectors.stores.snapshots import feature_snapshots
from connectors.stores.decisions import decisions_table, read_table
from connectors.stores.ledger import AuditLedger
from governance.policy import POLICY_DIR

pytestmark = pytest.mark.slow
DAY = "2026-11-16"


@pytest.fixture(scope="module")
def day_run(run_day, settings):
    assert run_day(DAY, malformed=7).success
    return get_engine(settings.db_url)


def test_every_step_of_a_paid_claim_is_in_the_ledger_with_versions_and_snapshot(day_run):
    decisions = read_table(day_run, decisions_table, DAY)
    paid = decisions[decisions["route"] == "auto_approve"].iloc[0]
    record = AuditLedger(day_run).claim_record(paid["claim_id"])
    events = [e["event"] for e in record["events"]]
    assert events == ["validated", "score", "posterior", "decision", "payout"]
    assert record["route"] == "auto_approve"
    assert record["snapshot_hash"] == paid["snapshot_hash"]
    assert record["versions"] == json.loads(paid["versions"])
    # the bank's receipt: the pain.001 file (MsgId) and the payment (EndToEndId) its pain.002 acknowledged
    assert record["payouts"][0]["receipt_id"].endswith(f"/payout:{paid['claim_id']}")
    assert record["paid_amount"] == pytest.approx(paid["amount"])
    assert AuditLedger(day_run).verify().ok


def test_quarantined_rows_and_the_ingest_batch_are_recorded(day_run):
    with day_run.connect() as conn:
        rows = conn.exec_driver_sql("select event, payload from audit_ledger where event in "
                                    "('quarantined','ingest_batch')").all()
    mine = [(e, json.loads(p)) for e, p in rows if json.loads(p).get("partition") == DAY]
    assert sum(1 for e, _ in mine if e == "quarantined") == 7
    assert all(p["reasons"] for e, p in mine if e == "quarantined")
    assert sum(1 for e, _ in mine if e == "ingest_batch") == 1


def test_replay_matches_every_decision_of_the_partition(day_run, settings):
    decisions = read_table(day_run, decisions_table, DAY)
    results = replay_partition(settings, DAY)
    assert len(results) == len(decisions)
    assert [r.first_difference for r in results if not r.match] == []


def test_replay_matches_and_a_tampered_snapshot_is_refused(day_run, settings):
    decisions = read_table(day_run, decisions_table, DAY)
    for claim_id in decisions.groupby("route")["claim_id"].first():  # one claim per route, alone
        result = replay_claim(settings, claim_id)
        assert result.match, result.first_difference
    victim = decisions.iloc[0]
    with day_run.begin() as conn:
        payload = conn.execute(sa.select(feature_snapshots.c.payload).where(
            feature_snapshots.c.snapshot_hash == victim["snapshot_hash"])).scalar_one()
        forged = json.loads(payload)
        forged["prior_claims"] = 9.0
        conn.execute(feature_snapshots.update().where(feature_snapshots.c.snapshot_hash == victim["snapshot_hash"])
                     .values(payload=json.dumps(forged)))
    try:
        with pytest.raises(ValueError, match="does not match its hash"):
            replay_claim(settings, victim["claim_id"])
    finally:
        with day_run.begin() as conn:
            conn.execute(feature_snapshots.update().where(
                feature_snapshots.c.snapshot_hash == victim["snapshot_hash"]).values(payload=payload))


def test_counterfactual_with_a_stricter_policy_moves_claims_to_review(day_run, settings, tmp_path):
    stricter = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, stricter)
    routing = stricter / "routing.yaml"
    text = routing.read_text()
    assert "AUTO_APPROVE_MAX_P: 0.04" in text
    routing.write_text(text.replace("AUTO_APPROVE_MAX_P: 0.04", "AUTO_APPROVE_MAX_P: 0.01"))
    same = counterfactual(settings, DAY)
    assert len(same.changes) == 0 and same.before == same.after
    cf = counterfactual(settings, DAY, policy_path=stricter)
    assert len(cf.changes) > 0
    assert set(cf.changes["route_before"]) == {"auto_approve"}
    assert set(cf.changes["route_after"]) == {"human_review"}
    assert cf.after["review_load"] == cf.before["review_load"] + len(cf.changes)
    assert cf.after["automation_rate"] < cf.before["automation_rate"]


def test_model_card_states_live_versions_and_metrics(day_run, settings):
    from aios.usecases.model_card import write_model_card

    text = write_model_card(settings).read_text()
    decisions = read_table(day_run, decisions_table, DAY)
    versions = json.loads(decisions["versions"].iat[0])
    assert versions["classifier"] in text and versions["bayes_net"] in text and versions["policy"] in text
    assert "Expected calibration error" in text and "EU AI Act" in text


def test_a_paid_claims_trace_links_its_spans_from_ingest_to_payout(day_run):
    from aios.kernel.tracing import claim_trace_hex, flush, read_spans

    flush()
    decisions = read_table(day_run, decisions_table, DAY)
    claim_id = decisions.loc[decisions["route"] == "auto_approve", "claim_id"].iat[0]
    trace_hex = "0x" + claim_trace_hex(claim_id)
    spans = [s for s in read_spans() if s["context"]["trace_id"] == trace_hex]
    assert [s["name"] for s in sorted(spans, key=lambda s: s["start_time"])][:1] == ["ingest"]
    assert {"ingest", "validate", "features", "score", "posterior", "decision", "payout"} <= {s["name"] for s in spans}
    assert all(s["attributes"]["claim.id"] == claim_id for s in spans)
    assert len({s["parent_id"] for s in spans}) == 1  # one claim root joins the runs' spans
    # the ledger rows of the claim carry the same trace id
    record = AuditLedger(day_run).claim_record(claim_id)
    assert {e["trace_id"] for e in record["events"]} == {claim_trace_hex(claim_id)}
