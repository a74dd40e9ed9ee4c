"""Backtest and threshold-economics reports: the tables and Markdown a person reads (plots: `aios.usecases.plots`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aios.kernel.settings import Settings
from models.economics import ThresholdStudy

SUMMARY_COLUMNS = ["claims", "labelled", "frauds", "auc", "brier", "ece", "automation_rate", "review_rate", "siu_rate",
                   "fraud_caught", "false_positive_escalations", "false_positive_rate", "expected_loss",
                   "realized_loss"]


def fmt_value(v: object) -> str:
    """A number as people read it in a table (thousands separated, four significant digits, NaN as –)."""
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "–"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return str(v)


def markdown_table(frame: pd.DataFrame) -> str:
    """A Markdown table of a frame (numbers rounded for people)."""
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    sep = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(fmt_value(v) for v in r) + " |" for r in frame.itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def summary_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The pooled window's measures, one column per role (rows: measures)."""
    pooled = table[table["partition"] == "ALL"].set_index("role")
    out = pooled[SUMMARY_COLUMNS].T
    out.insert(0, "measure", out.index)
    return out.reset_index(drop=True)


def study_frames(study: ThresholdStudy) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(bands in force vs recommended, fusion vs classifier at both budgets) as tables."""
    keys = ["automation_rate", "review_rate", "siu_rate", "fraud_caught", "false_positive_escalations",
            "cost_per_1k", "operating_cost_per_1k", "human_cost_per_1k", "compute_cost_per_1k"]
    bands = pd.DataFrame({
        "": ["auto_approve below p", "refer_siu from p", *keys],
        "in force": [study.current.auto_approve_max_p, study.current.refer_siu_min_p,
                     *[study.current_eval[k] for k in keys]],
        "recommended": [study.recommended.auto_approve_max_p, study.recommended.refer_siu_min_p,
                        *[study.recommended_eval[k] for k in keys]],
    })
    cols = {}
    for name, f in (("bands in force", study.fusion_current), ("recommended bands", study.fusion_recommended)):
        cols[f"{name}: {f.budget} of {f.claims} escalated"] = [
            f.fusion_fraud_caught, f.classifier_fraud_caught, f.fusion_false_positives, f.classifier_false_positives,
            f"{f.false_positive_change:+.1%}", f.frauds]
    fusion = pd.DataFrame({"": ["fraud caught, fusion", "fraud caught, classifier only", "false positives, fusion",
                                "false positives, classifier only", "false-positive change", "frauds"], **cols})
    return bands, fusion


def backtest_markdown(table: pd.DataFrame, days: list[str], images: dict[str, str], bounds: list[str] | None,
                      notes: list[str]) -> str:
    """The backtest report: pooled measures per role, per-partition table, plots, bounds verdict."""
    per_day = table[table["partition"] != "ALL"][["partition", "role", "model", "claims", "frauds", "auc", "brier",
                                                   "ece", "automation_rate", "fraud_caught",
                                                   "false_positive_escalations", "expected_loss", "realized_loss"]]
    lines = [f"# Backtest {days[0]} .. {days[-1]} ({len(days)} daily partitions)", ""]
    lines += [f"- {n}" for n in notes] + [""]
    lines += ["## Pooled over the window", "", markdown_table(summary_frame(table)), ""]
    if bounds is not None:
        lines += ["## Regression bounds", "", "All bounds hold." if not bounds else
                  "**Broken:**\n\n" + "\n".join(f"- {b}" for b in bounds), ""]
    for title, path in images.items():
        lines += [f"## {title}", "", f"![{title}]({path})", ""]
    lines += ["## Per partition", "", markdown_table(per_day), ""]
    return "\n".join(lines)


def thresholds_markdown(study: ThresholdStudy, days: list[str], image: str | None, notes: list[str]) -> str:
    """The threshold-economics report: bands in force against recommended, fusion against classifier."""
    bands, fusion = study_frames(study)
    c = study.costs
    lines = [f"# Threshold economics {days[0]} .. {days[-1]}", "", *[f"- {n}" for n in notes],
             f"- cost model (config/costs.yaml v{c.version}): review {c.review_minutes} min, investigation "
             f"{c.siu_minutes} min at {c.cost_per_minute} {c.currency}/min; reviewers stop {c.review_catch_rate:.0%} "
             f"and investigators {c.siu_catch_rate:.0%} of fraud; escalating an honest claim costs "
             f"{c.honest_review_cost} (review) / {c.honest_siu_cost} (investigation); compute "
             f"{c.compute_per_decision} per decision", "",
             "## Bands", "", markdown_table(bands), "",
             "## Bayesian fusion against classifier-only routing at the same review budget", "",
             markdown_table(fusion), ""]
    if image:
        lines += ["## Trade-off", "", f"![trade-off]({image})", ""]
    top = study.curve.sort_values("expected_cost").head(10)
    lines += ["## Ten cheapest bands on the grid", "", markdown_table(top), ""]
    return "\n".join(lines)


def write_report(folder: Path, name: str, markdown: str, images: dict[str, bytes]) -> Path:
    """Write `name` (Markdown) and its PNGs into `folder`; returns the Markdown's path."""
    folder.mkdir(parents=True, exist_ok=True)
    for file, png in images.items():
        (folder / file).write_bytes(png)
    path = folder / name
    path.write_text(markdown)
    return path


