"""Decision-module contracts, the modular generator's oracle, the fusion network, and a bounded fusion study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.compiled_network import CompiledNetwork
from models.fusion_study import (METHODS, Regime, StudyConfig, headline, network_vs_others, oracle_violations,
                                 run_study, seed_claim_check, study_inputs)
from models.modular_generator import generate, make_world, true_posterior
from models.modules.contract import (NOT_APPLICABLE, UNAVAILABLE, ModuleContractError, ModuleSpec, load_modules,
                                     run_module)
from models.modules.network import expert_network
from models.modules.signals import module_states
from models.fusion_study import BAND_EDGES, SIGNAL_MODULES

SPECS = load_modules()


@pytest.fixture(scope="module")
def world_claims() -> tuple:
    world = make_world(3, go_live_day=5)
    claims = generate(world, 0, 20, 1500)
    rng = np.random.default_rng(0)
    states = module_states(SPECS, claims.assign(score=rng.uniform(0, 0.4, len(claims))), BAND_EDGES)
    return world, claims, states


# --------------------------------------------------------------------------------------------- contracts

@pytest.mark.parametrize("name", [n for n in SPECS])
def test_each_module_refuses_a_missing_input_naming_the_field(world_claims, name):
    _, claims, _ = world_claims
    spec = SPECS[name]
    field = next(iter(spec.inputs))
    frame = claims.assign(score=0.1).drop(columns=[field])
    with pytest.raises(ModuleContractError, match=f"input field '{field}' is missing"):
        module_states({name: spec}, frame, BAND_EDGES)


@pytest.mark.parametrize("name", [n for n in SPECS])
def test_each_module_refuses_an_input_of_the_wrong_kind_naming_the_field(world_claims, name):
    _, claims, _ = world_claims
    spec = SPECS[name]
    field, kind = next(iter(spec.inputs.items()))
    wrong = {"number": "many", "flag": 1.5, "text": 3.0, "date": "x"}[kind]
    frame = claims.assign(score=0.1).assign(**{field: wrong})
    with pytest.raises(ModuleContractError, match=f"input field '{field}' must be"):
        module_states({name: spec}, frame, BAND_EDGES)


@pytest.mark.parametrize("name", [n for n in SPECS])
def test_each_module_emits_only_declared_states_and_is_deterministic(world_claims, name):
    _, claims, states = world_claims
    assert set(states[name]) <= set(SPECS[name].states)
    again = module_states({name: SPECS[name]}, claims.assign(score=0.1), BAND_EDGES)[name]
    once_more = module_states({name: SPECS[name]}, claims.assign(score=0.1), BAND_EDGES)[name]
    assert again.equals(once_more)


def test_every_module_declares_unavailable_and_device_check_is_not_applicable_off_web_and_app(world_claims):
    _, claims, states = world_claims
    assert all(UNAVAILABLE in s.states for s in SPECS.values())
    offline = claims["channel"].isin(["phone", "agent"]).to_numpy()
    assert (states["device_check"][offline] == NOT_APPLICABLE).all()
    assert not (states["device_check"][~offline] == NOT_APPLICABLE).any()


def test_a_module_emitting_an_undeclared_state_is_refused_naming_it(world_claims):
    _, claims, _ = world_claims
    spec = SPECS["watchlist"]
    with pytest.raises(ModuleContractError, match="undeclared state 'maybe'"):
        run_module(spec, lambda f: pd.Series("maybe", index=f.index), claims)


def test_a_contract_without_unavailable_or_with_a_bad_likelihood_is_refused():
    with pytest.raises(ModuleContractError, match="must include 'unavailable'"):
        ModuleSpec(name="x", version="1", owner="o", inputs={}, states=("hit", "no_hit"))
    with pytest.raises(ModuleContractError, match="sum to 1"):
        ModuleSpec(name="x", version="1", owner="o", inputs={}, states=("hit", "no_hit", UNAVAILABLE),
                   likelihood={"honest": {"hit": 0.5, "no_hit": 0.2}})
    with pytest.raises(ModuleContractError, match="silent states carry no likelihood"):
        ModuleSpec(name="x", version="1", owner="o", inputs={}, states=("hit", UNAVAILABLE),
                   likelihood={"honest": {"hit": 0.5, UNAVAILABLE: 0.5}})
    with pytest.raises(ModuleContractError, match="deadline_days"):
        ModuleSpec(name="x", version="1", owner="o", inputs={}, states=("hit", UNAVAILABLE), latency="async")


# ------------------------------------------------------------------------------------------- generator

def test_modules_are_silent_before_go_live_and_documents_are_withheld_more_by_fraud(world_claims):
    _, claims, states = world_claims
    before = claims["day"].to_numpy() < 5
    for m in ("doc_forensics", "watchlist", "link_analysis"):
        assert (states[m][before] == UNAVAILABLE).all()
    after = ~before
    fraud = claims["is_fraud"].to_numpy()
    no_doc = states["doc_forensics"].to_numpy() == "no_document"
    assert no_doc[after & fraud].mean() > no_doc[after & ~fraud].mean() + 0.05


def test_the_same_seed_gives_the_same_world_and_claims():
    a, b = make_world(9, go_live_day=3), make_world(9, go_live_day=3)
    assert a == b
    pd.testing.assert_frame_equal(generate(a, 0, 40, 100), generate(b, 0, 40, 100))
    assert not generate(make_world(10, go_live_day=3), 0, 40, 100)["is_fraud"].equals(generate(a, 0, 40, 100)["is_fraud"])


def test_the_oracle_posterior_is_calibrated(world_claims):
    world, claims, states = world_claims
    p = true_posterior(world, claims, states)
    y = claims["is_fraud"].to_numpy()
    # 30k claims, ~1k frauds: the expected count matches the observed within a few standard errors.
    assert abs(p.sum() - y.sum()) < 4 * np.sqrt((p * (1 - p)).sum())
    high = p > 0.3
    assert abs(p[high].mean() - y[high].mean()) < 0.08


# --------------------------------------------------------------------------------------------- network

def _net_inputs():
    from models.modules.contract import load_fusion_config

    counts = np.ones((10, 4)) + np.arange(10)[:, None] * np.array([[1, 1, 3, 3]])
    return expert_network(SPECS, load_fusion_config(), 0.03, counts)


def test_the_network_equals_the_platforms_compiled_inference_on_its_pgmpy_export(world_claims):
    _, _, states = world_claims
    net = _net_inputs()
    frame = states.iloc[:400].copy()
    frame["late_report"] = np.where(np.arange(len(frame)) % 7 == 0, "yes", "no")
    ours = net.posterior(frame)
    compiled = CompiledNetwork.from_pgmpy(net.to_pgmpy())
    evidence = pd.DataFrame({v: frame[v].where(~frame[v].isin(["unavailable", "not_applicable", "pending"]), None)
                             for v in ["classifier", "late_report", *SIGNAL_MODULES]}, dtype=object)
    theirs = compiled.posterior("fraud", evidence)[:, compiled.states["fraud"].index("yes")]
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def test_a_legitimate_explanation_explains_a_late_report_away():
    net = _net_inputs()
    row = {"classifier": "band_5", "late_report": "yes", "doc_forensics": "clean", "watchlist": "no_hit",
           "device_check": "ok", "link_analysis": "unlinked"}
    explained = net.posterior(pd.DataFrame([{**row, "late_explanation": "explained"}]))[0]
    unexplained = net.posterior(pd.DataFrame([{**row, "late_explanation": "none"}]))[0]
    prompt = net.posterior(pd.DataFrame([{**row, "late_report": "no", "late_explanation": "explained"}]))[0]
    prompt_none = net.posterior(pd.DataFrame([{**row, "late_report": "no", "late_explanation": "none"}]))[0]
    assert explained < unexplained
    assert abs(prompt - prompt_none) < abs(explained - unexplained)  # the explanation matters only when late


def test_ring_signals_are_weighed_as_dependent_not_as_independent_evidence():
    net = _net_inputs()
    base = {"classifier": "band_5", "late_report": "no", "late_explanation": "none", "doc_forensics": "clean",
            "watchlist": "no_hit", "device_check": "ok", "link_analysis": "unlinked"}

    def z(**kw: str) -> float:
        p = net.posterior(pd.DataFrame([{**base, **kw}]))[0]
        return float(np.log(p / (1 - p)))

    llr = net.module_log_lr("device_check")
    marginal = llr[0] - llr[1]  # risky vs ok, as summed log LRs (B2) would weigh it
    given_link = z(link_analysis="linked", device_check="risky") - z(link_analysis="linked")
    given_no_link = z(device_check="risky") - z()
    # A ring link makes a ring likely, and rings show risky devices: the same evidence counts more with it
    # and less without it than its marginal ratio.
    assert given_link > marginal > given_no_link


# ------------------------------------------------------------------------------------------- the study

BOUNDED = StudyConfig(seeds=(0, 1), per_day=600, history_days=20, test_days=7,
                      regimes=(Regime("N=0", 0), Regime("N=50", 50), Regime("outage N=50", 50, outage=True),
                               Regime("MNAR docs N=50", 50, mnar=True)), bootstrap=200, em_iters=5)


@pytest.fixture(scope="module")
def bounded_study():
    return run_study(BOUNDED, *study_inputs())


@pytest.mark.slow
def test_a_bounded_study_is_complete_and_the_oracle_bounds_every_method(bounded_study):
    cfg, result = BOUNDED, bounded_study
    s = result.summary
    assert len(s) == len(cfg.regimes) * len(METHODS)
    assert set(s["method"]) == set(METHODS) and set(s["regime"]) == {r.name for r in cfg.regimes}
    needed = [f"fp_change@{b:.0%}" for b in cfg.budgets] + ["fp_change@policy", "caught@policy", "cost_per_1k",
                                                            "escalations_for_80%"]
    assert not s[needed].isna().any().any()
    calibrated = s[s["method"] != "B6"]
    assert not calibrated[["log_loss", "ece"]].isna().any().any()
    for regime, g in s.groupby("regime"):
        oracle = g[g["method"] == "oracle"].iloc[0]
        for _, r in g.iterrows():
            if r["method"] != "B6":
                assert r["log_loss"] >= oracle["log_loss"] - 1e-9, (regime, r["method"])
            for b in cfg.budgets:
                # the oracle's ranking is optimal in expectation; in a sample a method may tie it by a fraud or two
                assert r[f"caught@{b:.0%}"] <= oracle[f"caught@{b:.0%}"] + 0.02, (regime, r["method"], b)
    assert oracle_violations(result.rows, cfg.budgets, slack=8).empty
    table = headline(s)
    assert len(table) == len(s) and "FP vs B0 @5%" in table.columns
    assert len(seed_claim_check(s, cfg.budgets)) == len(cfg.regimes)
    paired = network_vs_others(result.rows)
    assert len(paired) == len(cfg.regimes) and not paired.isna().any().any()


@pytest.mark.slow
def test_the_fusion_study_asset_is_defined_and_draws_its_plots(bounded_study):
    from aios_assets.definitions import defs
    from aios_assets.fusion_study import caught_by_budget_plot, fp_change_plot

    assert defs.resolve_assets_def("fusion_study") is not None
    for png in (fp_change_plot(bounded_study.summary), fp_change_plot(bounded_study.summary, "fp_change@policy"),
                caught_by_budget_plot(bounded_study.summary, "N=50", BOUNDED.budgets)):
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000


def test_the_cli_registers_evaluate_fusion():
    from typer.testing import CliRunner

    from aios.cli.main import app

    out = CliRunner().invoke(app, ["evaluate", "fusion", "--help"])
    assert out.exit_code == 0 and "--seeds" in out.output and "--json" in out.output
