"""Exact batched inference (models/compiled_network.py) against pgmpy."""

from __future__ import annotations

import itertools
import warnings
from functools import reduce

import numpy as np
import pandas as pd
import pytest

pgmpy = pytest.importorskip("pgmpy")
from pgmpy.inference import VariableElimination  # noqa: E402

from models.compiled_network import CompiledNetwork  # noqa: E402

BUNDLED = ["asia", "sachs", "child", "insurance", "alarm", "hailfinder", "win95pts"]
_MODELS: dict = {}


def load(name: str):
    if name not in _MODELS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgmpy.utils import get_example_model

            model = get_example_model(name)
        # sachs and alarm ship CPD columns that sum to 1 +- 1e-7; exactness is
        # defined on a proper distribution, which is what from_pgmpy compiles.
        for cpd in model.get_cpds():
            cpd.normalize(inplace=True)
        _MODELS[name] = model
    return _MODELS[name]


def sampled_evidence(model, n_rows: int, seed: int, max_frac: float = 1.0) -> pd.DataFrame:
    """Forward-sampled rows (always possible) with a random share of cells missing.

    Row i keeps a random number of variables between 0 and ``max_frac`` of all;
    missing cells are a mix of None and NaN.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = model.simulate(n_rows, seed=seed, show_progress=False)
    rng = np.random.default_rng(seed)
    values = full.astype(object).to_numpy()
    n_vars = values.shape[1]
    for i in range(n_rows):
        k = rng.integers(0, int(max_frac * n_vars) + 1)
        keep = rng.choice(n_vars, size=k, replace=False)
        drop = np.setdiff1d(np.arange(n_vars), keep)
        for j in drop:
            values[i, j] = None if rng.random() < 0.5 else np.nan
    return pd.DataFrame(values, columns=full.columns)


def row_dict(row: pd.Series) -> dict:
    return {k: v for k, v in row.items() if not pd.isna(v)}


def ve_posterior(ve, target: str, evidence: dict, states: list) -> np.ndarray:
    q = ve.query([target], evidence=evidence, show_progress=False)
    return np.asarray(q.values)[[q.state_names[target].index(s) for s in states]]


def asia_joint():
    """Full joint of asia as a pgmpy DiscreteFactor (brute force, 256 cells)."""
    m = load("asia")
    return reduce(lambda a, b: a * b, [c.to_factor() for c in m.get_cpds()])


def joint_prob(joint, evidence: dict) -> float:
    if not evidence:
        return float(joint.values.sum())
    return float(joint.reduce(list(evidence.items()), inplace=False).values.sum())


# ---------------------------------------------------------------- exactness


@pytest.mark.parametrize("name", BUNDLED)
def test_posterior_equals_variable_elimination_on_bundled_networks(name):
    model = load(name)
    net = CompiledNetwork.from_pgmpy(model)
    ve = VariableElimination(model)
    evidence = sampled_evidence(model, 90, seed=7)
    rng = np.random.default_rng(11)
    targets = list(rng.choice(net.variables, size=3, replace=False))
    checked = 0
    for target in targets:
        ev = evidence.drop(columns=[target])
        post = net.posterior(target, ev)
        assert post.shape == (len(ev), len(net.states[target]))
        np.testing.assert_allclose(post.sum(axis=1), 1.0, atol=1e-12)
        for i in range(0, len(ev), 9):  # 10 pgmpy queries per target
            ref = ve_posterior(ve, target, row_dict(ev.iloc[i]), net.states[target])
            np.testing.assert_allclose(post[i], ref, rtol=0, atol=1e-9)
            checked += 1
    assert checked == 30


@pytest.mark.parametrize("name", ["alarm", "hailfinder", "win95pts"])
def test_row_mode_and_table_mode_agree(name):
    model = load(name)
    evidence = sampled_evidence(model, 60, seed=3, max_frac=0.5)
    target = net_target = sorted(evidence.columns)[5]
    ev = evidence.drop(columns=[target])
    auto = CompiledNetwork.from_pgmpy(model)
    rows = CompiledNetwork.from_pgmpy(model, mode="rows", max_chunk_cells=2000)  # small chunks
    table = CompiledNetwork.from_pgmpy(model, mode="table")
    a = auto.posterior(net_target, ev)
    np.testing.assert_allclose(rows.posterior(target, ev), a, atol=1e-12)
    np.testing.assert_allclose(table.posterior(target, ev), a, atol=1e-12)
    np.testing.assert_allclose(rows.log_evidence(ev), auto.log_evidence(ev), atol=1e-9)
    np.testing.assert_allclose(table.log_evidence(ev), auto.log_evidence(ev), atol=1e-9)
    # a second, cached call gives the same numbers
    np.testing.assert_array_equal(auto.posterior(target, ev), a)


def test_missing_values_mean_unobserved():
    model = load("asia")
    net = CompiledNetwork.from_pgmpy(model)
    ve = VariableElimination(model)
    ev = pd.DataFrame(
        {
            "smoke": ["yes", None, np.nan, pd.NA],
            "xray": [np.nan, "yes", None, pd.NA],
            "dysp": [pd.NA, pd.NA, "no", None],
        },
        dtype=object,
    )
    post = net.posterior("lung", ev)
    expected = [
        net.posterior("lung", pd.DataFrame({"smoke": ["yes"]}))[0],
        net.posterior("lung", pd.DataFrame({"xray": ["yes"]}))[0],
        net.posterior("lung", pd.DataFrame({"dysp": ["no"]}))[0],
        ve_posterior(ve, "lung", {}, net.states["lung"]),  # nothing observed: prior
    ]
    np.testing.assert_allclose(post, np.array(expected), atol=1e-12)
    np.testing.assert_allclose(post[0], ve_posterior(ve, "lung", {"smoke": "yes"}, net.states["lung"]), atol=1e-12)
    # a DataFrame without any column is "nothing observed" for every row
    empty = pd.DataFrame(index=range(3))
    np.testing.assert_allclose(net.posterior("lung", empty), np.tile(expected[3], (3, 1)), atol=1e-12)
    np.testing.assert_array_equal(net.log_evidence(empty), np.zeros(3))


def test_log_evidence_matches_enumeration():
    model = load("asia")
    net = CompiledNetwork.from_pgmpy(model)
    joint = asia_joint()
    evidence = sampled_evidence(model, 60, seed=5)
    logp = net.log_evidence(evidence)
    ref = np.array([np.log(joint_prob(joint, row_dict(r))) for _, r in evidence.iterrows()])
    np.testing.assert_allclose(logp, ref, rtol=0, atol=1e-9)
    assert np.any(logp < -1.0)  # the check is not vacuous
    assert net.log_evidence(pd.DataFrame({"asia": [None]}))[0] == 0.0


@pytest.mark.parametrize("name", ["child", "alarm", "insurance"])
def test_log_evidence_matches_variable_elimination_joint(name):
    # pgmpy normalises query results, so compare on exactly normalised CPDs
    # (alarm's published CPD columns are off by up to 1e-7)
    model = load(name).copy()
    for cpd in model.get_cpds():
        cpd.normalize(inplace=True)
    net = CompiledNetwork.from_pgmpy(model)
    ve = VariableElimination(model)
    evidence = sampled_evidence(model, 200, seed=9, max_frac=0.12)
    logp = net.log_evidence(evidence)
    checked = 0
    for i in range(len(evidence)):
        ev = row_dict(evidence.iloc[i])
        if not 1 <= len(ev) <= 3:
            continue
        q = ve.query(list(ev), joint=True, show_progress=False)
        p = q.get_value(**ev)
        np.testing.assert_allclose(logp[i], np.log(p), rtol=0, atol=1e-9)
        checked += 1
        if checked == 12:
            break
    assert checked >= 8


# ---------------------------------------------------------------- validation


def test_unknown_state_is_refused_with_its_column():
    net = CompiledNetwork.from_pgmpy(load("asia"))
    with pytest.raises(ValueError, match=r"'maybe'.*'smoke'"):
        net.posterior("lung", pd.DataFrame({"smoke": ["yes", "maybe"]}))
    with pytest.raises(ValueError, match=r"'smoke'"):
        net.log_evidence(pd.DataFrame({"smoke": [1]}))  # int is not the state name "yes"


def test_unknown_column_or_target_is_refused():
    net = CompiledNetwork.from_pgmpy(load("asia"))
    with pytest.raises(ValueError, match="smoker"):
        net.posterior("lung", pd.DataFrame({"smoker": ["yes"]}))
    with pytest.raises(ValueError, match="lungs"):
        net.posterior("lungs", pd.DataFrame({"smoke": ["yes"]}))


def test_evidence_on_the_target_gives_a_one_hot_posterior():
    net = CompiledNetwork.from_pgmpy(load("asia"))
    ev = pd.DataFrame({"lung": ["no", None], "smoke": ["yes", "yes"]})
    post = net.posterior("lung", ev)
    np.testing.assert_array_equal(post[0], [0.0, 1.0])
    assert 0 < post[1, 0] < 1


def test_impossible_evidence_gives_nan_posterior_and_minus_inf_log_evidence():
    net = CompiledNetwork.from_pgmpy(load("asia"))
    # either = lung OR tub, so lung=yes with either=no has probability zero;
    # the target's own group (smoke) alone would not notice it.
    ev = pd.DataFrame({"lung": ["yes", "yes"], "either": ["no", "yes"]})
    post = net.posterior("smoke", ev)
    assert np.isnan(post[0]).all()
    assert np.isfinite(post[1]).all()
    logp = net.log_evidence(ev)
    assert logp[0] == -np.inf and np.isfinite(logp[1])
    target_obs = net.posterior("lung", ev)  # evidence on the target too
    assert np.isnan(target_obs[0]).all()
    np.testing.assert_array_equal(target_obs[1], [1.0, 0.0])


# ---------------------------------------------------------------- numerics


def _star_network(n_children: int, p1: float, p2: float, mode: str = "auto"):
    """Binary root T with n binary children; P(c=1|T=0)=p1, P(c=1|T=1)=p2."""
    variables = ["T"] + [f"c{i}" for i in range(n_children)]
    states = {v: ["0", "1"] for v in variables}
    cpds = {"T": (["T"], np.array([0.5, 0.5]))}
    child = np.array([[1 - p1, 1 - p2], [p1, p2]])  # rows = child state, cols = T
    for v in variables[1:]:
        cpds[v] = ([v, "T"], child)
    return CompiledNetwork(variables, states, cpds, mode=mode)


@pytest.mark.parametrize("mode", ["auto", "table", "rows", "program"])
def test_tiny_probabilities_do_not_underflow(mode):
    # 400 observed children -> P(evidence) ~ 1e-1100: far below float64's range
    n, p1, p2 = 400, 1e-3, 2e-3
    net = _star_network(n, p1, p2, mode)
    obs = {f"c{i}": "1" for i in range(n)}
    obs.update({f"c{i}": "0" for i in range(0, n, 2)})  # half the children are 0
    n1 = sum(v == "1" for v in obs.values())
    n0 = n - n1
    l0 = n1 * np.log(p1) + n0 * np.log1p(-p1)
    l1 = n1 * np.log(p2) + n0 * np.log1p(-p2)
    ev = pd.DataFrame([obs, obs])
    logp = net.log_evidence(ev)
    np.testing.assert_allclose(logp, np.logaddexp(l0, l1) + np.log(0.5), rtol=1e-12)
    assert logp[0] < -700
    post = net.posterior("T", ev)
    np.testing.assert_allclose(post[:, 1], 1 / (1 + np.exp(l0 - l1)), rtol=1e-9)


def test_tiny_table_entries_are_recomputed_without_underflow():
    # 14 children with p=1e-25 each: the joint table cell (~1e-350) underflows
    net = _star_network(14, 1e-25, 3e-25, mode="table")
    ev = pd.DataFrame([{f"c{i}": "1" for i in range(14)}])
    l0, l1 = 14 * np.log(1e-25), 14 * np.log(3e-25)
    np.testing.assert_allclose(net.log_evidence(ev), [np.logaddexp(l0, l1) + np.log(0.5)], rtol=1e-12)
    np.testing.assert_allclose(net.posterior("T", ev)[0, 1], 1 / (1 + np.exp(l0 - l1)), rtol=1e-9)


def test_fully_observed_large_network_matches_pgmpy():
    model = load("win95pts")
    net = CompiledNetwork.from_pgmpy(model)
    ve = VariableElimination(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = model.simulate(3, seed=2, show_progress=False)
    target = "Problem1"
    ev = full.drop(columns=[target])
    post = net.posterior(target, ev)
    for i in range(len(ev)):
        np.testing.assert_allclose(post[i], ve_posterior(ve, target, row_dict(ev.iloc[i]), net.states[target]), atol=1e-9)
    assert np.isfinite(net.log_evidence(full)).all()


def test_pattern_cache_is_bounded_and_still_exact():
    model = load("alarm")
    net = CompiledNetwork.from_pgmpy(model, max_cached_patterns=5, max_cached_cells=1000)
    ref = CompiledNetwork.from_pgmpy(model)
    ev = sampled_evidence(model, 80, seed=4, max_frac=0.3).drop(columns=["HYPOVOLEMIA"])
    for _ in range(2):
        np.testing.assert_allclose(net.posterior("HYPOVOLEMIA", ev), ref.posterior("HYPOVOLEMIA", ev), atol=1e-12)
    assert len(net._patterns) <= 5
    assert net._cached_cells <= 1000


# ---------------------------------------------------------------- intervals


def _counts(model, scale: float, variables=None):
    return {
        c.variable: scale * c.get_values() + 0.5
        for c in model.get_cpds()
        if variables is None or c.variable in variables
    }


def test_interval_contains_point_posterior_and_narrows_with_more_counts():
    model = load("sachs")
    ev = sampled_evidence(model, 300, seed=1, max_frac=0.5).drop(columns=["Akt"])
    point = CompiledNetwork.from_pgmpy(model).posterior("Akt", ev)
    state = CompiledNetwork.from_pgmpy(model).states["Akt"][0]
    few = CompiledNetwork.from_pgmpy(model, pseudo_counts=_counts(model, 30))
    many = CompiledNetwork.from_pgmpy(model, pseudo_counts=_counts(model, 3000))
    lo_f, hi_f = few.posterior_interval("Akt", ev, state, level=0.9, n_samples=200, seed=0)
    lo_m, hi_m = many.posterior_interval("Akt", ev, state, level=0.9, n_samples=200, seed=0)
    p = point[:, 0]
    assert lo_m.shape == hi_m.shape == (len(ev),)
    assert np.all((lo_m <= p + 1e-3) & (p - 1e-3 <= hi_m))
    assert np.mean((lo_f <= p) & (p <= hi_f)) > 0.95
    assert np.all(hi_m - lo_m < hi_f - lo_f)
    assert np.all(hi_f - lo_f > 0)
    # deterministic for a seed, different for another
    lo2, hi2 = many.posterior_interval("Akt", ev, state, level=0.9, n_samples=200, seed=0)
    np.testing.assert_array_equal(lo2, lo_m)
    lo3, _ = many.posterior_interval("Akt", ev, state, level=0.9, n_samples=200, seed=1)
    assert not np.array_equal(lo3, lo_m)


@pytest.mark.parametrize("mode", ["table", "rows"])
def test_interval_equals_per_sample_exact_posteriors(mode):
    model = load("asia")
    pc = _counts(model, 50, variables={"smoke", "lung", "bronc", "either"})
    net = CompiledNetwork.from_pgmpy(model, pseudo_counts=pc, mode=mode)
    ev = sampled_evidence(model, 40, seed=8).drop(columns=["lung"])
    n_s = 25
    lo, hi = net.posterior_interval("lung", ev, "yes", level=0.8, n_samples=n_s, seed=3)
    params = net._sample_params(n_s, seed=3)  # the same draws, one network per draw
    per_sample = []
    for s in range(n_s):
        cpds = {}
        for v in net.variables:
            i = net.variables.index(v)
            scope = [net.variables[j] for j in net._scope[i]]
            cpds[v] = (scope, params[i][s] if i in params else net._values[i])
        one = CompiledNetwork(net.variables, net.states, cpds)
        per_sample.append(one.posterior("lung", ev)[:, 0])
    q = np.quantile(np.array(per_sample), [0.1, 0.9], axis=0)
    np.testing.assert_allclose(lo, q[0], atol=1e-12)
    np.testing.assert_allclose(hi, q[1], atol=1e-12)


def test_interval_for_a_batch_is_per_row_and_ordered():
    """A batch's intervals (its speed is measured in the benchmark, not here)."""
    model = load("sachs")
    net = CompiledNetwork.from_pgmpy(model, pseudo_counts=_counts(model, 100))
    ev = sampled_evidence(model, 1000, seed=2, max_frac=0.4).drop(columns=["Akt"])
    lo, hi = net.posterior_interval("Akt", ev, net.states["Akt"][1], n_samples=200, seed=0)
    assert lo.shape == hi.shape == (len(ev),)
    assert np.all((0 <= lo) & (lo <= hi) & (hi <= 1))


