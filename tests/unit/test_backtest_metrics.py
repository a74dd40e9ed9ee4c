"""Backtest metrics, feature snapshots and threshold economics, on tiny fixed or seeded synthetic data (pure)."""

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


def test_backtest_snapshot_hash_is_canonical_json_text_not_a_pandas_hash():
    import hashlib
    import json

    from models.backtest import features_hash

    features = TINY.set_index("claim_id")[["amount", "route"]].head(2)
    # each row as the decision path hashes it: sha256 of its canonical JSON text (sorted keys, no spaces)
    rows = [hashlib.sha256(t.encode()).hexdigest() for t in ('{"amount":1000.0,"claim_id":"c1","route":"refer_siu"}',
                                                             '{"amount":2000.0,"claim_id":"c2","route":"human_review"}')]
    whole = json.dumps({"columns": ["amount", "route"], "index": "claim_id", "rows": rows}, separators=(",", ":"))
    assert features_hash(features) == "snap-" + hashlib.sha256(whole.encode()).hexdigest()[:16]
    assert features_hash(features.astype({"amount": "float32"})) == features_hash(features)  # values, not dtypes


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
