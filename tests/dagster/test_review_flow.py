"""The human pause: reviewer decisions in the review store, the review sensor and the review payout job.

Each test has its own database; the Dagster part runs in process (sensor invoked directly, asset
materialized with resources bound to that database).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.stores import reviews
from connectors.stores import accounts
from aios.kernel import errors
from aios.usecases import review_workflow as workflow
from aios_assets.review import review_payouts
from aios_resources import build_resources
from connectors.payout import payouts_table
from connectors.stores.ledger import AuditLedger
from sensors.review import review_sensor

try:
    from tests.reviewkit import ReviewEnv, make_env
except ImportError:  # tests/ itself is on sys.path (rootdir conftest, no package)
    from reviewkit import ReviewEnv, make_env

DAY = "2026-10-01"
T0 = datetime(2026, 10, 10, 8, 0, tzinfo=timezone.utc)


@pytest.fixture()
def env(tmp_path) -> ReviewEnv:
    return make_env(tmp_path / "home")


@pytest.fixture()
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def _tick(env: ReviewEnv, instance, cursor: str | None = None) -> dg.SensorResult:
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=build_resources(env.settings))
    return review_sensor(ctx)


def _pay(env: ReviewEnv, instance, partition: str) -> dict:
    result = dg.materialize([review_payouts], partition_key=partition, instance=instance,
                            resources=build_resources(env.settings), raise_on_error=False)
    if not result.success:
        return {"success": False}
    meta = result.asset_materializations_for_node("review_payouts")[0].metadata
    return {"success": True, **{k: v.value for k, v in meta.items()}}


def _ledger_rows(env: ReviewEnv, claim_id: str) -> list[dict]:
    with env.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(payouts_table).where(
            payouts_table.c.claim_id == claim_id))]


def _approve(env: ReviewEnv, claim_id: str, user: accounts.User, reason: str = "documents consistent",
             now: datetime | None = None) -> workflow.ActionResult:
    workflow.claim_case(env.engine, claim_id, user, env.policy, env.threshold, now=now)
    later = now + timedelta(seconds=30) if now else None
    return workflow.record_review_decision(env.engine, claim_id, user, "approve", reason, env.policy, env.threshold, now=later)


def test_nothing_is_paid_before_approval(env, instance):
    env.cases(DAY, {"C-1": (800.0, 0.12), "C-2": (1200.0, 0.2)})
    tick = _tick(env, instance)
    assert not tick.run_requests
    report = _pay(env, instance, DAY)
    assert report["success"] and report["paid"] == 0
    assert env.status("C-1") == env.status("C-2") == "open"
    assert _ledger_rows(env, "C-1") == [] and _ledger_rows(env, "C-2") == []


def test_approved_claim_is_paid_by_the_next_sensor_tick_and_the_case_closes(env, instance):
    env.cases(DAY, {"C-1": (800.0, 0.12), "C-2": (1200.0, 0.2)})
    rita = env.user("rita", "reviewer")
    result = _approve(env, "C-1", rita)
    assert result.status == "approved"
    tick = _tick(env, instance)
    expected = [(DAY, f"review-payouts:{DAY}:{result.action_id}")]
    assert [(r.partition_key, r.run_key) for r in tick.run_requests] == expected
    report = _pay(env, instance, DAY)
    assert report["paid"] == 1 and report["amount_paid"] == 800.0
    rows = _ledger_rows(env, "C-1")
    assert len(rows) == 1 and rows[0]["reason"] == "review_approved"
    assert env.status("C-1") == "paid" and env.status("C-2") == "open"
    assert _ledger_rows(env, "C-2") == []


def test_an_approval_that_arrives_twice_pays_once(env, instance):
    env.cases(DAY, {"C-1": (800.0, 0.12)})
    rita = env.user("rita", "reviewer")
    _approve(env, "C-1", rita)
    with pytest.raises(errors.Conflict, match="closed"):
        workflow.record_review_decision(env.engine, "C-1", rita, "approve", "again", env.policy, env.threshold)
    first, second = _tick(env, instance), _tick(env, instance)
    # the same batch of approvals gives the same run key: the daemon launches it once
    assert [r.run_key for r in first.run_requests] == [r.run_key for r in second.run_requests]
    assert _pay(env, instance, DAY)["paid"] == 1
    again = _pay(env, instance, DAY)  # a second run of the same partition (e.g. a retry)
    assert again["success"] and again["paid"] == 0
    assert len(_ledger_rows(env, "C-1")) == 1
    assert not _tick(env, instance).run_requests


def test_a_payout_lost_between_paying_and_closing_is_not_paid_again(env, instance):
    from connectors.payout import PayoutInstruction

    env.cases(DAY, {"C-1": (800.0, 0.12)})
    _approve(env, "C-1", env.user("rita", "reviewer"))
    # the connector paid (through the configured rail and its bank), then the run died before closing the case
    build_resources(env.settings)["payout"].connector().pay(
        DAY, [PayoutInstruction("C-1", DAY, 800.0, "EUR", "review_approved")])
    report = _pay(env, instance, DAY)
    assert report["paid"] == 0 and report["already_paid"] == 1
    assert env.status("C-1") == "paid" and len(_ledger_rows(env, "C-1")) == 1


def test_one_approval_of_a_large_claim_does_not_pay_it(env, instance):
    amount = env.policy.four_eyes_amount + 5000
    env.cases(DAY, {"BIG": (amount, 0.1)})
    sam = env.user("sam", "senior_reviewer")
    first = _approve(env, "BIG", sam)
    assert (first.status, first.stage) == ("open", "awaiting_second")
    assert "different senior reviewer" in first.message
    assert not _tick(env, instance).run_requests
    assert _pay(env, instance, DAY)["paid"] == 0
    assert _ledger_rows(env, "BIG") == []


def test_the_same_senior_cannot_give_both_approvals(env, instance):
    amount = env.policy.four_eyes_amount + 5000
    env.cases(DAY, {"BIG": (amount, 0.1)})
    sam = env.user("sam", "senior_reviewer")
    _approve(env, "BIG", sam)
    workflow.claim_case(env.engine, "BIG", sam, env.policy)
    with pytest.raises(errors.Conflict, match="already approved"):
        workflow.record_review_decision(env.engine, "BIG", sam, "approve", "still fine", env.policy)
    assert env.status("BIG") == "open"
    assert not _tick(env, instance).run_requests


def test_two_different_seniors_approve_a_large_claim_and_it_is_paid_once(env, instance):
    amount = env.policy.four_eyes_amount + 5000
    env.cases(DAY, {"BIG": (amount, 0.1)})
    rita = env.user("rita", "reviewer")
    sam, sue = env.user("sam", "senior_reviewer"), env.user("sue", "senior_reviewer")
    assert _approve(env, "BIG", rita).stage == "awaiting_second"  # a reviewer's approval is not a senior one
    with pytest.raises(errors.NotAllowed, match="only a senior reviewer"):
        _approve(env, "BIG", env.user("rob", "reviewer"))
    assert _approve(env, "BIG", sam).stage == "awaiting_second"  # one senior so far
    done = _approve(env, "BIG", sue)
    assert done.status == "approved" and done.action == "second_approve"
    assert [r.partition_key for r in _tick(env, instance).run_requests] == [DAY]
    assert _pay(env, instance, DAY)["paid"] == 1
    assert len(_ledger_rows(env, "BIG")) == 1


def test_payout_code_refuses_a_large_claim_without_four_eyes_even_if_marked_approved(env, instance):
    amount = env.policy.four_eyes_amount + 5000
    env.cases(DAY, {"BIG": (amount, 0.1)})
    _approve(env, "BIG", env.user("sam", "senior_reviewer"))
    from connectors.stores.decisions import review_cases

    with env.engine.begin() as conn:  # someone bypasses the review store
        conn.execute(review_cases.update().where(review_cases.c.claim_id == "BIG").values(status="approved"))
    report = _pay(env, instance, DAY)
    assert report["paid"] == 0 and "BIG" in report["refused_by_policy"]
    assert env.status("BIG") == "payout_refused" and _ledger_rows(env, "BIG") == []


def test_rejected_claim_is_closed_and_never_paid(env, instance):
    env.cases(DAY, {"C-1": (800.0, 0.3)})
    rita = env.user("rita", "reviewer")
    workflow.claim_case(env.engine, "C-1", rita, env.policy)
    result = workflow.record_review_decision(env.engine, "C-1", rita, "reject", "invoice forged", env.policy)
    assert result.status == "rejected" and env.status("C-1") == "rejected"
    assert not _tick(env, instance).run_requests
    assert _pay(env, instance, DAY)["paid"] == 0
    with pytest.raises(errors.Conflict, match="closed"):
        workflow.claim_case(env.engine, "C-1", rita, env.policy)


def test_a_failed_gate_refuses_the_review_payout_and_keeps_the_case_approved(env, instance):
    env.cases(DAY, {"C-1": (800.0, 0.12)}, gates_pass=False)
    _approve(env, "C-1", env.user("rita", "reviewer"))
    assert not _pay(env, instance, DAY)["success"]
    assert env.status("C-1") == "approved" and _ledger_rows(env, "C-1") == []


def test_escalated_case_is_decided_only_by_a_senior(env):
    env.cases(DAY, {"C-1": (800.0, 0.2)})
    rita, rob, sam = env.user("rita", "reviewer"), env.user("rob", "reviewer"), env.user("sam", "senior_reviewer")
    workflow.claim_case(env.engine, "C-1", rita, env.policy)
    assert workflow.record_review_decision(env.engine, "C-1", rita, "escalate", "needs a senior look", env.policy).stage == "escalated"
    with pytest.raises(errors.NotAllowed, match="senior"):
        workflow.claim_case(env.engine, "C-1", rob, env.policy)
    workflow.claim_case(env.engine, "C-1", sam, env.policy)
    assert workflow.record_review_decision(env.engine, "C-1", sam, "approve", "explained by phone", env.policy).status == "approved"


def test_a_claimed_case_is_locked_for_others_until_released_or_expired(env):
    env.cases(DAY, {"C-1": (800.0, 0.2)})
    rita, rob = env.user("rita", "reviewer"), env.user("rob", "reviewer")
    workflow.claim_case(env.engine, "C-1", rita, env.policy, now=T0)
    with pytest.raises(errors.Conflict, match="being worked by rita"):
        workflow.claim_case(env.engine, "C-1", rob, env.policy, now=T0 + timedelta(minutes=5))
    with pytest.raises(errors.Conflict, match="rita"):
        workflow.record_review_decision(env.engine, "C-1", rob, "approve", "ok", env.policy, now=T0 + timedelta(minutes=5))
    later = T0 + reviews.LOCK_TTL + timedelta(seconds=1)
    assert workflow.claim_case(env.engine, "C-1", rob, env.policy, now=later).action_id  # expired
    with pytest.raises(errors.Conflict):
        workflow.record_review_decision(env.engine, "C-1", rita, "approve", "ok", env.policy, now=later)
    # released: the next reviewer takes it at once
    workflow.release_case(env.engine, "C-1", rob, env.policy, now=later + timedelta(minutes=1))
    assert workflow.claim_case(env.engine, "C-1", rita, env.policy, now=later + timedelta(minutes=2)).action_id


def test_bad_input_gets_a_clear_message(env):
    env.cases(DAY, {"C-1": (800.0, 0.2)})
    rita = env.user("rita", "reviewer")
    with pytest.raises(errors.CaseNotFound, match="no review case for claim 'NOPE'"):
        workflow.claim_case(env.engine, "NOPE", rita, env.policy)
    workflow.claim_case(env.engine, "C-1", rita, env.policy)
    with pytest.raises(errors.InvalidInput, match="reason"):
        workflow.record_review_decision(env.engine, "C-1", rita, "approve", "   ", env.policy)
    with pytest.raises(errors.InvalidInput, match="decision"):
        workflow.record_review_decision(env.engine, "C-1", rita, "pay-double", "why not", env.policy)
    with pytest.raises(errors.NotAllowed):
        workflow.claim_case(env.engine, "C-1", env.user("ann", "analyst"), env.policy)


def test_reviewer_notes_are_stored_without_personal_data(env):
    env.cases(DAY, {"C-1": (800.0, 0.2)})
    rita = env.user("rita", "reviewer")
    workflow.claim_case(env.engine, "C-1", rita, env.policy)
    result = workflow.record_review_decision(env.engine, "C-1", rita, "approve", "called jane.doe@example.com, all fine", env.policy)
    assert "jane.doe@example.com" not in result.payload["reason"]
    assert "jane.doe@example.com" not in json.dumps(reviews.get_case(env.engine, "C-1").actions)


def test_sensor_reports_per_partition_how_many_claims_wait_for_people(env, instance):
    env.cases("2026-10-01", {"A-1": (800.0, 0.2), "A-2": (900.0, 0.2), "A-3": (950.0, 0.2)})
    env.cases("2026-10-02", {"B-1": (800.0, 0.2)})
    rita = env.user("rita", "reviewer")
    _approve(env, "A-1", rita)
    tick = _tick(env, instance)
    seen = {e.partition: e.metadata["waiting_for_people"].value for e in tick.asset_events}
    assert seen == {"2026-10-01": 2}
    assert all(e.asset_key == dg.AssetKey("review_queue") for e in tick.asset_events)
    assert json.loads(tick.cursor)["last_action_id"] >= 2
    # nothing new: no observation and no second cursor move
    quiet = _tick(env, instance, tick.cursor)
    assert quiet.asset_events == [] and quiet.cursor == tick.cursor
    workflow.claim_case(env.engine, "B-1", rita, env.policy)
    moved = _tick(env, instance, tick.cursor)
    assert {e.partition: e.metadata["waiting_for_people"].value for e in moved.asset_events} == {"2026-10-02": 1}


def test_review_actions_are_in_the_audit_ledger_with_the_reviewer_as_actor(env, instance):
    env.cases(DAY, {"C-1": (800.0, 0.12)})
    _approve(env, "C-1", env.user("rita", "reviewer"))
    _tick(env, instance)
    _pay(env, instance, DAY)
    record = AuditLedger(env.engine).claim_record("C-1")
    assert record["paid_amount"] == 800.0
    assert [p["reason"] for p in record["payouts"]] == ["review_approved"]
    actions = [(e["actor"], e["payload"]["action"]) for e in record["events"] if e["event"] == "review_action"]
    assert actions == [("rita", "claim_case"), ("rita", "approve")]
    assert record["reviewers"] == ["rita"]


def test_metrics_equal_hand_computed_values(env):
    part = "2026-10-10"
    env.cases(part, {"A": (500.0, 0.10), "B": (800.0, 0.30), "C": (700.0, 0.25), "D": (600.0, 0.05),
                     "E": (300.0, 0.20), "F": (400.0, 0.20)})
    for cid in "ABCDE":
        env.set_times(cid, T0, T0 + timedelta(hours=24))
    env.set_times("F", T0 + timedelta(hours=20), T0 + timedelta(hours=44))
    rita, sam = env.user("rita", "reviewer"), env.user("sam", "senior_reviewer")
    th = env.threshold
    assert th == pytest.approx((0.04 + 0.35) / 2)  # leaning threshold: the middle of the review band

    def work(cid, user, start_h, seconds, decision):
        start = T0 + timedelta(hours=start_h)
        workflow.claim_case(env.engine, cid, user, env.policy, th, now=start)
        workflow.record_review_decision(env.engine, cid, user, decision, "reason", env.policy, th,
                       now=start + timedelta(seconds=seconds))

    work("A", rita, 1, 120, "approve")   # leans approve, approved: agrees
    work("B", rita, 2, 300, "approve")   # leans reject (0.30), approved: override
    work("C", sam, 3, 60, "reject")      # leans reject, rejected: agrees
    work("D", rita, 4, 180, "escalate")  # not a closing decision
    work("D", sam, 30, 240, "reject")    # leans approve (0.05), rejected after its SLA: override, late
    m = reviews.review_metrics(env.engine, now=T0 + timedelta(hours=36), partitions=[part])
    assert m.queue_size == 2 and m.by_stage["new"] == 2                        # E and F
    assert m.oldest_age_hours == pytest.approx(36.0)                           # E
    assert m.mean_age_hours == pytest.approx((36.0 + 16.0) / 2)
    assert m.decisions == 5
    assert m.avg_review_seconds == pytest.approx((120 + 300 + 60 + 180 + 240) / 5)
    assert (m.closed, m.approved, m.rejected) == (4, 2, 2)
    assert m.overrides == 2 and m.override_rate == pytest.approx(0.5)
    assert (m.sla_breached_waiting, m.sla_breached_closed, m.sla_breaches) == (1, 1, 2)  # E waiting, D late


def test_the_sensor_requests_payout_runs_only_for_days_the_daily_job_can_run(env, instance):
    """Cases opened by the sync API live in `api-…` partitions; approving one must not break the sensor."""
    from aios_assets.partitions import daily_partitions

    env.cases(DAY, {"D-1": (700.0, 0.1)})
    env.cases("api-2026-11-24", {"API-1": (500.0, 0.1)})
    rita = env.user("rita", "reviewer")
    _approve(env, "D-1", rita)
    _approve(env, "API-1", rita)
    tick = _tick(env, instance)
    assert [r.partition_key for r in tick.run_requests] == [DAY]
    assert all(daily_partitions.has_partition_key(e.partition) for e in tick.asset_events)


def test_a_claim_resubmitted_on_another_day_keeps_its_one_review_case(env):
    import pandas as pd

    from connectors.stores.decisions import enqueue_reviews, review_cases

    row = {"claim_id": "R-1", "route": "human_review", "amount": 100.0, "currency": "EUR", "p_fraud": 0.1,
           "p_fraud_low": 0.05, "p_fraud_high": 0.2}
    assert enqueue_reviews(env.engine, "api-2026-11-23", pd.DataFrame([row])) == 1
    assert enqueue_reviews(env.engine, "api-2026-11-24", pd.DataFrame([row])) == 0
    with env.engine.connect() as conn:
        assert conn.execute(sa.select(review_cases.c.partition).where(
            review_cases.c.claim_id == "R-1")).scalars().all() == ["api-2026-11-23"]
