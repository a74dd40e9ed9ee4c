"""The calibrated fraud classifier: gradient boosting with isotonic calibration, for any tabular frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

# Most rows scored in one call when computing feature contributions (occlusions stacked).
OCCLUSION_ROWS_PER_CALL = 262_144


def _categorical_columns(X: pd.DataFrame) -> list[str]:
    return [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c]) or isinstance(X[c].dtype, pd.CategoricalDtype)]


def make_pipeline(X: pd.DataFrame, seed: int = 0) -> Pipeline:
    """Ordinal-encode the categorical columns (unknown → missing), then histogram gradient boosting."""
    cats = _categorical_columns(X)
    nums = [c for c in X.columns if c not in cats]
    encode = ColumnTransformer(
        [("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                encoded_missing_value=-1), cats),
         ("num", "passthrough", nums)],
        verbose_feature_names_out=False,
    )
    model = HistGradientBoostingClassifier(
        learning_rate=0.06, max_iter=300, max_leaf_nodes=15, min_samples_leaf=40, l2_regularization=1.0,
        categorical_features=[True] * len(cats) + [False] * len(nums), early_stopping=True,
        validation_fraction=0.15, n_iter_no_change=20, random_state=seed,
    )
    return Pipeline([("encode", encode), ("model", model)])


def fit_calibrated_classifier(X: pd.DataFrame, y: pd.Series, *, calibration_share: float = 0.3,
                              seed: int = 0) -> CalibratedClassifierCV:
    """A fitted classifier with `predict_proba` whose probabilities are isotonic-calibrated.

    The boosting model is fitted on one stratified part of (X, y) and calibrated on the
    rest, so calibration is learned on rows the model has not seen. Works for any frame
    of numeric and categorical (object/category) columns; NaN means missing.
    """
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    y = pd.Series(np.asarray(y).astype(int), index=X.index)
    if y.nunique() != 2:
        raise ValueError("y must hold both classes (0 and 1)")
    X_fit, X_cal, y_fit, y_cal = train_test_split(X, y, test_size=calibration_share, stratify=y, random_state=seed)
    pipe = make_pipeline(X, seed).fit(X_fit, y_fit)
    calibrated = CalibratedClassifierCV(FrozenEstimator(pipe), method="isotonic")
    calibrated.fit(X_cal, y_cal)
    calibrated.aios_reference_ = reference_row(X_fit)
    return calibrated


def reference_row(X: pd.DataFrame) -> dict[str, object]:
    """A typical row (median of numeric, mode of categorical): the baseline for feature contributions."""
    ref: dict[str, object] = {}
    for c in X.columns:
        if c in _categorical_columns(X):
            ref[c] = X[c].mode(dropna=True).iloc[0]
        else:
            ref[c] = float(X[c].median(skipna=True))
    return ref


def score(model: CalibratedClassifierCV, X: pd.DataFrame) -> np.ndarray:
    """Calibrated probability of fraud per row."""
    return model.predict_proba(X[list(model.feature_names_in_)])[:, 1]


def feature_contributions(model: CalibratedClassifierCV, X: pd.DataFrame, base: np.ndarray | None = None) -> pd.DataFrame:
    """Per row and feature: how much the score drops when that feature is set to its typical value.

    Positive means the feature's actual value pushed the score up. Occlusion against the
    training reference row: one extra scoring pass per feature, exact for this model.
    """
    cols = list(model.feature_names_in_)
    ref = getattr(model, "aios_reference_", None) or reference_row(X[cols])
    base = np.asarray(score(model, X) if base is None else base, dtype=float)
    Xc = X[cols].reset_index(drop=True)
    out = np.empty((len(Xc), len(cols)))
    # All occlusions of a chunk of rows are scored in one call: the model scores each row on its own,
    # so the values are the same as one pass per feature, without paying the per-call overhead
    # (which dominates for the small batches of the sync API). Chunks bound the stacked frame's size.
    step = max(1, OCCLUSION_ROWS_PER_CALL // max(len(cols), 1))
    for start in range(0, len(Xc), step):
        chunk = Xc.iloc[start:start + step]
        stacked = []
        for c in cols:
            occluded = chunk.copy()
            occluded[c] = ref[c]
            stacked.append(occluded)
        scores = score(model, pd.concat(stacked, ignore_index=True)).reshape(len(cols), len(chunk))
        out[start:start + len(chunk)] = base[start:start + len(chunk), None] - scores.T
    return pd.DataFrame(out, columns=cols, index=X.index)
