"""Data drift of a batch against a reference, with Evidently's DataDriftPreset."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class DriftVerdict:
    """Whether the batch drifted, the share of drifted columns, and per-column scores."""

    drifted: bool
    share: float
    drifted_columns: list[str]
    scores: dict[str, float]
    methods: dict[str, str] = field(default_factory=dict)
    html_path: str | None = None


def detect_drift(reference: pd.DataFrame, current: pd.DataFrame, *, drift_share: float = 0.5,
                 columns: list[str] | None = None, html_path: Path | None = None) -> DriftVerdict:
    """Compare `current` with `reference` column by column; drifted when the drifted share ≥ `drift_share`.

    Numeric columns use the two-sample Kolmogorov–Smirnov test, categorical ones chi-squared,
    each at p < 0.05 (scores are p-values): the test's sensitivity follows the batch size,
    where distance measures at a fixed threshold raise false alarms on small daily batches.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    cols = columns or [c for c in reference.columns if c in current.columns]
    # Evidently plots against the index; a string index (claim ids) breaks it.
    ref, cur = reference[cols].reset_index(drop=True), current[cols].reset_index(drop=True)
    num = [c for c in cols if pd.api.types.is_numeric_dtype(ref[c])]
    cat = [c for c in cols if c not in num]
    definition = DataDefinition(numerical_columns=num, categorical_columns=cat)
    report = Report([DataDriftPreset(drift_share=drift_share, num_method="ks", cat_method="chisquare")])
    snapshot = report.run(Dataset.from_pandas(cur, data_definition=definition),
                          Dataset.from_pandas(ref, data_definition=definition))
    scores, methods, drifted_cols, share = {}, {}, [], 0.0
    for m in snapshot.dict()["metrics"]:
        name = m.get("metric_name", "")
        if name.startswith("DriftedColumnsCount"):
            share = float(m["value"]["share"])
        elif name.startswith("ValueDrift(column="):
            params = dict(p.split("=", 1) for p in name[len("ValueDrift("):-1].split(","))
            col = params["column"]
            scores[col] = float(m["value"])
            methods[col] = params.get("method", "")
            if scores[col] < float(params.get("threshold", 0.05)):
                drifted_cols.append(col)
    path = None
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))
        path = str(html_path)
    return DriftVerdict(share >= drift_share, share, sorted(drifted_cols), scores, methods, path)
