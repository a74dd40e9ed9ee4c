"""Benchmark: CompiledNetwork vs pgmpy VariableElimination on bundled networks.

Run with ``python -m bench.bench_inference``.

Evidence generator (per network, fixed ``seed``):
  * ``n_rows`` complete rows are forward-sampled from the network itself
    (``model.simulate``), so every evidence row has positive probability;
  * a fixed *pool* of ``POOL_SIZE`` evidence variables (not the target) is
    drawn once with the seed -- real claim traffic observes a small, recurring
    set of fields, so observation patterns repeat;
  * each row keeps between 1 and 4 variables of the pool (count uniform,
    variables uniform without replacement) and every other variable is NaN
    (unobserved).  Most variables are therefore unobserved.

Measurements (same process, same rows):
  * pgmpy: ``VariableElimination(model).query([target], evidence=row)`` one
    query per row on the first ``baseline_rows`` rows, stopped after
    ``baseline_seconds`` (at least 5 rows);
  * compiled: ``CompiledNetwork.from_pgmpy(model).posterior(target, rows)`` on
    all ``n_rows`` rows with a cold cache (construction and pattern
    compilation included in the time).
  * ``ratio`` = compiled rows/s / pgmpy rows/s; ``max_abs_diff`` over the rows
    both computed.
"""

from __future__ import annotations

import statistics
import time
import warnings

import numpy as np
import pandas as pd

TARGETS = {
    "asia": "lung",
    "sachs": "Akt",
    "child": "Disease",
    "alarm": "HYPOVOLEMIA",
    "insurance": "Accident",
    "hailfinder": "PlainsFcst",
    "win95pts": "Problem1",
}
POOL_SIZE = 8
MAX_OBSERVED = 4


def _load(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgmpy.utils import get_example_model

        return get_example_model(name)


def make_evidence(model, target: str, n_rows: int, seed: int = 0) -> pd.DataFrame:
    """Sparse evidence rows with recurring observation patterns (see module doc)."""
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = model.simulate(n_rows, seed=seed, show_progress=False)
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


def measure_network(
    name: str,
    n_rows: int = 10_000,
    seed: int = 0,
    baseline_rows: int = 100,
    baseline_seconds: float = 15.0,
) -> dict:
    from pgmpy.inference import VariableElimination

    from models.compiled_network import CompiledNetwork

    model = _load(name)
    target = TARGETS[name]
    evidence = make_evidence(model, target, n_rows, seed)

    # --- pgmpy baseline: one query per row, bounded in rows and time
    ve = VariableElimination(model)
    ref = []
    states = list(model.get_cpds(target).state_names[target])
    t0 = time.perf_counter()
    for i in range(min(baseline_rows, n_rows)):
        row = evidence.iloc[i]
        ev = {k: v for k, v in row.items() if not pd.isna(v)}
        q = ve.query([target], evidence=ev, show_progress=False)
        order = [q.state_names[target].index(s) for s in states]
        ref.append(np.asarray(q.values)[order])
        if time.perf_counter() - t0 > baseline_seconds and len(ref) >= 5:
            break
    t_base = time.perf_counter() - t0
    n_base = len(ref)
    base_rate = n_base / t_base

    # --- compiled: all rows, cold cache (includes construction + compilation)
    t0 = time.perf_counter()
    net = CompiledNetwork.from_pgmpy(model)
    post = net.posterior(target, evidence)
    t_comp = time.perf_counter() - t0
    comp_rate = n_rows / t_comp

    diff = float(np.abs(post[:n_base] - np.asarray(ref)).max())
    n_patterns = int(evidence.notna().drop_duplicates().shape[0])
    return {
        "name": f"posterior_{name}",
        "value": comp_rate,
        "unit": "rows/s",
        "baseline": base_rate,
        "ratio": comp_rate / base_rate,
        "max_abs_diff": diff,
        "rows": n_rows,
        "baseline_rows": n_base,
        "patterns": n_patterns,
        "target": target,
    }


def measure_bundled(
    networks=("asia", "child", "alarm", "insurance", "hailfinder", "win95pts"),
    n_rows: int = 10_000,
    seed: int = 0,
    baseline_rows: int = 100,
    baseline_seconds: float = 15.0,
) -> list[dict]:
    """One result dict per network (see module docstring)."""
    return [
        measure_network(n, n_rows=n_rows, seed=seed, baseline_rows=baseline_rows, baseline_seconds=baseline_seconds)
        for n in networks
    ]


def main() -> None:
    results = measure_bundled()
    print(
        f"{'benchmark':<22}{'target':<14}{'patterns':>9}{'compiled rows/s':>17}"
        f"{'pgmpy rows/s':>14}{'ratio':>9}{'max |diff|':>12}"
    )
    for r in results:
        print(
            f"{r['name']:<22}{r['target']:<14}{r['patterns']:>9}{r['value']:>17.0f}"
            f"{r['baseline']:>14.1f}{r['ratio']:>8.0f}x{r['max_abs_diff']:>12.1e}"
        )
    ratios = [r["ratio"] for r in results]
    print(
        f"median ratio {statistics.median(ratios):.0f}x, min ratio {min(ratios):.0f}x, "
        f"max diff {max(r['max_abs_diff'] for r in results):.1e}"
    )


if __name__ == "__main__":
    main()
