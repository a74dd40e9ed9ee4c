"""Backtest and threshold-economics reports: the plots (PNG bytes) and Markdown a person reads.

The same plots go into the Markdown reports under `<home>/reports/` and into the Dagster
asset metadata, so the UI and the report show the same figures.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from models.calibration import reliability_table
from models.economics import ThresholdStudy

ROLE_COLOURS = {"champion": "#4c72b0", "challenger": "#dd8452"}
PARTITION_MEASURES = [("auc", "AUC of p_fraud"), ("ece", "ECE of p_fraud"), ("fraud_caught", "fraud caught"),
                      ("automation_rate", "automation rate"),
                      ("false_positive_escalations", "false-positive escalations"),
                      ("brier", "Brier score")]
SUMMARY_COLUMNS = ["claims", "labelled", "frauds", "auc", "brier", "ece", "automation_rate", "review_rate", "siu_rate",
                   "fraud_caught", "false_positive_escalations", "false_positive_rate", "expected_loss",
                   "realized_loss"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def reliability_plot(scored: pd.DataFrame, title: str, n_bins: int = 10) -> bytes:
    """Reliability diagram of `p_fraud` per role (labelled claims), PNG bytes."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    top = 0.05
    for role, g in scored[scored["is_fraud"].notna()].groupby("role", sort=True):
        t = reliability_table(g["p_fraud"].to_numpy(), g["is_fraud"].to_numpy(), n_bins)
        top = max(top, float(t["mean_p"].max()), float(t["observed"].max()))
        ax.plot(t["mean_p"], t["observed"], "o-", color=ROLE_COLOURS.get(role), label=f"{role} ({g['model'].iat[0]})")
    top *= 1.1
    ax.plot([0, top], [0, top], "--", color="grey", label="perfect calibration")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("predicted p_fraud (bin mean)")
    ax.set_ylabel("observed fraud rate")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def partition_plot(table: pd.DataFrame, title: str) -> bytes:
    """Per-partition measures (one panel each, one line per role), PNG bytes."""
    plt = _plt()
    import matplotlib.dates as mdates

    days = table[table["partition"] != "ALL"]
    fig, axes = plt.subplots(2, 3, figsize=(12, 5.5), sharex=True)
    for ax, (col, label) in zip(axes.ravel(), PARTITION_MEASURES):
        for role, g in days.groupby("role", sort=True):
            x = pd.to_datetime(g["partition"])
            ax.plot(x, g[col], "o-", ms=3, color=ROLE_COLOURS.get(role), label=role)
        ax.set_title(label, fontsize=10)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


def threshold_plot(study: ThresholdStudy, title: str) -> bytes:
    """Automation rate against expected cost per 1,000 claims over the band grid (left), and fraud caught
    against review budget for fusion and classifier-only ranking (right); PNG bytes."""
    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.6))
    c = study.curve
    sc = ax.scatter(c["automation_rate"], c["cost_per_1k"], c=c["refer_siu_min_p"], cmap="viridis", s=14)
    fig.colorbar(sc, ax=ax, label="refer-to-SIU band (p_fraud ≥)")
    # lower envelope: the least cost reachable at each automation rate or more
    env = c.sort_values("automation_rate", ascending=False)
    ax.plot(env["automation_rate"], env["cost_per_1k"].cummin(), color="black", lw=1, label="least cost frontier")
    marks = (("in force", study.current_eval, "#c44e52"), ("recommended", study.recommended_eval, "#55a868"))
    for name, ev, colour in marks:
        ax.scatter([ev["automation_rate"]], [ev["cost_per_1k"]], s=120, marker="*", color=colour, zorder=5,
                   label=f"{name}: {ev['cost_per_1k']:,.0f} {study.costs.currency}/1k")
    ax.set_xlabel("automation rate")
    ax.set_ylabel(f"expected cost per 1,000 claims ({study.costs.currency})")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    b = study.budget
    bx.plot(b["budget_share"], b["fusion_fraud_caught"], "o-", ms=3, label="Bayesian fusion (p_fraud)")
    bx.plot(b["budget_share"], b["classifier_fraud_caught"], "s--", ms=3, label="classifier only (score)")
    bx.axvline(1 - study.current_eval["automation_rate"], color="#c44e52", ls=":", label="budget in force")
    bx.set_xlabel("review budget (share of claims escalated to people)")
    bx.set_ylabel("fraud caught (share of frauds escalated)")
    bx.set_title("same budget: fusion against classifier-only", fontsize=10)
    bx.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


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
