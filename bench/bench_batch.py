"""Batch decisions: claims through features → score → posterior → route (`models.decision`), and the
posterior on a day of our claims against pgmpy.

Entries (each with its baseline measured in the same run):

* `batch_100k` — 100k generated claims (with their documents) in one process, one `decide` stage
  after the other; claims/s. Baseline: the same code one claim per call (the sync path's cost per
  call without batching) on a sample of `SINGLE_SAMPLE` claims.
* `batch_1m` — 1M claims: the 100k tiled ten times under fresh claim ids, decided in chunks of 100k by
  one worker process per core (forked after the models are loaded; what parallel batch partitions
  do); wall-clock claims/s from the work handed to the forked workers to both done. Baseline: `batch_100k` (one process),
  so `ratio` is the parallel speed-up. Goal: 1M in ≤ 60 s.
* `posterior_claims_day*` — the fraud network's exact posterior for one day of claims (the day's
  evidence from the classifier's bands and the rule signals) against pgmpy `VariableElimination`,
  one query per claim, with `max_abs_diff` over every claim: `_cold` builds the `CompiledNetwork`
  inside the timing; plain is the network compiled once (a pinned version) and the day queried in
  one call; `_fused` is the decision path's `models.fusion.fuse` (posterior, interval, contributions
  and value of information looked up in the table built once per pinned network).

    python -m bench.bench_batch [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
import warnings
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from aios.kernel.settings import Settings
from bench._home import trained_settings

SINGLE_SAMPLE = 200
CHUNK = 100_000
PGMPY_SECONDS = 20.0
GOAL_1M_SECONDS = 60.0

# Set before forking the 1M workers (copy-on-write: models and claims are not pickled).
_STATE: dict[str, Any] = {}


def _models(settings: Settings):
    from service.model_pins import ModelPins

    pins = ModelPins(settings)
    pins.refresh()
    return pins.current().models


def make_claims(settings: Settings, n: int, day: date = date(2026, 11, 27), seed: int = 3) -> tuple[pd.DataFrame,
                                                                                                      pd.DataFrame]:
    """About `n` validated-shape claims (document_refs as lists) and their readable documents."""
    from models.generator import Book, generate_claims

    book = Book(pd.read_parquet(settings.policies_path))
    claims, docs = generate_claims(book, day, 1, n, seed=seed, id_prefix="BB-")
    claims = claims.drop(columns=["is_fraud", "label_available_at"])
    claims["document_refs"] = claims["document_refs"].str.split(";")
    return claims, docs


def decide_timed(claims: pd.DataFrame, docs: pd.DataFrame, policies: pd.DataFrame, models) -> tuple[pd.DataFrame,
                                                                                                     dict[str, float]]:
    """`decide`'s three stages (after the features) with the time of each."""
    from models.decision import posterior_claims, route_claims, score_claims
    from models.features import build_features

    t = {}
    t0 = time.perf_counter()
    features = build_features(claims, docs, policies)
    t["features_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = score_claims(features, models.classifier)
    t["score_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    post = posterior_claims(features, scores, models.compiled)
    t["posterior_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = route_claims(features, scores, post, models.policy, models.versions)
    t["route_s"] = time.perf_counter() - t0
    return out, t


def _label(n: int) -> str:
    """`100k`, `1m`: the requested size (the generator's Poisson count is recorded as `claims`)."""
    return f"{n // 1000}k" if n < 1_000_000 else f"{n / 1e6:g}m"


def _tile(claims: pd.DataFrame, docs: pd.DataFrame, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    suffix = f"-T{k}"
    return claims.assign(claim_id=claims["claim_id"] + suffix), docs.assign(claim_id=docs["claim_id"] + suffix)


def _worker(tiles: list[int]) -> dict[str, Any]:
    os.environ["OMP_NUM_THREADS"] = "1"
    claims, docs, policies, models = (_STATE[k] for k in ("claims", "docs", "policies", "models"))
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    n, routes, p_sum = 0, {}, 0.0
    for k in tiles:
        c, d = _tile(claims, docs, k)
        out, t = decide_timed(c, d, policies, models)
        for key, v in t.items():
            stages[key] = stages.get(key, 0.0) + v
        n += len(out)
        p_sum += float(out["p_fraud"].sum())
        for r, cnt in out["route"].value_counts().items():
            routes[r] = routes.get(r, 0) + int(cnt)
    return {"n": n, "seconds": time.perf_counter() - t0, "stages": stages, "routes": routes, "p_sum": p_sum}


def measure_batch(settings: Settings, n: int, n_big: int, workers: int = 2) -> list[dict]:
    """`batch_100k`-style and `batch_1m`-style entries for `n` and `n_big` claims (see module docstring)."""
    from models.decision import decide
    from models.features import build_features

    warnings.simplefilter("ignore", FutureWarning)
    models = _models(settings)
    policies = pd.read_parquet(settings.policies_path, columns=["policy_id", "typical_amount"])
    claims, docs = make_claims(settings, n)
    claims = claims.head(n)
    docs = docs[docs["claim_id"].isin(claims["claim_id"])]
    decide_timed(claims.head(500), docs[docs["claim_id"].isin(claims["claim_id"].head(500))], policies, models)

    # baseline: one claim per call
    sample = claims.head(SINGLE_SAMPLE)
    t0 = time.perf_counter()
    for i in range(len(sample)):  # bounded: SINGLE_SAMPLE calls
        one = sample.iloc[i:i + 1]
        decide(build_features(one, docs[docs["claim_id"] == one["claim_id"].iat[0]], policies), models)
    single_rate = len(sample) / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    out, stages = decide_timed(claims, docs, policies, models)
    secs = time.perf_counter() - t0
    rate = len(out) / secs
    label = _label(n)
    entries = [{"name": f"batch_{label}", "value": round(rate), "unit": "claims/s", "baseline": round(single_rate, 1),
                "ratio": round(rate / single_rate, 1), "baseline_name": "same code, one claim per call",
                "claims": len(out), "seconds": round(secs, 2), **{k: round(v, 2) for k, v in stages.items()}}]

    # n_big claims: tiles of the n claims, split over `workers` forked processes
    tiles = list(range(max(1, round(n_big / len(claims)))))
    _STATE.update(claims=claims, docs=docs, policies=policies, models=models)
    ctx = mp.get_context("fork")
    with ctx.Pool(workers) as pool:  # the workers are forked here, models and claims already in memory
        pool.map(abs, range(workers))  # the workers are up
        t0 = time.perf_counter()
        jobs = [pool.apply_async(_worker, (tiles[w::workers],)) for w in range(workers)]
        results = [j.get(timeout=1800) for j in jobs]
        wall = time.perf_counter() - t0
    _STATE.clear()
    total = sum(r["n"] for r in results)
    big_rate = total / wall
    stages_big: dict[str, float] = {}
    routes: dict[str, int] = {}
    for r in results:
        for k, v in r["stages"].items():
            stages_big[k] = stages_big.get(k, 0.0) + v
        for k, v in r["routes"].items():
            routes[k] = routes.get(k, 0) + v
    big_label = _label(n_big)
    entries.append({"name": f"batch_{big_label}", "value": round(big_rate), "unit": "claims/s",
                    "baseline": round(rate), "ratio": round(big_rate / rate, 2),
                    "baseline_name": f"batch_{label}, one process", "claims": total, "seconds": round(wall, 2),
                    "workers": workers, "goal_seconds_per_1m": GOAL_1M_SECONDS,
                    "seconds_per_1m": round(wall * 1e6 / total, 1),
                    "goal_met": wall * 1e6 / total <= GOAL_1M_SECONDS,
                    **{f"cpu_{k}": round(v, 2) for k, v in stages_big.items()}, "routes": routes})
    return entries


def measure_posterior_day(settings: Settings, seconds: float = PGMPY_SECONDS) -> list[dict]:
    """Compiled posterior vs pgmpy VariableElimination on one day of our claims (see module docstring)."""
    from pgmpy.inference import VariableElimination

    from models.bayes import TARGET, evidence_frame
    from models.classifier import score
    from models.compiled_network import CompiledNetwork
    from models.features import build_features
    from models.fusion import fuse

    models = _models(settings)
    policies = pd.read_parquet(settings.policies_path, columns=["policy_id", "typical_amount"])
    claims, docs = make_claims(settings, settings.claims_per_day, day=date(2026, 11, 28), seed=9)
    features = build_features(claims, docs, policies)
    evidence = evidence_frame(features, score(models.classifier, features))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pg = models.network.to_pgmpy()
        ve = VariableElimination(pg)
        yes = list(pg.get_cpds(TARGET).state_names[TARGET]).index("yes")
        ref = []
        t0 = time.perf_counter()
        for row in evidence.to_dict("records"):  # bounded by rows and `seconds`
            ev = {k: v for k, v in row.items() if v is not None and v == v}
            q = ve.query([TARGET], evidence=ev, show_progress=False)
            ref.append(float(np.asarray(q.values)[list(q.state_names[TARGET]).index("yes")]))
            if time.perf_counter() - t0 > seconds and len(ref) >= 20:
                break
        base_rate = len(ref) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    compiled = CompiledNetwork.from_pgmpy(pg)
    post = compiled.posterior(TARGET, evidence)[:, yes]
    cold = time.perf_counter() - t0
    reps = 20  # warm: the network compiled once (a pinned version), the day's rows queried again
    t0 = time.perf_counter()
    for _ in range(reps):
        compiled.posterior(TARGET, evidence)
    warm = (time.perf_counter() - t0) / reps
    fuse(models.compiled, evidence)  # the decision path's table, built once per pinned network
    t0 = time.perf_counter()
    for _ in range(reps):
        fused = fuse(models.compiled, evidence)
    lookup = (time.perf_counter() - t0) / reps
    ref_arr = np.array(ref)
    common = {"unit": "claims/s", "baseline": round(base_rate, 1),
              "baseline_name": "pgmpy VariableElimination, one query per claim", "claims": len(evidence),
              "baseline_claims": len(ref), "patterns": int(evidence.notna().drop_duplicates().shape[0])}
    diff = float(np.abs(post[:len(ref)] - ref_arr).max())
    return [
        {"name": "posterior_claims_day_cold", "value": round(len(evidence) / cold),
         "ratio": round(len(evidence) / cold / base_rate), "max_abs_diff": diff, "seconds": round(cold, 4),
         "what": "CompiledNetwork built and queried for the day (construction included)", **common},
        {"name": "posterior_claims_day", "value": round(len(evidence) / warm),
         "ratio": round(len(evidence) / warm / base_rate), "max_abs_diff": diff, "seconds": round(warm, 5),
         "what": "compiled once (pinned network), the day's rows in one call", **common},
        {"name": "posterior_claims_day_fused", "value": round(len(evidence) / lookup),
         "ratio": round(len(evidence) / lookup / base_rate),
         "max_abs_diff": float(np.abs(fused.p_fraud[:len(ref)] - ref_arr).max()), "seconds": round(lookup, 5),
         "what": "models.fusion.fuse (decision path): posterior, interval, contributions, VOI by table lookup",
         **common},
    ]


def run(quick: bool = False) -> list[dict]:
    """All entries of this module (`quick`: 20k and 200k claims instead of 100k and 1M)."""
    settings = trained_settings()
    entries = measure_posterior_day(settings, seconds=5.0 if quick else PGMPY_SECONDS)
    entries += measure_batch(settings, 20_000 if quick else CHUNK, 200_000 if quick else 1_000_000)
    return entries


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bench_batch")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    print(json.dumps(run(a.quick), indent=2))


if __name__ == "__main__":
    main()
