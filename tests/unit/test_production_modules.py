"""The production decision path through the decision-module contract: which modules spoke, their versions
and states recorded per decision, silent modules marginalised, modules added by configuration alone."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from aios.kernel.canonical import canonical_json
from governance.policy import load_policy_set
from models.bayes import TARGET, evidence_frame, fit_network
from models.classifier import fit_calibrated_classifier, score
from models.decision import DecisionModels, decide
from models.features import FEATURE_COLUMNS, build_features
from models.fusion import compile_network, fuse
from models.generator import generate_claims, make_book
from models.modules.contract import MODULES_PATH, NOT_APPLICABLE, UNAVAILABLE, load_modules
from models.modules.production import production_modules

pytestmark = pytest.mark.slow  # fits a classifier and a network on generated claims

MODULES = production_modules()


@pytest.fixture(scope="module")
def models_and_features():
    book = make_book(n_policies=3000, seed=5)
    claims, docs = generate_claims(book, date(2026, 3, 1), 40, 150, seed=5)
    features = build_features(claims, docs, book.policies)
    y = claims.set_index("claim_id")["is_fraud"].reindex(features.index)
    clf = fit_calibrated_classifier(features[FEATURE_COLUMNS], y)
    net = fit_network(evidence_frame(features, score(clf, features[FEATURE_COLUMNS])), y)
    models = DecisionModels(clf, "aios-fraud", "7", net, load_policy_set())
    return models, features


def _with_modules(models: DecisionModels, modules) -> DecisionModels:
    return DecisionModels(models.classifier, models.classifier_name, models.classifier_version, models.network,
                          models.policy, compiled=models.compiled, modules=modules)


def test_every_decision_records_each_registered_module_with_its_version_and_state(models_and_features):
    models, features = models_and_features
    sample = features.head(60)
    out = decide(sample, models)
    specs = load_modules()
    for row, channel in zip(out.to_dict("records"), sample["channel"]):
        mods = json.loads(row["versions"])["modules"]
        assert set(mods) == set(specs)
        assert mods["classifier"]["version"] == "aios-fraud/7"
        assert all(mods[n]["version"] == specs[n].version for n in specs if n != "classifier")
        # today's claims carry none of the watchlist / forensic / link / device inputs: those could not say
        assert mods["watchlist"]["state"] == mods["doc_forensics"]["state"] == UNAVAILABLE
        assert mods["link_analysis"]["state"] == mods["late_explanation"]["state"] == UNAVAILABLE
        assert mods["device_check"]["state"] == (UNAVAILABLE if channel in ("web", "app") else NOT_APPLICABLE)
        items = [i for i in json.loads(row["rationale"]) if i["kind"] == "module"]
        assert {i["name"]: (i["version"], i["value"]) for i in items} == {
            n: (m["version"], m["state"]) for n, m in mods.items()}
        assert canonical_json(json.loads(row["rationale"])) == row["rationale"]  # spliced text is canonical
        band = next(i["band"] for i in json.loads(row["rationale"]) if i["kind"] == "score")
        assert mods["classifier"]["state"] == band
    # nobody but the classifier spoke: p_fraud is the production network's posterior, bit for bit
    net_only = fuse(models.compiled, evidence_frame(sample, out["score"].to_numpy()))
    assert np.array_equal(out["p_fraud"].to_numpy(), net_only.p_fraud)


def _full_network(models: DecisionModels):
    """The production network with `ring` and every fused module added as pgmpy nodes (the reference)."""
    from pgmpy.factors.discrete import TabularCPD

    model = models.network.to_pgmpy()
    yn = ["no", "yes"]
    rho = MODULES.ring_share
    model.add_edge("fraud", "ring")
    cpds = [TabularCPD("ring", 2, np.array([[1.0, 1 - rho], [0.0, rho]]), evidence=["fraud"], evidence_card=[2],
                       state_names={"ring": yn, "fraud": yn})]
    for name, t in MODULES.tables.items():
        model.add_edge("fraud", name)
        model.add_edge("ring", name)
        cpds.append(TabularCPD(name, t.shape[0], np.stack([t[:, 0], t[:, 0], t[:, 1], t[:, 2]], axis=1),
                               evidence=["fraud", "ring"], evidence_card=[2, 2],
                               state_names={name: list(MODULES.specs[name].evidence_states), "fraud": yn,
                                            "ring": yn}))
    model.add_cpds(*cpds)
    model.check_model()
    return model


def test_a_module_that_could_not_say_is_marginalised_exactly_as_pgmpy_variable_elimination(models_and_features):
    from pgmpy.inference import VariableElimination

    models, features = models_and_features
    sample = features.sample(30, random_state=1)
    evidence = evidence_frame(sample, score(models.classifier, sample[FEATURE_COLUMNS]))
    rng = np.random.default_rng(2)
    states = pd.DataFrame({n: [str(rng.choice([*MODULES.specs[n].states])) for _ in range(len(sample))]
                           for n in MODULES.tables}, index=sample.index)  # silent states included
    p_net = fuse(models.compiled, evidence).p_fraud
    fused = MODULES.fuse(p_net, states)
    ve = VariableElimination(_full_network(models))
    silent_seen = 0
    for i, idx in enumerate(sample.index):
        ev = {k: v for k, v in evidence.loc[idx].items() if v is not None and not pd.isna(v)}
        spoke = {n: s for n, s in states.loc[idx].items() if s in MODULES.specs[n].evidence_states}
        silent_seen += len(MODULES.tables) - len(spoke)
        q = ve.query([TARGET], evidence={**ev, **spoke}, show_progress=False)
        assert abs(fused[i] - q.values[q.state_names[TARGET].index("yes")]) < 1e-9
    assert silent_seen > 0  # the check covered modules left unobserved


def test_a_module_whose_data_arrives_is_fused_and_the_classifier_is_untouched(models_and_features):
    models, features = models_and_features
    sample = features.head(40)
    before = decide(sample, models)
    hit = np.arange(len(sample)) % 4 == 0
    live = np.arange(len(sample)) % 5 != 0
    after = decide(sample.assign(watchlist_hit=hit, watchlist_live=live), models)
    assert np.array_equal(before["score"].to_numpy(), after["score"].to_numpy())
    states = [json.loads(v)["modules"]["watchlist"]["state"] for v in after["versions"]]
    assert states == [UNAVAILABLE if not lv else ("hit" if h else "no_hit") for h, lv in zip(hit, live)]
    p0, p1 = before["p_fraud"].to_numpy(), after["p_fraud"].to_numpy()
    assert (p1[hit & live] > p0[hit & live]).all() and (p1[~hit & live] < p0[~hit & live]).all()
    assert np.array_equal(p1[~live], p0[~live])  # a registry not yet live is marginalised: nothing moves
    moved = [next(i["effect"] for i in json.loads(r) if i["kind"] == "module" and i["name"] == "watchlist")
             for r in after["rationale"]]
    assert all((m is None) == (not lv) for m, lv in zip(moved, live))
    assert all(m > 0 for m, h, lv in zip(moved, hit, live) if lv and h)


def test_a_module_added_by_configuration_alone_changes_the_fusion(models_and_features, tmp_path: Path):
    models, features = models_and_features
    raw = yaml.safe_load(MODULES_PATH.read_text())
    raw["modules"]["claims_registry"] = {
        "version": "0.1.0", "owner": "industry-registry", "inputs": {"claims_registry": "text"},
        "states": ["flagged", "clear", "unavailable"], "latency": "sync",
        "likelihood": {"honest": {"flagged": 0.02, "clear": 0.98}, "fraud": {"flagged": 0.3, "clear": 0.7}}}
    path = tmp_path / "modules.yaml"
    path.write_text(yaml.safe_dump(raw))
    added = _with_modules(models, production_modules(path))
    sample = features.head(30)
    reported = pd.Series(["flagged", "clear", None] * 10, index=sample.index, dtype=object)
    before = decide(sample, models)
    after = decide(sample.assign(claims_registry=reported), added)
    assert np.array_equal(before["score"].to_numpy(), after["score"].to_numpy())
    mods = [json.loads(v)["modules"]["claims_registry"] for v in after["versions"]]
    assert [m["state"] for m in mods] == ["flagged", "clear", UNAVAILABLE] * 10
    assert all(m["version"] == "0.1.0" for m in mods)
    p0, p1 = before["p_fraud"].to_numpy(), after["p_fraud"].to_numpy()
    assert (p1[0::3] > p0[0::3]).all() and (p1[1::3] < p0[1::3]).all() and np.array_equal(p1[2::3], p0[2::3])


def test_a_claim_gets_the_same_module_fusion_bits_alone_or_in_a_batch(models_and_features):
    models, features = models_and_features
    sample = features.head(25).assign(watchlist_hit=[True, False] * 12 + [True], watchlist_live=True,
                                      device_risk=np.linspace(0, 1, 25), device_service_up=True)
    batch = decide(sample, models)
    for i in range(0, 25, 6):
        alone = decide(sample.iloc[[i]], models).iloc[0]
        assert alone["p_fraud"] == batch["p_fraud"].iat[i]
        assert (alone["rationale"], alone["versions"]) == (batch["rationale"].iat[i], batch["versions"].iat[i])
