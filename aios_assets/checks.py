"""Blocking asset checks that gate payouts: data quality of the batch and drift of its features.

The checks are declared on the assets that compute what they judge (`check_specs`), so
they see the partition's own data. Each verdict is also recorded in the gate store,
because a payout launched in a separate run is not stopped by Dagster's blocking checks
(DESIGN.md): the payout code consults that record and refuses.
"""

import dagster as dg
import pandas as pd

from aios.kernel.settings import get_settings
from aios_assets.metadata import image
from aios_resources import StoresResource

DATA_QUALITY = dg.AssetCheckSpec(
    "data_quality", asset="validated_claims", blocking=True,
    description="The quarantined share of the batch stays under the configured bound.")
DRIFT = dg.AssetCheckSpec(
    "drift", asset="claim_features", blocking=True,
    description="Claim features of the partition have not drifted from the training reference (Evidently).")


def data_quality_result(partition: str, valid_rows: int, quarantined_rows: int,
                        stores: StoresResource) -> dg.AssetCheckResult:
    """Pass when the quarantined share is within `quarantine_max_share` (and something landed)."""
    from connectors.stores.gates import record_gate

    bound = get_settings().quarantine_max_share
    total = valid_rows + quarantined_rows
    share = quarantined_rows / total if total else 0.0
    passed = total > 0 and share <= bound
    detail = (f"quarantined {quarantined_rows} of {total} rows ({share:.1%}); bound {bound:.1%}"
              if total else "no rows landed for this partition")
    record_gate(stores.engine(), partition, "data_quality", passed, detail)
    return dg.AssetCheckResult(check_name="data_quality", asset_key="validated_claims", passed=passed,
                               severity=dg.AssetCheckSeverity.ERROR, description=detail,
                               metadata={"quarantined_share": dg.MetadataValue.float(share), "bound": bound,
                                         "rows": total})


def drift_result(partition: str, features: pd.DataFrame, reference: pd.DataFrame,
                 stores: StoresResource) -> dg.AssetCheckResult:
    """Pass when the share of drifted feature columns is under `drift_share_threshold`; report saved as HTML."""
    from aios.usecases.plots import drift_plot
    from connectors.stores.gates import record_gate
    from models.drift import detect_drift

    s = get_settings()
    if features.empty:
        record_gate(stores.engine(), partition, "drift", False, "no claims to compare")
        return dg.AssetCheckResult(check_name="drift", asset_key="claim_features", passed=False,
                                   description="no claims to compare")
    html = s.artifacts_dir / "drift" / f"{partition}.html"
    verdict = detect_drift(reference, features[list(reference.columns)],
                           drift_share=s.drift_share_threshold, html_path=html)
    detail = (f"{len(verdict.drifted_columns)} of {len(verdict.scores)} columns drifted "
              f"(share {verdict.share:.2f}, threshold {s.drift_share_threshold:.2f})"
              + (f": {', '.join(verdict.drifted_columns)}" if verdict.drifted_columns else ""))
    record_gate(stores.engine(), partition, "drift", not verdict.drifted, detail)
    return dg.AssetCheckResult(
        check_name="drift", asset_key="claim_features", passed=not verdict.drifted,
        severity=dg.AssetCheckSeverity.ERROR, description=detail,
        metadata={
            "drift_share": dg.MetadataValue.float(verdict.share),
            "drifted_columns": dg.MetadataValue.json(verdict.drifted_columns),
            "p_values": dg.MetadataValue.json({k: round(v, 6) for k, v in verdict.scores.items()}),
            "report": dg.MetadataValue.path(str(html)),
            "drift_plot": image(drift_plot(verdict.scores, 0.05, f"drift {partition}")),
        })