@dataclass(frozen=True)
class WindowReport:
    """A backtest window pooled: the metrics table, the bounds verdict, the plots and the written report."""

    days: list[str]
    table: pd.DataFrame
    role: str
    bounds: dict
    broken: list[str]
    pooled: dict
    images: dict[str, bytes]
    path: Path


def backtest_window_report(settings: Settings, days: list[str], scored: pd.DataFrame, bounds: dict,
                           runs: str) -> WindowReport:
    """Pool the window's scored rows, check the bounds of their role, and write the report (Markdown, the
    reliability diagram and the per-partition measures) under `<home>/reports/backtest-<first>_<last>/`."""
    from aios.usecases.backtest import labelled_by_share, reports_dir, training_cutoff
    from aios.usecases.plots import calibration_plot, partition_plot
    from models.backtest import check_bounds, metrics_table, reliability_by_role

    table = metrics_table(scored)
    role = bounds.get("role", "champion")
    pooled = table[(table["partition"] == "ALL") & (table["role"] == role)].iloc[0].to_dict()
    broken = check_bounds(pooled, bounds)
    title = f"{days[0]} .. {days[-1]}"
    images = {"reliability.png": calibration_plot(reliability_by_role(scored), f"p_fraud, pooled {title}"),
              "per_partition.png": partition_plot(table, f"backtest {title}")}
    models = ", ".join(f"{r} = {m}" for r, m in table.groupby("role")["model"].first().items())
    notes = [f"models: {models}", f"labels joined by claim id from {settings.history_path}", runs]
    for role_name in sorted(table["role"].unique()):
        cutoff = training_cutoff(settings, role_name)
        if cutoff:
            notes.append(f"{role_name} trained on labels that had arrived by {cutoff}: "
                         f"{labelled_by_share(settings, days, cutoff):.1%} of the window's claims "
                         f"(the rest is out of sample)")
    md = backtest_markdown(table, days, {"Reliability diagram": "reliability.png",
                                         "Per-partition measures": "per_partition.png"}, broken, notes)
    path = write_report(reports_dir(settings) / f"backtest-{days[0]}_{days[-1]}", "report.md", md, images)
    return WindowReport(days, table, role, bounds, broken, pooled, images, path)


@dataclass(frozen=True)
class ThresholdReport:
    """The routing bands' economics over a window: the study, the model it judged, the plot, the report."""

    study: ThresholdStudy
    model: str
    image: bytes
    path: Path


def threshold_window_report(settings: Settings, days: list[str], scored: pd.DataFrame, policy: Any,
                            costs: Any) -> ThresholdReport:
    """Study the champion's routing bands over the window's labelled claims against `costs`, and write the
    report (Markdown and the trade-off plot) under `<home>/reports/thresholds-<first>_<last>/`."""
    from aios.usecases.backtest import reports_dir
    from aios.usecases.plots import threshold_plot
    from models.economics import check_bands_match_policy, threshold_study

    champ = scored[(scored["role"] == "champion") & scored["is_fraud"].notna()]
    current = check_bands_match_policy(champ["p_fraud"].to_numpy(), champ["amount"].to_numpy(), policy)
    study = threshold_study(champ["p_fraud"].to_numpy(), champ["score"].to_numpy(), champ["amount"].to_numpy(),
                            champ["is_fraud"].to_numpy(), current, costs)
    title = f"{days[0]} .. {days[-1]}"
    png = threshold_plot(study, f"routing bands, {title}")
    model = str(champ["model"].iat[0])
    notes = [f"model: {model} (champion), policy {policy.label}",
             f"{len(champ):,} labelled claims, {int(champ['is_fraud'].sum())} frauds"]
    md = thresholds_markdown(study, days, "trade_off.png", notes)
    path = write_report(reports_dir(settings) / f"thresholds-{days[0]}_{days[-1]}", "report.md", md,
                        {"trade_off.png": png})
    return ThresholdReport(study, model, png, path)
