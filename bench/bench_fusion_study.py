"""The modular-fusion study at full size (models/fusion_study.py): 10 seeds, N up to 5000, outage, MNAR.

Entries: per regime, each method's false positives at a 5% review budget (the primary metric) with the
classifier alone (B0) as the baseline, so `ratio` = FP(B0) / FP(method) (above 1: fewer false positives).
The whole result (per-seed rows, summary with intervals) goes to bench/fusion_study.json and the tables
to bench/fusion_study.md. `--quick`: 3 small seeds, N up to 200.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from models.fusion_study import (PRIMARY, StudyConfig, headline, markdown, network_vs_others, quick_config,
                                 result_json, run_study, seed_claim_check, study_inputs)

OUT = Path(__file__).resolve().parent


def report(summary: pd.DataFrame, budgets: tuple[float, ...], seeds: int, bands: dict,
           rows: pd.DataFrame | None = None) -> str:
    """The study's tables as markdown: the headline per regime, the check of the seed's claim and, given the
    per-seed rows, the network against each other method (paired per seed)."""
    md = [f"# Fusion study ({seeds} seeds; primary metric {PRIMARY})", "", f"Bands in force: {bands}", ""]
    head = headline(summary)
    for regime in head["regime"].unique():
        md += [f"## {regime}", "", markdown(head[head["regime"] == regime].drop(columns=["regime"])), ""]
    md += ["## The seed's claim (-18% false positives) for the network", "",
           markdown(seed_claim_check(summary, budgets)), ""]
    if rows is not None:
        md += ["## The network against the others: false positives at 5%, paired per seed", "",
               markdown(network_vs_others(rows)), "",
               "## ... and at the policy's bands (different escalation volumes: read with fraud caught)", "",
               markdown(network_vs_others(rows, "fp@policy")), ""]
    return "\n".join(md)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run the study; one entry per regime and method (FP at 5% against B0) plus the run time."""
    cfg = quick_config(3) if quick else StudyConfig()
    t0 = time.perf_counter()
    result = run_study(cfg, *study_inputs(), progress=lambda s, r: print(f"  fusion study: seed {s} {r}", flush=True))
    seconds = time.perf_counter() - t0
    suffix = "_quick" if quick else ""
    (OUT / f"fusion_study{suffix}.json").write_text(json.dumps(result_json(result), indent=1, default=float) + "\n")
    (OUT / f"fusion_study{suffix}.md").write_text(report(result.summary, cfg.budgets, len(cfg.seeds), result.bands,
                                                                 result.rows))
    entries = []
    s = result.summary
    for _, r in s.iterrows():
        if r["method"] == "B0":
            continue
        b0 = s[(s["regime"] == r["regime"]) & (s["method"] == "B0")].iloc[0]
        entries.append({"name": f"fusion_fp@5% {r['regime']} {r['method']}", "value": round(r["fp@5%"], 1),
                        "unit": "FP/test week", "baseline": round(b0["fp@5%"], 1),
                        "ratio": round(b0["fp@5%"] / r["fp@5%"], 3) if r["fp@5%"] else None,
                        "baseline_name": "B0 classifier on intake features",
                        "fp_change": round(r["fp_change@5%"], 4),
                        "fp_change_ci": [round(r["fp_change@5%_lo"], 4), round(r["fp_change@5%_hi"], 4)]})
    entries.append({"name": "fusion_study_seconds", "value": round(seconds, 1), "unit": "s", "baseline": None,
                    "ratio": None})
    return entries


if __name__ == "__main__":  # re-render bench/fusion_study.md from bench/fusion_study.json (no re-run)
    raw = json.loads((OUT / "fusion_study.json").read_text())
    frame = pd.DataFrame(raw["summary"]).astype({"regime": str, "method": str})
    frame = frame.apply(lambda c: pd.to_numeric(c) if c.name not in ("regime", "method") else c)
    per_seed = pd.DataFrame(raw["rows"])
    (OUT / "fusion_study.md").write_text(report(frame, tuple(raw["config"]["budgets"]), len(raw["config"]["seeds"]),
                                                raw["bands"], per_seed))
