"""Pure decision modules: generator, validation, classifier calibration, the fraud network, drift."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from models.bayes import EVIDENCE, TARGET, FraudNetwork, evidence_frame, fit_network
from models.calibration import expected_calibration_error
from models.classifier import fit_calibrated_classifier, score
from models.features import FEATURE_COLUMNS, build_features
from models.fusion import compile_network, fuse
from models.generator import generate_claims, inject_malformed, make_book, to_inbox_records
from models.training import training_data
from models.validation import validate_claims


@pytest.fixture(scope="module")
def history():
    book = make_book(n_policies=6000, seed=3)
    claims, docs = generate_claims(book, date(2026, 3, 1), 90, 250, seed=3)
    return book, claims, docs


def test_generator_is_seeded_and_fraud_rate_is_realistic(history):
    book, claims, _ = history
    again, _ = generate_claims(book, date(2026, 3, 1), 3, 250, seed=3)
    pd.testing.assert_frame_equal(claims.head(len(again)).reset_index(drop=True), again.reset_index(drop=True))
    assert 0.02 <= claims["is_fraud"].mean() <= 0.06
    assert claims["claim_id"].is_unique
    # the label arrives after the claim
    assert (claims["label_available_at"] > claims["submitted_at"]).all()


def test_no_single_column_gives_fraud_away(history):
    """Each raw signal alone is weak (AUC < 0.8); fraud shows only through several noisy ones."""
    from sklearn.metrics import roc_auc_score

    book, claims, docs = history
    features = build_features(claims, docs, book.policies)
    y = claims.set_index("claim_id")["is_fraud"].reindex(features.index)
    for col in features.columns:
        x = pd.to_numeric(features[col], errors="coerce")
        if x.notna().sum() < 100 or x.nunique() < 2:
            continue
        mask = x.notna()
        auc = roc_auc_score(y[mask], x[mask])
        assert max(auc, 1 - auc) < 0.8, f"{col} alone separates fraud (AUC {auc:.2f})"


def test_validation_names_the_field_and_the_reason_for_each_defect(history):
    _, claims, _ = history
    day = claims[claims["submitted_at"].dt.date == date(2026, 3, 5)]
    raw = inject_malformed(to_inbox_records(day), n=7, seed=1)
    result = validate_claims(raw, source="test.csv")
    assert len(result.valid) == len(day)
    assert len(result.quarantined) == 7
    reasons = [" ".join(r) for r in result.quarantined["reasons"]]
    for expected in ("amount", "incident_date", "currency", "claim_id: duplicate", "report_delay_days"):
        assert any(expected in r for r in reasons), (expected, reasons)
    assert (result.quarantined["source"] == "test.csv").all()
    assert result.quarantined["raw"].map(bool).all()  # the raw row is kept


def test_classifier_is_calibrated_on_later_claims(history):
    book, claims, docs = history
    data = training_data(claims, docs, book.policies, as_of="2026-12-31")
    model = fit_calibrated_classifier(data.X_train, data.y_train, seed=0)
    p = score(model, data.X_holdout)
    assert p.shape == (len(data.X_holdout),) and ((p >= 0) & (p <= 1)).all()
    assert expected_calibration_error(p, data.y_holdout.to_numpy(), n_bins=10) < 0.03
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(data.y_holdout, p) > 0.7


def test_classifier_accepts_any_tabular_frame():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=600), "colour": rng.choice(["red", "blue", None], 600)})
    y = pd.Series((X["a"] + rng.normal(scale=0.5, size=600) > 1).astype(int))
    model = fit_calibrated_classifier(X, y)
    assert model.predict_proba(X).shape == (600, 2)
    with pytest.raises(ValueError, match="both classes"):
        fit_calibrated_classifier(X, pd.Series(np.zeros(600)))


@pytest.fixture(scope="module")
def network(history):
    book, claims, docs = history
    features = build_features(claims, docs, book.policies)
    scores = np.random.default_rng(0).beta(1, 20, len(features))
    y = claims.set_index("claim_id")["is_fraud"].reindex(features.index)
    return fit_network(evidence_frame(features, scores), y), evidence_frame(features, scores)


def test_fused_posterior_equals_pgmpy_variable_elimination(network):
    from pgmpy.inference import VariableElimination

    net, evidence = network
    sample = evidence.sample(40, random_state=0)
    sample.iloc[::3, 0] = None  # some signals unobserved
    fused = fuse(compile_network(net), sample)
    ve = VariableElimination(net.to_pgmpy())
    for i, (_, row) in enumerate(sample.iterrows()):
        ev = {k: v for k, v in row.items() if v is not None and not pd.isna(v)}
        q = ve.query([TARGET], evidence=ev, show_progress=False)
        expected = q.values[q.state_names[TARGET].index("yes")]
        assert abs(fused.p_fraud[i] - expected) < 1e-9
    assert ((fused.low <= fused.p_fraud) & (fused.p_fraud <= fused.high)).all()
    # value of information only for unobserved signals, contributions only for observed ones
    observed = sample[EVIDENCE].notna().to_numpy()
    assert np.isnan(fused.value_of_information[EVIDENCE].to_numpy()[observed]).all()
    assert np.isnan(fused.contributions[EVIDENCE].to_numpy()[~observed]).all()


def test_network_artifact_refuses_tampering(network, tmp_path):
    net, _ = network
    path = net.save(tmp_path / "net.json")
    assert FraudNetwork.load(path).version == net.version
    import json

    original = json.loads(path.read_text())
    for section in ("cpds", "concentration"):
        raw = json.loads(json.dumps(original))
        raw[section][TARGET][0][0] += 0.01
        path.write_text(json.dumps(raw))
        with pytest.raises(ValueError, match="content hash"):
            FraudNetwork.load(path)


def test_drift_detects_a_shift_and_not_a_resample(history):
    from models.drift import detect_drift

    book, claims, docs = history
    features = build_features(claims, docs, book.policies)[FEATURE_COLUMNS]
    reference, same = features.iloc[:5000], features.iloc[5000:5400]
    assert not detect_drift(reference, same).drifted
    shifted = same.copy()
    shifted["amount_ratio"] = shifted["amount_ratio"] * 3
    shifted["report_delay_days"] = shifted["report_delay_days"] + 30
    shifted["prior_claims"] = shifted["prior_claims"] + 2
    shifted["customer_tenure_days"] = shifted["customer_tenure_days"] + 900
    verdict = detect_drift(reference, shifted, drift_share=0.3)
    assert verdict.drifted
    assert {"report_delay_days", "prior_claims"} <= set(verdict.drifted_columns)
