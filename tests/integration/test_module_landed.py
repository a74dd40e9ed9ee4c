"""An async decision module that answers after its claim was decided: the claim is decided again with its
signal, from the frozen feature row plus the landed inputs, and the ledger says what the module changed."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from aios.kernel.db import get_engine
from aios.usecases.decide_and_record import decide_and_record
from aios.usecases.module_landed import decide_when_module_lands
from connectors.stores.audit import ledger
from connectors.stores.decisions import decisions_table, read_table
from connectors.stores.snapshots import load_snapshots
from governance.policy import load_policy_set
from models.bayes import evidence_frame, fit_network
from models.classifier import fit_calibrated_classifier, score
from models.decision import DecisionModels, decide
from models.features import FEATURE_COLUMNS, build_features
from models.generator import generate_claims, make_book
from models.modules.contract import ModuleContractError

pytestmark = pytest.mark.slow  # fits a classifier and a network on generated claims


@pytest.fixture(scope="module")
def models_and_features():
    book = make_book(n_policies=3000, seed=6)
    claims, docs = generate_claims(book, date(2026, 3, 1), 40, 150, seed=6)
    features = build_features(claims, docs, book.policies)
    y = claims.set_index("claim_id")["is_fraud"].reindex(features.index)
    clf = fit_calibrated_classifier(features[FEATURE_COLUMNS], y)
    net = fit_network(evidence_frame(features, score(clf, features[FEATURE_COLUMNS])), y)
    return DecisionModels(clf, "aios-fraud", "7", net, load_policy_set()), features


def test_a_link_analysis_that_lands_after_the_deadline_decides_the_claim_again(models_and_features, tmp_path: Path):
    models, features = models_and_features
    engine = get_engine(f"sqlite:///{tmp_path / 'stores.db'}")
    # decided while the graph service was still working: link analysis past its deadline is pending
    late = features.head(3).assign(linked_to_confirmed_fraud=False, link_latency_days=5.0, link_service_up=True)
    decisions, _ = decide_and_record(engine, late, models, ["EUR"] * 3, "2026-03-05", "test")
    claim = decisions["claim_id"].iat[0]
    assert json.loads(decisions["versions"].iat[0])["modules"]["link_analysis"]["state"] == "pending"
    p_before = float(decisions["p_fraud"].iat[0])
    assert p_before == decide(features.head(1), models)["p_fraud"].iat[0]  # pending is marginalised

    landed = decide_when_module_lands(engine, models, claim, "link_analysis", {
        "linked_to_confirmed_fraud": True, "link_latency_days": 1.0, "link_service_up": True})
    assert (landed.state_before, landed.state_after, landed.version) == ("pending", "linked", "0.9.0")
    assert landed.p_fraud_after > landed.p_fraud_before == p_before

    stored = read_table(engine, decisions_table).set_index("claim_id")
    assert len(stored) == 3  # the claim's row replaced, not added
    assert stored.at[claim, "p_fraud"] == landed.p_fraud_after
    assert json.loads(stored.at[claim, "versions"])["modules"]["link_analysis"]["state"] == "linked"
    # the new decision names a new snapshot holding the landed inputs: replay reproduces it
    snap = load_snapshots(engine, [stored.at[claim, "snapshot_hash"]])
    assert bool(snap["linked_to_confirmed_fraud"].iat[0]) is True
    assert np.array_equal(decide(snap, models)["p_fraud"].to_numpy(), [landed.p_fraud_after])
    rows = ledger(engine).rows(claim)
    assert [r.event for r in rows][-1] == "module_landed"
    payload = json.loads(rows[-1].payload)
    assert payload["state_before"] == "pending" and payload["p_fraud_after"] == landed.p_fraud_after

    # the module spoke now: landing it again is refused, as are inputs it does not declare
    with pytest.raises(ValueError, match="already said 'linked'"):
        decide_when_module_lands(engine, models, claim, "link_analysis", {
            "linked_to_confirmed_fraud": True, "link_latency_days": 1.0, "link_service_up": True})
    other = decisions["claim_id"].iat[1]
    with pytest.raises(ModuleContractError, match="input field 'link_service_up' is missing"):
        decide_when_module_lands(engine, models, other, "link_analysis",
                                 {"linked_to_confirmed_fraud": True, "link_latency_days": 1.0})
    with pytest.raises(ModuleContractError, match="'crystal_ball' is not registered"):
        decide_when_module_lands(engine, models, other, "crystal_ball", {})
    with pytest.raises(LookupError, match="no stored decision"):
        decide_when_module_lands(engine, models, "NO-SUCH-CLAIM", "link_analysis", {})
