"""One partition end to end through Dagster, in process: counts, idempotent payouts, the drift gate."""

import dagster as dg
import pytest
import sqlalchemy as sa

from aios.kernel.db import get_engine
from connectors.stores.decisions import decisions_table, quarantine_table, read_table
from aios.usecases.summary import partition_summary
from connectors.payout import payouts_table

pytestmark = pytest.mark.slow


def _count(engine, table, day):
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c.partition == day)).scalar_one()


def test_partition_counts_add_up_and_only_auto_approved_claims_are_paid(run_day, settings):
    day = "2026-11-20"
    result = run_day(day, malformed=7)
    assert result.success
    s = partition_summary(settings, day)
    assert s["claims_in"] > 250
    assert s["claims_in"] == s["quarantined"] + s["auto_approve"] + s["human_review"] + s["refer_siu"]
    assert s["quarantined"] == 7
    assert s["paid"] == s["auto_approve"] > 0
    assert s["human_review"] > 0 and s["refer_siu"] > 0
    assert s["drift_detected"] is False
    assert set(s["versions"]) == {"classifier", "bayes_net", "policy", "features", "modules"}
    engine = get_engine(settings.db_url)
    decisions = read_table(engine, decisions_table, day)
    paid = {r["claim_id"] for r in read_table(engine, payouts_table, day).to_dict("records")}
    assert paid == set(decisions.loc[decisions["route"] == "auto_approve", "claim_id"])


def test_materializing_payouts_again_pays_nothing_more(run_day, settings, defs, instance):
    day = "2026-11-19"
    assert run_day(day).success
    engine = get_engine(settings.db_url)
    paid_before = _count(engine, payouts_table, day)
    assert paid_before > 0
    again = defs.resolve_job_def("claims_job").execute_in_process(
        partition_key=day, instance=instance, asset_selection=[dg.AssetKey("payouts")])
    assert again.success
    meta = again.asset_materializations_for_node("payouts")[0].metadata
    assert meta["paid"].value == 0 and meta["already_paid"].value == paid_before
    assert _count(engine, payouts_table, day) == paid_before


def test_injected_drift_blocks_the_payout_and_names_the_drifted_columns(run_day, settings, defs, instance):
    day = "2026-11-18"
    result = run_day(day, drift=True, malformed=0)
    drift = [e for e in result.get_asset_check_evaluations() if e.check_name == "drift"]
    assert len(drift) == 1 and not drift[0].passed
    drifted = drift[0].metadata["drifted_columns"].value
    assert {"amount_log", "report_delay_days", "channel"} <= set(drifted)
    assert "amount_log" in drift[0].description
    engine = get_engine(settings.db_url)
    assert _count(engine, payouts_table, day) == 0
    # The same partition scored and paid in a separate run (no check in it): the payout code refuses.
    separate = defs.resolve_job_def("claims_job").execute_in_process(
        partition_key=day, instance=instance, raise_on_error=False,
        asset_selection=[dg.AssetKey(k) for k in ("fraud_scores", "fraud_posteriors", "decisions", "payouts")])
    assert not separate.success
    assert _count(engine, decisions_table, day) > 0
    failures = [e for e in separate.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["payouts"]
    assert "drift failed" in failures[0].event_specific_data.error.message
    assert _count(engine, payouts_table, day) == 0


def test_quarantine_keeps_every_malformed_row_with_its_reason(run_day, settings):
    day = "2026-11-17"
    run_day(day, malformed=7, fmt="jsonl")
    engine = get_engine(settings.db_url)
    q = read_table(engine, quarantine_table, day)
    assert len(q) == 7
    reasons = " | ".join(q["reasons"])
    for expected in ("amount: Field required", "incident_date:", "claim_id: duplicate", "currency:",
                     "amount: Input should be a valid number", "report_delay_days:"):
        assert expected in reasons
    assert _count(engine, decisions_table, day) + len(q) == partition_summary(settings, day)["claims_in"]


def test_a_claim_once_put_before_people_is_not_auto_paid_on_a_rerun(tmp_path):
    """A re-run that now routes a reviewed (here: rejected) claim to auto_approve does not pay it."""
    import pandas as pd

    from connectors.stores.decisions import enqueue_reviews, review_cases
    from aios_assets.claims import payouts
    from aios_resources import PayoutResource, StoresResource
    from connectors.stores.gates import record_gate

    url = f"sqlite:///{tmp_path / 'p.db'}"
    day = "2026-10-01"
    engine = get_engine(url)
    stores = StoresResource(database_url=url)
    stores.engine()
    for gate in ("data_quality", "drift"):
        record_gate(engine, day, gate, True, "ok")
    first = pd.DataFrame({"claim_id": ["A", "B"], "route": ["auto_approve", "human_review"], "amount": [10.0, 20.0],
                          "currency": ["EUR", "EUR"], "p_fraud": [0.01, 0.2], "p_fraud_low": [0.0, 0.1],
                          "p_fraud_high": [0.02, 0.3]})
    enqueue_reviews(engine, day, first)
    with engine.begin() as conn:
        conn.execute(review_cases.update().where(review_cases.c.claim_id == "B").values(status="rejected"))
    rerun = first.assign(route="auto_approve")
    payouts(context=dg.build_asset_context(partition_key=day), decisions=rerun,
            payout=PayoutResource(database_url=url), stores=stores)
    paid = read_table(engine, payouts_table, day)
    assert list(paid["claim_id"]) == ["A"]
