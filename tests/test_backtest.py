"""Backtest metrics, threshold economics and the SLO alarms, on tiny fixed or seeded synthetic data."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from models.backtest import check_bounds, join_labels, partition_metrics, read_snapshot, write_snapshot
from models.economics import (
    AUTO_GRID,
    SIU_GRID,
    Bands,
    check_bands_match_policy,
    escalate_top,
    fusion_vs_classifier,
    load_costs,
    recommend_bands,
    threshold_curve,
)
from models.slo import load_slo, override_alarm, override_change, override_counts

# A partition of seven claims; c7's label has not arrived.
TINY = pd.DataFrame({
    "claim_id": ["c1", "c2", "c3", "c4", "c5", "c6", "c7"],
    "amount": [1000.0, 2000.0, 500.0, 100.0, 400.0, 300.0, 50.0],
    "score": [0.7, 0.2, 0.25, 0.03, 0.03, 0.01, 0.01],
    "p_fraud": [0.80, 0.30, 0.30, 0.02, 0.02, 0.01, 0.01],
    "route": ["refer_siu", "human_review", "human_review", "auto_approve", "auto_approve", "auto_approve",
              "auto_approve"],
})
LABELS = pd.DataFrame({
    "claim_id": ["c1", "c2", "c3", "c4", "c5", "c6", "c7"],
    "is_fraud": [True, False, True, False, True, False, False],
    "label_available_at": pd.to_datetime(["2026-12-01"] * 6 + ["2027-03-01"]),
})


def test_backtest_metrics_equal_hand_computed_values_on_a_tiny_partition():
    scored = join_labels(TINY, LABELS, as_of="2027-01-01")
    assert scored["is_fraud"].isna().tolist() == [False] * 6 + [True]
    m = partition_metrics(scored, ece_bins=2)
    # frauds c1, c3, c5 (p 0.8, 0.3, 0.02) against honest c2, c4, c6 (p 0.3, 0.02, 0.01):
    # c1 outranks all 3; c3 ties c2 (½) and outranks 2; c5 ties c4 (½) and outranks c6 → 7 of 9 pairs
    assert m["auc"] == pytest.approx(7 / 9)
    assert m["brier"] == pytest.approx((0.2**2 + 0.3**2 + 0.7**2 + 0.02**2 + 0.98**2 + 0.01**2) / 6)
    # two equal-count bins split at the median 0.16: {0.01, 0.02, 0.02} with 1 fraud, {0.3, 0.3, 0.8} with 2
    assert m["ece"] == pytest.approx(0.5 * abs(0.05 / 3 - 1 / 3) + 0.5 * abs(1.4 / 3 - 2 / 3))
    assert (m["claims"], m["labelled"], m["frauds"]) == (7, 6, 3)
    assert m["automation_rate"] == pytest.approx(4 / 7)
    assert m["review_rate"] == pytest.approx(2 / 7)
    assert m["siu_rate"] == pytest.approx(1 / 7)
    assert m["fraud_caught"] == pytest.approx(2 / 3)  # c1 and c3 escalated, c5 auto-approved
    assert m["false_positive_escalations"] == 1  # c2
    assert m["false_positive_rate"] == pytest.approx(1 / 3)
    assert m["expected_loss"] == pytest.approx(0.02 * 100 + 0.02 * 400 + 0.01 * 300 + 0.01 * 50)
    assert m["realized_loss"] == pytest.approx(400.0)  # c5 was paid
    assert check_bounds(m, {"role": "champion", "ece_max": 0.5, "fraud_caught_min": 0.6}) == []
    assert len(check_bounds(m, {"ece_max": 0.1, "fraud_caught_min": 0.9})) == 2


def test_feature_snapshot_is_content_addressed_and_refuses_an_altered_file(tmp_path):
    features = TINY.set_index("claim_id")[["amount", "score"]].assign(note=["x"] * 7)
    features.loc["c3", "score"] = np.nan
    snap = write_snapshot(features, tmp_path)
    assert write_snapshot(features.copy(), tmp_path) == snap
    pd.testing.assert_frame_equal(read_snapshot(tmp_path, snap.hash), features)
    features.loc["c1", "amount"] = 1001.0
    features.to_parquet(snap.path)
    with pytest.raises(ValueError, match="altered"):
        read_snapshot(tmp_path, snap.hash)


def _synthetic(n: int = 400, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.06
    p = np.clip(np.where(y, rng.beta(2, 5, n), rng.beta(1, 30, n)), 0, 1)
    amount = np.round(rng.lognormal(7.5, 1.1, n), 2)
    return p, amount, y


def test_recommended_bands_are_where_brute_force_puts_the_minimum_cost():
    p, amount, y = _synthetic()
    costs = load_costs()
    cap = 15000.0
    assert (amount > cap).any()

    def claim_cost(route: str, fraud: bool, amt: float) -> float:
        loss = amt * costs.fraud_loss_share
        if route == "auto_approve":
            return costs.compute_per_decision + (loss if fraud else 0.0)
        if route == "refer_siu":
            return (costs.compute_per_decision + costs.siu_minutes * costs.cost_per_minute
                    + ((1 - costs.siu_catch_rate) * loss if fraud else costs.honest_siu_cost))
        return (costs.compute_per_decision + costs.review_minutes * costs.cost_per_minute
                + ((1 - costs.review_catch_rate) * loss if fraud else costs.honest_review_cost))

    brute = {}
    for a in AUTO_GRID:
        for s in SIU_GRID:
            if a > s:
                continue
            total = 0.0
            for pi, ai, yi in zip(p, amount, y):
                route = "refer_siu" if pi >= s else "auto_approve" if (pi < a and ai <= cap) else "human_review"
                total += claim_cost(route, bool(yi), float(ai))
            brute[(a, s)] = total
    best_pair = min(brute, key=brute.get)

    curve = threshold_curve(p, amount, y, costs, max_amount=cap)
    assert len(curve) == len(brute)
    got = dict(zip(zip(curve["auto_approve_max_p"], curve["refer_siu_min_p"]), curve["expected_cost"]))
    assert got == pytest.approx(brute, rel=1e-9)
    best = recommend_bands(curve, cap)
    assert (best.auto_approve_max_p, best.refer_siu_min_p) == best_pair
    assert got[best_pair] == pytest.approx(min(brute.values()), rel=1e-12)


def test_band_rule_routes_every_claim_as_the_routing_policy_does():
    from governance.policy import load_policy_set

    p, amount, _ = _synthetic(600, seed=5)
    policy = load_policy_set()
    c = policy.policies["routing"].constants
    p[:4] = [c["AUTO_APPROVE_MAX_P"], c["REFER_SIU_MIN_P"], np.nan, 0.01]
    amount[:6] = [100.0, 100.0, 100.0, np.nan, c["AUTO_APPROVE_MAX_AMOUNT"], c["AUTO_APPROVE_MAX_AMOUNT"] + 0.01]
    bands = check_bands_match_policy(p, amount, policy)
    assert bands == Bands(c["AUTO_APPROVE_MAX_P"], c["REFER_SIU_MIN_P"], c["AUTO_APPROVE_MAX_AMOUNT"])


def test_classifier_only_routing_escalates_the_same_budget_sharing_ties_at_the_margin():
    w = escalate_top(np.array([0.9, 0.5, 0.5, 0.5, 0.1, 0.0]), np.array([False] * 5 + [True]), budget=3)
    assert w.tolist() == pytest.approx([1, 1 / 3, 1 / 3, 1 / 3, 0, 1])
    p = np.array([0.5, 0.3, 0.02, 0.02, 0.01])
    score = np.array([0.2, 0.6, 0.01, 0.5, 0.01])
    y = np.array([True, False, True, False, False])
    cmp = fusion_vs_classifier(p, score, np.full(5, 100.0), y, Bands(0.04, 0.35, 15000.0))
    # fusion escalates the two claims with p >= 0.04 (one fraud, one honest); the score's top two are honest
    assert cmp.budget == 2
    assert (cmp.fusion_fraud_caught, cmp.fusion_false_positives) == (1, 1)
    assert (cmp.classifier_fraud_caught, cmp.classifier_false_positives) == (0, 2)
    assert cmp.false_positive_change == pytest.approx(-0.5)


def test_override_alarm_fires_when_the_override_rate_moves_more_than_the_configured_share(tmp_path):
    slo = load_slo()
    rows = []
    for day in range(1, 9):
        overrides = 3 if day < 8 else 15  # 10% for a week, then 50%
        for i in range(30):
            leaning = "approve"
            rows.append({"partition": f"2026-10-0{day}", "decision": "reject" if i < overrides else leaning,
                         "leaning": leaning})
    counts = override_counts(pd.DataFrame(rows))
    quiet = override_change(counts, "2026-10-07", slo)
    assert quiet.rate == pytest.approx(0.1) and override_alarm(quiet, slo) is None
    moved = override_change(counts, "2026-10-08", slo)
    assert moved.baseline == pytest.approx(0.1) and moved.baseline_partitions == slo.override_rate.baseline_partitions
    alarm = override_alarm(moved, slo)
    assert alarm is not None and alarm.partition == "2026-10-08" and alarm.value == pytest.approx(0.4)
    # one more override on the breached day moves the rate but is the same breach: one alarm, stored once
    rows.append({"partition": "2026-10-08", "decision": "reject", "leaning": "approve"})
    again = override_alarm(override_change(override_counts(pd.DataFrame(rows)), "2026-10-08", slo), slo)
    assert again.value != alarm.value and again.key == alarm.key
    from connectors.stores.alarms import read_alarms, record_alarm
    from aios.kernel.db import get_engine

    engine = get_engine(f"sqlite:///{tmp_path / 'alarms.db'}")
    assert record_alarm(engine, alarm) is True
    assert record_alarm(engine, again) is False
    assert len(read_alarms(engine)) == 1


def test_drift_alarm_fires_on_an_injected_shift_and_stays_quiet_on_a_clean_batch(tmp_path):
    import dagster as dg

    from connectors.stores.alarms import read_alarms
    from aios_assets.checks import drift_result
    from aios_resources import StoresResource
    from models.features import FEATURE_COLUMNS, build_features
    from models.generator import generate_claims, inject_drift, make_book
    from sensors.alarms import alarm_sensor

    book = make_book(n_policies=3000, seed=11)
    ref_claims, ref_docs = generate_claims(book, date(2026, 9, 1), 10, 200, seed=11)
    reference = build_features(ref_claims, ref_docs, book.policies)[FEATURE_COLUMNS]
    day_claims, day_docs = generate_claims(book, date(2026, 9, 20), 1, 300, seed=11)
    stores = StoresResource(database_url=f"sqlite:///{tmp_path / 'stores.db'}")

    def tick(cursor):
        return alarm_sensor(dg.build_sensor_context(resources={"stores": stores}, cursor=cursor))

    drift_result("2026-09-20", build_features(day_claims, day_docs, book.policies), reference, stores)
    quiet = tick(None)
    assert not quiet.run_requests
    assert "no alarm" in str(quiet.skip_reason)
    assert read_alarms(stores.engine()).empty

    drift_result("2026-09-21", build_features(inject_drift(day_claims), day_docs, book.policies), reference, stores)
    fired = tick(quiet.cursor)
    assert [r.partition_key for r in fired.run_requests] == ["2026-09-21"]
    assert fired.run_requests[0].tags["aios/alarm"] == "drift"
    alarms = read_alarms(stores.engine())
    assert alarms[["kind", "partition"]].values.tolist() == [["drift", "2026-09-21"]]
    assert "drifted" in alarms["reason"].iat[0]

    again = tick(fired.cursor)
    assert not again.run_requests and len(read_alarms(stores.engine())) == 1


def test_backtest_jobs_assets_and_alarm_sensor_are_in_the_definitions():
    from aios_assets.definitions import defs

    for job in ("backtest_job", "backtest_summary_job", "slo_job"):
        defs.resolve_job_def(job)
    assert defs.resolve_sensor_def("alarm_sensor").job_name == "slo_job"
    checks = {k.name for k in defs.resolve_assets_def("slo_report").check_keys}
    assert checks == {"latency_p95", "override_rate_change", "drift_share"}


def test_alarm_check_reads_reviews_since_its_cursor_and_raises_each_override_breach_once(tmp_path):
    import sqlalchemy as sa

    from aios.kernel.db import ensure_tables, get_engine
    from aios.usecases.alarms import AlarmCursor, check_alarms
    from connectors.stores.alarms import read_alarms
    from connectors.stores.reviews import APPROVED, REJECTED, review_actions

    slo = load_slo()
    engine = get_engine(f"sqlite:///{tmp_path / 'stores.db'}")
    ensure_tables(engine, review_actions)

    def review(day: int, overrides: int, n: int = 30) -> None:
        with engine.begin() as conn:
            conn.execute(review_actions.insert(), [
                {"claim_id": f"c{day}-{i}", "partition": f"2026-10-{day:02d}", "actor": "ana", "role": "reviewer",
                 "action": "reject" if i < overrides else "approve", "reason": "checked",
                 "outcome": REJECTED if i < overrides else APPROVED, "model_leaning": "approve", "amount": 100.0,
                 "at": "2026-10-20T00:00:00.000000Z"} for i in range(n)])

    for day in range(1, 8):
        review(day, 3)  # 10% overrides for a week
    first = check_alarms(engine, AlarmCursor(), slo)
    assert first.new == [] and len(first.reviewed_partitions) == 7
    idle = check_alarms(engine, first.cursor, slo)
    assert idle.reviewed_partitions == [] and idle.cursor == first.cursor  # nothing new: nothing re-read
    review(8, 15)  # then 50%
    fired = check_alarms(engine, AlarmCursor.parse(idle.cursor.dump()), slo)
    assert fired.reviewed_partitions == ["2026-10-08"]
    assert [(a.kind, a.partition) for a in fired.new] == [("override_rate", "2026-10-08")]
    review(8, 1, n=1)  # one more override the same day: the same breach, not a new alarm
    again = check_alarms(engine, fired.cursor, slo)
    assert again.new == [] and again.repeated == 1
    assert len(read_alarms(engine)) == 1
