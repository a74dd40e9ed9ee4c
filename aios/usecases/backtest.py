"""Backtest runs over the labelled history, shared by the Dagster assets and the `aios` commands.

Per history day: the day's features are frozen once as a content-addressed snapshot
(`<home>/backtest/snapshots/<hash>.parquet`); each model role (MLflow alias `champion`,
`challenger`) decides those rows with the one decision function and its own Bayesian network;
labels are joined by claim id; scored rows and metrics go to `<home>/backtest/results/<day>.*`.
A window's figures are read back from there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from aios.kernel.settings import PROJECT_ROOT, Settings
from models.backtest import Snapshot, join_labels, metrics_table, read_snapshot, write_snapshot

ROLES = ("champion", "challenger")
BOUNDS_PATH = PROJECT_ROOT / "bench" / "backtest_bounds.json"
DEFAULT_WINDOW_DAYS = 14


@dataclass(frozen=True)
class PartitionResult:
    """One backtested day: its snapshot, the scored rows of every role, and their metrics."""

    day: str
    snapshot: str
    scored: pd.DataFrame
    metrics: pd.DataFrame
    models: dict[str, str]
    skipped: dict[str, str]


def backtest_dir(settings: Settings) -> Path:
    """Root of the backtest's snapshots and results."""
    return settings.home / "backtest"


def reports_dir(settings: Settings) -> Path:
    """Where reports (Markdown + PNG) are written."""
    return settings.home / "reports"


# --------------------------------------------------------------------------------------------- history