def test_interval_without_pseudo_counts_is_refused():
    net = CompiledNetwork.from_pgmpy(load("asia"))
    with pytest.raises(ValueError, match="pseudo_counts"):
        net.posterior_interval("lung", pd.DataFrame({"smoke": ["yes"]}), "yes")


def test_pseudo_counts_of_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="either"):
        CompiledNetwork.from_pgmpy(load("asia"), pseudo_counts={"either": np.ones((2, 2))})


# ---------------------------------------------------------------- value of information


def test_value_of_information_is_zero_for_irrelevant_variable():
    net = CompiledNetwork.from_pgmpy(load("asia"))
    # given smoke, bronc is d-separated from asia and tub (the collider
    # "either" and its descendants are unobserved)
    ev = pd.DataFrame({"smoke": ["yes", "no", "yes"], "tub": [None, None, "no"]}, index=[10, 20, 30])
    voi = net.value_of_information("bronc", ev, "yes")
    assert list(voi.index) == [10, 20, 30]
    assert list(voi.columns) == [v for v in net.variables if v != "bronc"]
    np.testing.assert_allclose(voi["asia"], 0.0, atol=1e-12)
    np.testing.assert_allclose(voi.loc[[10, 20], "tub"], 0.0, atol=1e-12)
    assert np.isnan(voi.loc[30, "tub"]) and voi["smoke"].isna().all()
    assert (voi["dysp"] > 1e-3).all()  # dysp is informative about bronc


