"""Plots a person would rather look at than read: calibration, score distribution, drift, and the
backtest's per-partition measures and routing-band trade-off. The one plot module: the same PNG bytes go
into the Dagster asset metadata and into the Markdown reports under `<home>/reports/`."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from models.economics import ThresholdStudy

ROLE_COLOURS = {"champion": "#4c72b0", "challenger": "#dd8452"}
PARTITION_MEASURES = [("auc", "AUC of p_fraud"), ("ece", "ECE of p_fraud"), ("fraud_caught", "fraud caught"),
                      ("automation_rate", "automation rate"),
                      ("false_positive_escalations", "false-positive escalations"),
                      ("brier", "Brier score")]


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path | None) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    data = buf.getvalue()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    _figure().close(fig)
    return data


def calibration_plot(curves: pd.DataFrame | Mapping[str, pd.DataFrame], title: str,
                     path: Path | None = None) -> bytes:
    """Reliability diagram from one reliability table (mean_p, observed, count) or several by label (one line
    each, coloured by the label's first word when it names a model role); returns PNG bytes."""
    plt = _figure()
    curves = {"observed": curves} if isinstance(curves, pd.DataFrame) else dict(curves)
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    top = max([0.05] + [max(float(t["mean_p"].max()), float(t["observed"].max())) for t in curves.values()]) * 1.1
    ax.plot([0, top], [0, top], "--", color="grey", label="perfect calibration")
    for label, t in curves.items():
        ax.plot(t["mean_p"], t["observed"], "o-", color=ROLE_COLOURS.get(label.split(" ")[0]), label=label)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("predicted p_fraud (bin mean)")
    ax.set_ylabel("observed fraud rate")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def histogram_plot(values: np.ndarray, title: str, xlabel: str, path: Path | None = None,
                   marks: dict[str, float] | None = None) -> bytes:
    """Histogram (log count axis) with optional vertical marks such as routing thresholds."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(values, bins=50, color="#4c72b0")
    ax.set_yscale("log")
    for label, x in (marks or {}).items():
        ax.axvline(x, color="#c44e52", linestyle="--")
        ax.text(x, ax.get_ylim()[1], f" {label}", rotation=90, va="top", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _save(fig, path)


def drift_plot(scores: dict[str, float], threshold: float, title: str, path: Path | None = None) -> bytes:
    """Per-column drift p-values against the test threshold (bars below the line drifted)."""
    plt = _figure()
    cols = sorted(scores)
    vals = [max(scores[c], 1e-300) for c in cols]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(cols) + 1))
    colors = ["#c44e52" if v < threshold else "#55a868" for v in vals]
    ax.barh(cols, vals, color=colors)
    ax.axvline(threshold, color="black", linestyle="--")
    ax.set_xscale("log")
    ax.set_xlabel("p-value (lower = more drift)")
    ax.set_title(title)
    return _save(fig, path)


def partition_plot(table: pd.DataFrame, title: str) -> bytes:
    """Per-partition measures (one panel each, one line per role), PNG bytes."""
    plt = _figure()
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
    return _save(fig, None)


def threshold_plot(study: ThresholdStudy, title: str) -> bytes:
    """Automation rate against expected cost per 1,000 claims over the band grid (left), and fraud caught
    against review budget for fusion and classifier-only ranking (right); PNG bytes."""
    plt = _figure()
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
    return _save(fig, None)
