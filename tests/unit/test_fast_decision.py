"""The single-claim fast path gives `decide`'s decision bit for bit: features, score, contributions, posterior,
route, rationale, drivers and snapshot hash, on many claims (with and without documents, unknown policies,
unknown categories)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from governance.policy import policy_set_in_force
from models.bayes import evidence_frame, fit_network
from models.classifier import fit_calibrated_classifier, score
from models.decision import DECISION_COLUMNS, DecisionModels, decide, snapshot_records
from models.fast_decision import FastModels, FastPathUnsupported, FastScorer, claim_features, decide_one
from models.features import FEATURE_COLUMNS, build_features
from models.generator import generate_claims, make_book


@pytest.fixture(scope="module")
def world():
    book = make_book(n_policies=3000, seed=11)
    claims, docs = generate_claims(book, date(2026, 3, 1), 40, 150, seed=11)
    features = build_features(claims, docs, book.policies)
    y = claims.set_index("claim_id")["is_fraud"].astype(int).reindex(features.index)
    half = len(features) // 2
    clf = fit_calibrated_classifier(features.iloc[:half][FEATURE_COLUMNS], y.iloc[:half], seed=1)
    hold = features.iloc[half:]
    net = fit_network(evidence_frame(hold, score(clf, hold[FEATURE_COLUMNS])), y.iloc[half:])
    models = DecisionModels(clf, "fraud", "1", net, policy_set_in_force())
    return book, models


def _new_claims(book, n: int, seed: int):
    claims, docs = generate_claims(book, date(2026, 6, 1), 2, n, seed=seed, id_prefix=f"F{seed}-")
    # a claim whose policy is unknown, one with an unknown channel, one with no documents read
    claims.loc[claims.index[0], "policy_id"] = "NO-SUCH-POLICY"
    claims.loc[claims.index[1], "channel"] = "carrier-pigeon"
    docs = docs[docs["claim_id"] != claims["claim_id"].iloc[2]]
    return claims, docs


def _fast_rows(claims: pd.DataFrame, docs: pd.DataFrame, book, fast: FastModels) -> list[dict]:
    typical = book.policies.set_index("policy_id")["typical_amount"].to_dict()
    texts = docs.groupby("claim_id")["text"].apply(list).to_dict()
    rows = []
    for rec in claims.to_dict("records"):
        feats = claim_features(rec, texts.get(rec["claim_id"], []), typical.get(rec["policy_id"]))
        rows.append(decide_one(rec["claim_id"], feats, fast))
    return rows


def test_fast_features_equal_build_features_row_for_row(world):
    book, _ = world
    claims, docs = _new_claims(book, 200, seed=21)
    expected = snapshot_records(build_features(claims, docs, book.policies))
    typical = book.policies.set_index("policy_id")["typical_amount"].to_dict()
    texts = docs.groupby("claim_id")["text"].apply(list).to_dict()
    for rec, exp in zip(claims.to_dict("records"), expected, strict=True):
        got = claim_features(rec, texts.get(rec["claim_id"], []), typical.get(rec["policy_id"]))
        got = {k: (None if isinstance(v, float) and v != v else v) for k, v in got.items()}
        assert {"claim_id": rec["claim_id"], **got} == exp


def test_fast_scorer_equals_predict_proba_to_the_bit(world):
    book, models = world
    claims, docs = _new_claims(book, 300, seed=22)
    X = build_features(claims, docs, book.policies)[FEATURE_COLUMNS]
    scorer = FastScorer(models.classifier)
    rows = [[None if isinstance(v, float) and v != v else v for v in r]
            for r in X[scorer.columns].astype(object).itertuples(index=False)]
    got = scorer.score(rows)
    expected = score(models.classifier, X)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)  # exact, not approximate


def test_fast_path_decides_every_claim_as_decide_does_bit_for_bit(world):
    book, models = world
    claims, docs = _new_claims(book, 400, seed=23)
    expected = decide(build_features(claims, docs, book.policies), models)[DECISION_COLUMNS].to_dict("records")
    got = _fast_rows(claims, docs, book, FastModels(models))
    assert len(got) == len(expected) > 300
    assert {r["route"] for r in expected} >= {"auto_approve"}  # not a degenerate sample
    for g, e in zip(got, expected, strict=True):
        assert g == e, g["claim_id"]


def test_a_classifier_of_another_shape_is_refused_by_the_fast_path():
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(FastPathUnsupported, match="fast path"):
        FastScorer(LogisticRegression())