def test_value_of_information_matches_brute_force_on_asia():
    model = load("asia")
    net = CompiledNetwork.from_pgmpy(model)
    joint = asia_joint()
    ev = sampled_evidence(model, 12, seed=6, max_frac=0.5).drop(columns=["lung"])
    cands = ["smoke", "xray", "tub", "dysp"]
    voi = net.value_of_information("lung", ev, "yes", candidates=cands)
    assert voi.shape == (12, 4)
    for i in range(len(ev)):
        e = row_dict(ev.iloc[i])
        pe = joint_prob(joint, e)
        p0 = joint_prob(joint, {**e, "lung": "yes"}) / pe
        for c in cands:
            if c in e:
                assert np.isnan(voi.iloc[i][c])
                continue
            expected = 0.0
            for v in net.states[c]:
                pv = joint_prob(joint, {**e, c: v})
                if pv > 0:
                    expected += pv / pe * abs(joint_prob(joint, {**e, c: v, "lung": "yes"}) / pv - p0)
            assert voi.iloc[i][c] == pytest.approx(expected, abs=1e-12)
    assert np.nanmax(voi.to_numpy()) > 0.01


def test_value_of_information_on_a_larger_network_is_consistent_with_posteriors():
    model = load("alarm")
    net = CompiledNetwork.from_pgmpy(model)
    ev = sampled_evidence(model, 30, seed=12, max_frac=0.2).drop(columns=["HYPOVOLEMIA"])
    voi = net.value_of_information("HYPOVOLEMIA", ev, "TRUE", candidates=["CVP", "LVEDVOLUME", "HR"])
    # check one cell by hand from posterior() calls
    i = int(np.flatnonzero(ev["CVP"].isna().to_numpy())[0])
    row = ev.iloc[[i]]
    p0 = net.posterior("HYPOVOLEMIA", row)[0, 0]
    pc = net.posterior("CVP", row)[0]
    expected = 0.0
    for j, v in enumerate(net.states["CVP"]):
        r = row.copy()
        r["CVP"] = v
        expected += pc[j] * abs(net.posterior("HYPOVOLEMIA", r)[0, 0] - p0)
    assert voi.iloc[i]["CVP"] == pytest.approx(expected, abs=1e-12)
    assert voi.notna().to_numpy().sum() > 0


