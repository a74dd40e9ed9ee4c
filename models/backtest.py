"""Backtest metrics: how a model's decisions on a past partition fared once the fraud labels arrived.

A partition's features are frozen once as a content-addressed snapshot, so the champion and
the challenger are judged on exactly the same rows. Each model's decisions (from the one
decision function) are joined with the labels by claim id; claims whose label had not
arrived by `as_of` count for routing rates but not for the label-based measures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aios.kernel.canonical import canonical_json, sha256_text
from models.calibration import brier_score, expected_calibration_error, reliability_table
from models.routes import AUTO, routing_rates

SCORED_COLUMNS = ["claim_id", "amount", "score", "p_fraud", "route", "is_fraud"]
# Measures the bounds file may constrain: name -> whether higher is better.
BOUNDED = {"auc": True, "brier": False, "ece": False, "fraud_caught": True, "automation_rate": True,
           "false_positive_rate": False}


@dataclass(frozen=True)
class Snapshot:
    """A frozen feature snapshot: content hash, parquet path, rows."""

    hash: str
    path: Path
    rows: int


def features_hash(features: pd.DataFrame) -> str:
    """Content hash of a feature frame, the decision path's scheme: each row hashed as the canonical JSON of
    its values (`models.decision.snapshot_hash`, the hash a decision records), then the canonical JSON of the
    index name, the columns in order and those row hashes. It does not depend on the pandas version."""
    from models.decision import snapshot_hash, snapshot_records  # the decision path's scheme; heavy imports

    rows = [snapshot_hash(r) for r in snapshot_records(features)]
    return "snap-" + sha256_text(canonical_json({"index": features.index.name,
                                                "columns": [str(c) for c in features.columns],
                                                "rows": rows}))[:16]


def write_snapshot(features: pd.DataFrame, root: Path) -> Snapshot:
    """Store `features` under `root/<hash>.parquet` (written once; the same content is never rewritten)."""
    digest = features_hash(features)
    path = Path(root) / f"{digest}.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        features.to_parquet(tmp)
        tmp.replace(path)
    return Snapshot(digest, path, len(features))


def read_snapshot(root: Path, digest: str) -> pd.DataFrame:
    """The snapshot `digest` from `root`, refused when its content no longer matches its name."""
    path = Path(root) / f"{digest}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"feature snapshot {digest} not found under {root}")
    features = pd.read_parquet(path)
    got = features_hash(features)
    if got != digest:
        raise ValueError(f"feature snapshot {path} was altered: content hash {got}, expected {digest}")
    return features


def join_labels(decisions: pd.DataFrame, labels: pd.DataFrame, as_of: str | None = None) -> pd.DataFrame:
    """Decisions (claim_id, amount, score, p_fraud, route) with `is_fraud` joined by claim id.

    `labels` has claim_id, is_fraud and label_available_at; a label that arrived after `as_of`
    (or never) leaves `is_fraud` NaN.
    """
    lab = labels.set_index("claim_id")
    known = lab["is_fraud"].astype(float)
    if as_of is not None:
        known = known.where(pd.to_datetime(lab["label_available_at"]) <= pd.Timestamp(as_of))
    out = decisions[[c for c in SCORED_COLUMNS if c != "is_fraud"]].copy()
    out["claim_id"] = out["claim_id"].astype(str)
    out["is_fraud"] = out["claim_id"].map(known).astype(float)
    return out.reset_index(drop=True)


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC, NaN when the partition holds only one class."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < int(np.sum(y == 1)) < len(y) else float("nan")


def partition_metrics(scored: pd.DataFrame, ece_bins: int = 10) -> dict[str, float]:
    """Backtest measures of one partition (or a pooled window) of scored, labelled claims.

    Routing rates are over all claims; AUC, Brier and ECE of `p_fraud`, fraud caught
    (share of frauds escalated to a person or investigators) and false-positive escalations
    (honest claims escalated) over the labelled ones. `expected_loss` is the model's own
    expectation of fraud paid out (Σ p_fraud × amount over auto-approved claims);
    `realized_loss` is the amount of labelled fraud that was auto-approved.
    """
    n = len(scored)
    route = scored["route"].to_numpy(dtype=object)
    auto = route == AUTO
    lab = scored["is_fraud"].notna().to_numpy()
    y = scored["is_fraud"].to_numpy(dtype=float)[lab]
    p = scored["p_fraud"].to_numpy(dtype=float)
    amount = scored["amount"].to_numpy(dtype=float)
    esc = ~auto[lab]
    frauds = int(y.sum())
    honest = int(len(y) - frauds)
    nan = float("nan")
    rates = routing_rates(route)
    return {
        "claims": float(n),
        "labelled": float(lab.sum()),
        "frauds": float(frauds),
        "auc": _auc(p[lab], y),
        "brier": brier_score(p[lab], y) if len(y) else nan,
        "ece": expected_calibration_error(p[lab], y, n_bins=ece_bins) if len(y) else nan,
        "automation_rate": rates["automation_rate"],
        "review_rate": rates["review_rate"],
        "siu_rate": rates["siu_rate"],
        "fraud_caught": float((esc & (y == 1)).sum() / frauds) if frauds else nan,
        "false_positive_escalations": float((esc & (y == 0)).sum()),
        "false_positive_rate": float((esc & (y == 0)).sum() / honest) if honest else nan,
        "expected_loss": float((p[auto] * amount[auto]).sum()),
        "realized_loss": float((y * amount[lab] * auto[lab]).sum()),
    }


def metrics_table(scored: pd.DataFrame, ece_bins: int = 10) -> pd.DataFrame:
    """One row of `partition_metrics` per (partition, role) of a scored frame, plus pooled rows (partition "ALL")."""
    rows = []
    for (part, role), g in scored.groupby(["partition", "role"], sort=True):
        rows.append({"partition": part, "role": role, "model": str(g["model"].iat[0]),
                     **partition_metrics(g, ece_bins)})
    for role, g in scored.groupby("role", sort=True):
        rows.append({"partition": "ALL", "role": role, "model": str(g["model"].iat[0]),
                     **partition_metrics(g, ece_bins)})
    return pd.DataFrame(rows)


def check_bounds(metrics: dict[str, float], bounds: dict[str, Any]) -> list[str]:
    """Each bound the pooled metrics break, as a sentence; empty when all hold.

    `bounds` maps `<measure>_min` / `<measure>_max` (measures in `BOUNDED`) to numbers;
    other keys (e.g. `role`, `description`) are ignored. A measure that is NaN breaks its bound.
    """
    broken = []
    for key, limit in bounds.items():
        if not (key.endswith("_min") or key.endswith("_max")):
            continue
        measure, kind = key[:-4], key[-3:]
        if measure not in BOUNDED:
            raise ValueError(f"bound {key!r}: unknown measure {measure!r} (known: {sorted(BOUNDED)})")
        value = float(metrics[measure])
        if np.isnan(value) or (kind == "min" and value < limit) or (kind == "max" and value > limit):
            broken.append(f"{measure} = {value:.4f} breaks {key} = {limit}")
    return broken


def reliability_by_role(scored: pd.DataFrame, n_bins: int = 10) -> dict[str, pd.DataFrame]:
    """The reliability table of `p_fraud` over the labelled claims of each role, keyed "<role> (<model>)"."""
    return {f"{role} ({g['model'].iat[0]})": reliability_table(g["p_fraud"].to_numpy(), g["is_fraud"].to_numpy(), n_bins)
            for role, g in scored[scored["is_fraud"].notna()].groupby("role", sort=True)}