@lru_cache(maxsize=2)
def _history(home: str, stamp: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    s = Settings(home=Path(home))
    claims = pd.read_parquet(s.history_path)
    claims["day"] = pd.to_datetime(claims["submitted_at"]).dt.strftime("%Y-%m-%d")
    docs = pd.read_parquet(s.data_dir / "history_documents.parquet")
    return claims, docs, pd.read_parquet(s.policies_path)


def load_history(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The labelled history (with a `day` column), its documents and the book of policies (cached per file)."""
    if not settings.history_path.exists():
        raise FileNotFoundError(f"no claims history at {settings.history_path}: run `aios generate` first")
    return _history(str(settings.home), settings.history_path.stat().st_mtime)


def history_days(settings: Settings) -> list[str]:
    """The days the history holds claims for, in order."""
    return sorted(load_history(settings)[0]["day"].unique())


def day_range(start: str, end: str) -> list[str]:
    """Every day from `start` to `end` inclusive (YYYY-MM-DD)."""
    a, b = date.fromisoformat(start), date.fromisoformat(end)
    if b < a:
        raise ValueError(f"window ends ({end}) before it starts ({start})")
    return [str(a + timedelta(days=i)) for i in range((b - a).days + 1)]


def resolve_window(settings: Settings, start: str | None, end: str | None,
                   days: int = DEFAULT_WINDOW_DAYS) -> list[str]:
    """The window's days: given bounds, or the last `days` days of history; refused outside the history."""
    known = history_days(settings)
    end = end or known[-1]
    start = start or str(date.fromisoformat(end) - timedelta(days=days - 1))
    window = day_range(start, end)
    missing = [d for d in window if d not in set(known)]
    if missing:
        raise ValueError(f"no history for {len(missing)} day(s) of {start}..{end} (history covers "
                         f"{known[0]}..{known[-1]})")
    return window


def build_snapshot(settings: Settings, day: str) -> Snapshot:
    """Freeze the features of `day`'s history claims as a content-addressed parquet snapshot."""
    from models.features import build_features

    claims, docs, policies = load_history(settings)
    today = claims[claims["day"] == day]
    if today.empty:
        raise ValueError(f"the history has no claims on {day}")
    features = build_features(today, docs[docs["claim_id"].isin(today["claim_id"])], policies)
    return write_snapshot(features, backtest_dir(settings) / "snapshots")


def day_labels(settings: Settings, day: str) -> pd.DataFrame:
    """claim_id, is_fraud and label_available_at of `day`'s claims."""
    claims = load_history(settings)[0]
    return claims.loc[claims["day"] == day, ["claim_id", "is_fraud", "label_available_at"]]


# --------------------------------------------------------------------------------------------- models


def load_role(settings: Settings, alias: str, policy: Any):  # -> DecisionModels
    """The decision models of one MLflow alias: classifier at the alias's version, its network, `policy`."""
    from aios.usecases.decision_models import models_by_alias

    return models_by_alias(settings, alias, policy)


def training_cutoff(settings: Settings, alias: str) -> str | None:
    """The day by which the labels `alias`'s model was trained on had arrived (its MLflow run's `as_of`)."""
    from mlflow import MlflowClient

    from connectors.registry import resolve_alias

    try:
        ref = resolve_alias(settings.mlflow_uri, settings.model_name, alias)
    except LookupError:
        return None
    client = MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)
    return client.get_run(ref.run_id).data.params.get("as_of")


def labelled_by_share(settings: Settings, days: list[str], as_of: str) -> float:
    """Share of the window's claims whose label had arrived by `as_of` (so they may be in a model's training data)."""
    claims = load_history(settings)[0]
    window = claims[claims["day"].isin(days)]
    return float((pd.to_datetime(window["label_available_at"]) <= pd.Timestamp(as_of)).mean())


def alias_exists(settings: Settings, alias: str) -> bool:
    """Whether the registry has `model_name@alias`."""
    from connectors.registry import resolve_alias

    try:
        resolve_alias(settings.mlflow_uri, settings.model_name, alias)
    except LookupError:
        return False
    return True


def train_challenger(settings: Settings, seed: int = 1, alias: str = "challenger") -> str:
    """Train a classifier like the champion's but with another seed (split, boosting, calibration), fit its
    network on its holdout scores, register it under `alias`; returns "name/version"."""
    from sklearn.metrics import roc_auc_score

    from models.bayes import evidence_frame, fit_network
    from models.calibration import brier_score, expected_calibration_error
    from models.classifier import fit_calibrated_classifier, score
    from connectors.registry import log_and_register
    from models.training import training_data

    claims, docs, policies = load_history(settings)
    as_of = str((pd.Timestamp(claims["submitted_at"].max()) + pd.Timedelta(days=1)).date())
    data = training_data(claims.drop(columns=["day"]), docs, policies, as_of=as_of)
    model = fit_calibrated_classifier(data.X_train, data.y_train, seed=seed)
    p = score(model, data.X_holdout)
    metrics = {"holdout_auc": float(roc_auc_score(data.y_holdout, p)),
               "holdout_brier": brier_score(p, data.y_holdout),
               "holdout_ece": expected_calibration_error(p, data.y_holdout)}
    ref = log_and_register(model, tracking_uri=settings.mlflow_uri, artifact_root=settings.mlflow_artifacts_dir,
                           name=settings.model_name, alias=alias, metrics=metrics,
                           params={"window_start": data.window[0], "window_end": data.window[1], "as_of": as_of,
                                   "estimator": "HistGradientBoosting+isotonic", "seed": seed, "role": alias})
    label = f"{ref.name}/{ref.version}"
    net = fit_network(evidence_frame(data.features_holdout, p), data.y_holdout,
                      meta={"classifier": label, "window": list(data.window), "role": alias})
    net.save(settings.network_path(net.version))
    return label


# --------------------------------------------------------------------------------------------- runs


def run_partition(settings: Settings, day: str, snapshot: str, policy: Any, roles: tuple[str, ...] = ROLES,
                  as_of: str | None = None) -> PartitionResult:
    """Decide the snapshot's claims with each role's models, join the labels, store and return the results.

    A role whose alias does not exist is skipped (and said so), not fatal; the champion must exist.
    """
    from models.decision import decide

    features = read_snapshot(backtest_dir(settings) / "snapshots", snapshot)
    labels = day_labels(settings, day)
    frames, models, skipped = [], {}, {}
    for role in roles:
        try:
            dm = load_role(settings, role, policy)
        except LookupError as exc:
            if role == "champion":
                raise
            skipped[role] = str(exc)
            continue
        scored = join_labels(decide(features, dm), labels, as_of)
        scored.insert(0, "partition", day)
        scored.insert(1, "role", role)
        scored.insert(2, "model", dm.versions["classifier"])
        scored["bayes_net"] = dm.network.version
        scored["snapshot"] = snapshot
        frames.append(scored)
        models[role] = dm.versions["classifier"]
    scored = pd.concat(frames, ignore_index=True)
    table = metrics_table(scored)
    table = table[table["partition"] != "ALL"].reset_index(drop=True)
    out = backtest_dir(settings) / "results"
    out.mkdir(parents=True, exist_ok=True)
    scored.to_parquet(out / f"{day}.parquet", index=False)
    (out / f"{day}.json").write_text(json.dumps({
        "partition": day, "snapshot": snapshot, "models": models, "skipped": skipped,
        "policy": policy.label, "labels_as_of": as_of,
        "metrics": table.drop(columns=["partition"]).to_dict("records")}, indent=1, default=float))
    return PartitionResult(day, snapshot, scored, table, models, skipped)


def missing_days(settings: Settings, days: list[str]) -> list[str]:
    """The days of `days` that have no stored backtest results yet."""
    folder = backtest_dir(settings) / "results"
    return [d for d in days if not (folder / f"{d}.parquet").exists()]


def load_window(settings: Settings, days: list[str]) -> pd.DataFrame:
    """The stored scored rows of every day of the window; refused when a day was not backtested or when
    the days were backtested with different models (mixing them would hide a change)."""
    folder = backtest_dir(settings) / "results"
    missing = missing_days(settings, days)
    if missing:
        raise FileNotFoundError(f"{len(missing)} day(s) not backtested yet ({missing[0]} .. {missing[-1]}): "
                                f"run `aios backtest --from {days[0]} --to {days[-1]}`")
    scored = pd.concat([pd.read_parquet(folder / f"{d}.parquet") for d in days], ignore_index=True)
    mixed = scored.groupby("role")["model"].nunique()
    if (mixed > 1).any():
        raise ValueError(f"the window mixes model versions for {list(mixed[mixed > 1].index)}: re-run the backtest "
                         f"for {days[0]}..{days[-1]}")
    return scored


def load_bounds(path: Path | None = None) -> dict[str, Any]:
    """The regression bounds (bench/backtest_bounds.json): the role they apply to and its limits."""
    return json.loads(Path(path or BOUNDS_PATH).read_text())