def test_states_and_variables_follow_the_model():
    model = load("child")
    net = CompiledNetwork.from_pgmpy(model)
    assert net.variables == list(model.nodes())
    for v in net.variables:
        assert net.states[v] == list(model.get_cpds(v).state_names[v])


def test_all_combinations_of_asia_evidence_match_enumeration():
    """Every one of the 3^7 evidence patterns/values for target lung, brute force."""
    model = load("asia")
    net = CompiledNetwork.from_pgmpy(model)
    joint = asia_joint()
    others = [v for v in net.variables if v != "lung"]
    rows = list(itertools.product(*[[None] + net.states[v] for v in others]))
    ev = pd.DataFrame(rows, columns=others)
    post = net.posterior("lung", ev)
    logp = net.log_evidence(ev)
    for i in ev.index:
        e = row_dict(ev.loc[i])
        pe = joint_prob(joint, e)
        assert np.exp(logp[i]) == pytest.approx(pe, abs=1e-12)
        if pe == 0:
            assert np.isnan(post[i]).all()
        else:
            assert post[i, 0] == pytest.approx(joint_prob(joint, {**e, "lung": "yes"}) / pe, abs=1e-12)


# ---------------------------------------------------------------- against pyAgrum (independent engine)


def _pyagrum_reference(name: str, target: str):
    pytest.importorskip("pyagrum")
    from tests.pyagrum_reference import LazyReference, to_pyagrum

    return LazyReference(to_pyagrum(load(name)), target)


