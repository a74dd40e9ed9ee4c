"""Calibration measures: expected calibration error, reliability table, Brier score."""

from __future__ import annotations

import numpy as np
import pandas as pd


def reliability_table(p: np.ndarray, y: np.ndarray, n_bins: int = 10, strategy: str = "quantile") -> pd.DataFrame:
    """Per bin: count, mean predicted probability, observed frequency.

    `quantile` bins hold equal counts (the default: with rare positives, uniform bins leave
    the upper bins nearly empty); `uniform` bins split [0, 1] evenly.
    """
    p = np.asarray(p, dtype=float)
    y = np.asarray(y, dtype=float)
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    else:
        edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    frame = pd.DataFrame({"bin": idx, "p": p, "y": y})
    g = frame.groupby("bin")
    return pd.DataFrame({"count": g.size(), "mean_p": g["p"].mean(), "observed": g["y"].mean()}).reset_index(drop=True)


def expected_calibration_error(p: np.ndarray, y: np.ndarray, n_bins: int = 10, strategy: str = "quantile") -> float:
    """Count-weighted mean |mean predicted − observed frequency| over the bins."""
    t = reliability_table(p, y, n_bins, strategy)
    return float((t["count"] * (t["mean_p"] - t["observed"]).abs()).sum() / t["count"].sum())


def brier_score(p: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error of the probabilities against the 0/1 outcomes."""
    p = np.asarray(p, dtype=float)
    return float(np.mean((p - np.asarray(y, dtype=float)) ** 2))
