"""Benchmark: CompiledNetwork vs pgmpy VariableElimination and pyAgrum LazyPropagation, seven networks.

Run with ``python -m bench.bench_inference [--quick] [--rows N] [--networks asia,alarm]`` (or through
``make bench`` / ``python -m bench --only inference``).

Two evidence workloads per network (fixed seed, target from ``TARGETS``), both forward-sampled from the
network itself so every row is possible:

* ``distinct``: every row keeps a random 20% of the non-target variables (80% unobserved), so with
  more than a handful of variables every row is its own observation pattern -- nothing can be reused
  between rows except the compiled network itself (the unfavourable shape for a pattern cache);
* ``recurring``: a fixed pool of ``POOL_SIZE`` variables, each row keeping 1 to ``MAX_OBSERVED`` of
  them: claim traffic observing a small recurring set of fields (patterns repeat).

Measurements, same process, same rows, per query (microseconds):

* compiled: ``CompiledNetwork.from_pgmpy(model).posterior(target, rows)`` on all rows with a cold
  cache -- construction and compilation included;
* pgmpy: ``VariableElimination(model).query`` one row at a time on the first rows, bounded in rows
  and seconds;
* pyAgrum: one ``LazyPropagation`` engine reused, ``addTarget(target)``, evidence reset per query
  (its fastest use), on the first rows, bounded likewise.

Times are CPU time of this process (``time.process_time``), every engine single-threaded
(``OMP_NUM_THREADS=1``, pyAgrum's engine set to one thread): the machine is shared, and wall time
there mostly measures the other tenants. ``ratio`` = pgmpy us / compiled us; ``ratio_pyagrum`` = pyAgrum us / compiled us; ``max_abs_diff``
is the largest |difference| of posteriors against pyAgrum over the rows both computed (shown as
``max|diff|`` in the common table)
(``max_abs_diff_pgmpy`` the same against pgmpy). The machine's load changes every figure: compare
ratios, which are measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import pandas as pd

TARGETS = {
    "asia": "lung",
    "sachs": "Akt",
    "child": "Disease",
    "insurance": "Accident",
    "alarm": "HYPOVOLEMIA",
    "hailfinder": "PlainsFcst",
    "win95pts": "Problem1",
}
NETWORKS = tuple(TARGETS)
POOL_SIZE = 8
MAX_OBSERVED = 4
OBSERVED_SHARE = 0.2


def _load(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgmpy.utils import get_example_model

        return get_example_model(name)


def _simulate(model, n_rows: int, seed: int) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.simulate(n_rows, seed=seed, show_progress=False)


def make_evidence(model, target: str, n_rows: int, seed: int = 0) -> pd.DataFrame:
    """``recurring`` workload: 1-4 variables of a fixed pool of 8 per row (see module doc)."""
    rng = np.random.default_rng(seed)
    full = _simulate(model, n_rows, seed)
    others = sorted(v for v in full.columns if v != target)
    pool = list(rng.choice(others, size=min(POOL_SIZE, len(others)), replace=False))
    values = full[pool].astype(object).to_numpy()
    keep = np.zeros(values.shape, dtype=bool)
    max_k = min(MAX_OBSERVED, len(pool))
    for i in range(n_rows):  # bounded by n_rows
        k = rng.integers(1, max_k + 1)
        keep[i, rng.choice(len(pool), size=k, replace=False)] = True
    values[~keep] = np.nan
    return pd.DataFrame(values, columns=pool)


def make_distinct_evidence(model, target: str, n_rows: int, seed: int = 0) -> pd.DataFrame:
    """``distinct`` workload: a random 20% of the non-target variables per row (see module doc)."""
    rng = np.random.default_rng(seed)
    full = _simulate(model, n_rows, seed)
    cols = sorted(v for v in full.columns if v != target)
    values = full[cols].astype(object).to_numpy()
    k = max(1, int(round(OBSERVED_SHARE * len(cols))))
    keep = np.argsort(rng.random((n_rows, len(cols))), axis=1)[:, :k]
    mask = np.ones(values.shape, dtype=bool)
    np.put_along_axis(mask, keep, False, axis=1)
    values[mask] = np.nan
    return pd.DataFrame(values, columns=cols)


WORKLOADS = {"distinct": make_distinct_evidence, "recurring": make_evidence}


def _timed_queries(query, evidence: pd.DataFrame, max_rows: int, max_seconds: float) -> tuple[np.ndarray, float]:
    """Posteriors of the first rows, one query each, and microseconds per query (>= 5 rows)."""
    out = []
    t0 = time.process_time()
    for i in range(min(max_rows, len(evidence))):
        row = evidence.iloc[i]
        out.append(query({k: v for k, v in row.items() if not pd.isna(v)}))
        if time.process_time() - t0 > max_seconds and len(out) >= 5:
            break
    return np.asarray(out), (time.process_time() - t0) / len(out) * 1e6


def measure_network(name: str, workload: str, n_rows: int, seed: int = 0, baseline_rows: int = 100,
                    baseline_seconds: float = 10.0) -> dict:
    """One entry: compiled vs pgmpy vs pyAgrum on one network and workload."""
    from pgmpy.inference import VariableElimination

    from models.compiled_network import CompiledNetwork
    from tests.pyagrum_reference import LazyReference, to_pyagrum

    model = _load(name)
    target = TARGETS[name]
    evidence = WORKLOADS[workload](model, target, n_rows, seed)
    states = list(model.get_cpds(target).state_names[target])

    ve = VariableElimination(model)

    def ve_query(ev: dict) -> np.ndarray:
        q = ve.query([target], evidence=ev, show_progress=False)
        return np.asarray(q.values)[[q.state_names[target].index(s) for s in states]]

    ref_ve, us_ve = _timed_queries(ve_query, evidence, baseline_rows, baseline_seconds)
    agrum = LazyReference(to_pyagrum(model), target)
    order = [agrum.states.index(str(s)) for s in states]
    ref_ag, us_ag = _timed_queries(lambda ev: agrum.query(ev)[order], evidence, 10 * baseline_rows,
                                   baseline_seconds)

    t0 = time.process_time()
    net = CompiledNetwork.from_pgmpy(model)
    post = net.posterior(target, evidence)
    us_comp = (time.process_time() - t0) / n_rows * 1e6

    return {
        "name": f"posterior_{workload}_{name}",
        "value": round(us_comp, 2),
        "unit": "us/query",
        "baseline": round(us_ve, 1),
        "ratio": round(us_ve / us_comp, 1),
        "baseline_name": "pgmpy VariableElimination, one query per row",
        "pyagrum_us": round(us_ag, 1),
        "ratio_pyagrum": round(us_ag / us_comp, 2),
        "max_abs_diff": float(np.abs(post[: len(ref_ag)] - ref_ag).max()),
        "max_abs_diff_pgmpy": float(np.abs(post[: len(ref_ve)] - ref_ve).max()),
        "rows": n_rows,
        "baseline_rows": len(ref_ve),
        "pyagrum_rows": len(ref_ag),
        "patterns": int(evidence.notna().drop_duplicates().shape[0]),
        "target": target,
        "workload": workload,
        "network": name,
    }


def summary(entries: list[dict], workload: str) -> dict:
    """Median/min speed-ups of one workload and whether the goals hold."""
    mine = [e for e in entries if e["workload"] == workload]
    ratios = [e["ratio"] for e in mine]
    ag = [e["ratio_pyagrum"] for e in mine]
    med = statistics.median(ratios)
    return {
        "name": f"posterior_{workload}_median",
        "value": round(med, 1),
        "unit": "x",
        "baseline": 1.0,
        "ratio": round(med, 1),
        "min_ratio": round(min(ratios), 1),
        "min_ratio_pyagrum": round(min(ag), 2),
        "goal": "vs pgmpy VE: median >= 100x, none below 10x; faster than pyAgrum on every network",
        "goal_met": med >= 100 and min(ratios) >= 10 and min(ag) > 1,
        "max_abs_diff": max(e["max_abs_diff"] for e in mine),
        "workload": workload,
    }


def run(quick: bool = False, n_rows: int | None = None, networks=NETWORKS) -> list[dict]:
    """Entries for ``python -m bench``: every network x workload, then one summary per workload."""
    rows = n_rows or (2_000 if quick else 20_000)
    base_rows, base_s = (30, 3.0) if quick else (100, 10.0)
    entries = [measure_network(n, w, rows, baseline_rows=base_rows, baseline_seconds=base_s)
               for w in WORKLOADS for n in networks]
    return entries + [summary(entries, w) for w in WORKLOADS]


def print_table(entries: list[dict]) -> None:
    """The benchmark's own table (``python -m bench`` prints the common one)."""
    print(f"{'workload':<10}{'network':<12}{'patterns':>9}{'compiled us':>12}{'pgmpy us':>10}{'pyAgrum us':>11}"
          f"{'x pgmpy':>9}{'x pyAgrum':>10}{'|diff| pyAgrum':>15}")
    for e in entries:
        if "network" not in e:
            print(f"{e['name']}: median {e['value']}x, min {e['min_ratio']}x vs pgmpy, min {e['min_ratio_pyagrum']}x "
                  f"vs pyAgrum, max|diff| {e['max_abs_diff']:.1e}, goal {'met' if e['goal_met'] else 'NOT met'}")
            continue
        print(f"{e['workload']:<10}{e['network']:<12}{e['patterns']:>9}{e['value']:>12.1f}{e['baseline']:>10.0f}"
              f"{e['pyagrum_us']:>11.0f}{e['ratio']:>8.0f}x{e['ratio_pyagrum']:>9.1f}x{e['max_abs_diff']:>15.1e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2,000 rows and short baselines")
    p.add_argument("--rows", type=int, default=None, help="evidence rows per network and workload")
    p.add_argument("--networks", default=",".join(NETWORKS))
    a = p.parse_args()
    print_table(run(a.quick, a.rows, tuple(a.networks.split(","))))


if __name__ == "__main__":
    main()