def sparse_distinct_evidence(model, target: str, n_rows: int, seed: int, observed: float = 0.2) -> pd.DataFrame:
    """Forward-sampled rows, each keeping a random ``observed`` share of the non-target variables.

    With more than a handful of variables nearly every row is its own observation pattern.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = model.simulate(n_rows, seed=seed, show_progress=False)
    cols = [c for c in full.columns if c != target]
    values = full[cols].astype(object).to_numpy()
    rng = np.random.default_rng(seed)
    k = max(1, int(round(observed * len(cols))))
    for i in range(n_rows):
        hide = np.ones(len(cols), dtype=bool)
        hide[rng.choice(len(cols), size=k, replace=False)] = False
        values[i, hide] = None
    return pd.DataFrame(values, columns=cols)


def _assert_matches_reference(net, ref, target: str, ev: pd.DataFrame) -> int:
    """posterior and log_evidence of every row equal pyAgrum's to 1e-9; returns the number of possible rows."""
    post = net.posterior(target, ev)
    logp = net.log_evidence(ev)
    possible = 0
    for i in range(len(ev)):
        e = row_dict(ev.iloc[i])
        # pyAgrum prunes evidence d-separated from the target, so its posterior alone does not reveal
        # impossible evidence: P(e) does
        ref_logp = ref.log_evidence(e)
        if ref_logp == -np.inf:
            assert np.isnan(post[i]).all() and logp[i] == -np.inf, (i, e)
            continue
        possible += 1
        np.testing.assert_allclose(post[i], ref.query(e), rtol=0, atol=1e-9, err_msg=str(e))
        np.testing.assert_allclose(logp[i], ref_logp, rtol=0, atol=1e-9, err_msg=str(e))
    return possible


