"""Training data from the labelled history: a time split into a classifier part and a later holdout."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from models.features import FEATURE_COLUMNS, build_features


@dataclass(frozen=True)
class TrainingData:
    """Features and labels: `train` for the classifier, the later `holdout` for the network and metrics."""

    X_train: pd.DataFrame
    y_train: pd.Series
    X_holdout: pd.DataFrame
    y_holdout: pd.Series
    features_holdout: pd.DataFrame  # with `amount`, for the network's evidence
    window: tuple[str, str]
    as_of: str


def training_data(history: pd.DataFrame, documents: pd.DataFrame, policies: pd.DataFrame, as_of: str,
                  holdout_share: float = 0.3) -> TrainingData:
    """Claims whose label had arrived by `as_of`, split by submission time (the holdout is the latest part)."""
    cutoff = pd.Timestamp(as_of)
    labelled = history[history["label_available_at"] <= cutoff].sort_values("submitted_at").reset_index(drop=True)
    if labelled["is_fraud"].sum() < 20:
        raise ValueError(f"only {int(labelled['is_fraud'].sum())} labelled fraud cases before {as_of}: too few to train")
    features = build_features(labelled, documents[documents["claim_id"].isin(labelled["claim_id"])], policies)
    y = labelled.set_index("claim_id")["is_fraud"].astype(int).reindex(features.index)
    n_hold = int(len(features) * holdout_share)
    split = len(features) - n_hold
    window = (str(labelled["submitted_at"].min().date()), str(labelled["submitted_at"].max().date()))
    return TrainingData(
        X_train=features.iloc[:split][FEATURE_COLUMNS], y_train=y.iloc[:split],
        X_holdout=features.iloc[split:][FEATURE_COLUMNS], y_holdout=y.iloc[split:],
        features_holdout=features.iloc[split:], window=window, as_of=as_of,
    )
