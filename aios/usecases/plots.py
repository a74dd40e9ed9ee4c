"""Plots a person would rather look at than read: calibration, score distribution, drift."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd


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


def calibration_plot(table: pd.DataFrame, title: str, path: Path | None = None) -> bytes:
    """Reliability diagram from a reliability table (mean_p, observed, count); returns PNG bytes."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    top = max(float(table["mean_p"].max()), float(table["observed"].max()), 0.05) * 1.1
    ax.plot([0, top], [0, top], "--", color="grey", label="perfect calibration")
    ax.plot(table["mean_p"], table["observed"], "o-", label="observed")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("predicted probability of fraud")
    ax.set_ylabel("observed fraud rate")
    ax.set_title(title)
    ax.legend(loc="upper left")
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