@pytest.mark.parametrize("mode", ["auto", "program"])
@pytest.mark.parametrize("name", BUNDLED)
def test_distinct_sparse_patterns_match_pyagrum(name, mode):
    model = load(name)
    net = CompiledNetwork.from_pgmpy(model, mode=mode)
    target = str(np.random.default_rng(len(name)).choice(net.variables))
    ev = sparse_distinct_evidence(model, target, 40, seed=21)
    assert ev.notna().drop_duplicates().shape[0] >= 25 or name in ("asia", "sachs")  # mostly unique patterns
    assert _assert_matches_reference(net, _pyagrum_reference(name, target), target, ev) == len(ev)


def _rare_state_evidence(net, model, target: str, n_rows: int, seed: int) -> pd.DataFrame:
    """Rows observing a few variables each in their least probable state under the prior."""
    ve_marg = CompiledNetwork.from_pgmpy(model)
    empty = pd.DataFrame(index=range(1))
    rare = {v: net.states[v][int(np.argmin(ve_marg.posterior(v, empty)[0]))] for v in net.variables if v != target}
    rng = np.random.default_rng(seed)
    names = sorted(rare)
    rows = []
    for _ in range(n_rows):
        pick = rng.choice(names, size=int(rng.integers(1, min(4, len(names)) + 1)), replace=False)
        rows.append({v: rare[v] for v in pick})
    return pd.DataFrame(rows, columns=names)


@pytest.mark.parametrize("name", BUNDLED)
def test_rare_and_impossible_evidence_match_pyagrum(name):
    model = load(name)
    net = CompiledNetwork.from_pgmpy(model)
    target = str(np.random.default_rng(len(name) + 1).choice(net.variables))
    ev = _rare_state_evidence(net, model, target, 30, seed=5)
    ref = _pyagrum_reference(name, target)
    possible = _assert_matches_reference(net, ref, target, ev)
    assert possible > 0
    # the prior (nothing observed) and every variable but the target observed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = model.simulate(4, seed=3, show_progress=False).drop(columns=[target])
    both = pd.concat([pd.DataFrame(index=range(2), columns=full.columns, dtype=object), full.astype(object)],
                     ignore_index=True)
    assert _assert_matches_reference(net, ref, target, both) == len(both)
    logp = net.log_evidence(both)
    assert np.all(logp[:2] == 0.0) and np.all(logp[2:] < 0.0)


def test_program_recomputes_rows_whose_messages_fall_below_the_floor():
    # one observed child with P ~ 1e-250: the program's first message is below its floor (1e-200),
    # so the row is recomputed with pairwise rescaling and stays exact
    net = _star_network(3, 1e-250, 3e-250, mode="program")
    ev = pd.DataFrame([{"c0": "1", "c1": "0"}, {"c0": "0", "c1": None}])
    logp = net.log_evidence(ev)
    l0, l1 = np.log(1e-250) + np.log1p(-1e-250), np.log(3e-250) + np.log1p(-3e-250)
    np.testing.assert_allclose(logp[0], np.logaddexp(l0, l1) + np.log(0.5), rtol=1e-12)
    np.testing.assert_allclose(net.posterior("T", ev)[0], [0.25, 0.75], rtol=1e-12)
    np.testing.assert_allclose(net.posterior("T", ev)[1], [0.5, 0.5], rtol=1e-12)


def test_distinct_patterns_share_one_compiled_program():
    """Rows that are each their own pattern compile one program, not one plan per row (speed: bench)."""
    model = load("alarm")
    net = CompiledNetwork.from_pgmpy(model)
    ev = sparse_distinct_evidence(model, "HYPOVOLEMIA", 50, seed=4)
    assert ev.notna().drop_duplicates().shape[0] == 50
    first = net.posterior("HYPOVOLEMIA", ev)
    assert [k[0] for k in net._patterns] == ["program"]
    np.testing.assert_allclose(CompiledNetwork.from_pgmpy(model, mode="rows").posterior("HYPOVOLEMIA", ev), first,
                               rtol=0, atol=1e-12)
