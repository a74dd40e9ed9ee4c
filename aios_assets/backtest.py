"""Backtests, threshold economics and SLOs as assets, so their figures and plots live in the Dagster UI.

- `backtest_snapshot` → `backtest_report` (daily partitions over the labelled history): the day's
  features frozen as a content-addressed snapshot; champion and challenger decide the same rows.
- `backtest_summary` and `threshold_economics` (a window of days, run config): pooled measures,
  plots, the regression bounds as an asset check, the cost curve and the recommended bands.
- `slo_report` (daily partitions of the claims pipeline): p95 latency, override-rate change and
  drift share, each an asset check against config/slo.yaml.

The work is in `aios.usecases.backtest`, `models.backtest`, `models.economics` and `models.slo`; these
assets call them and attach metadata.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from aios.kernel.settings import Settings
from aios_assets.executors import HEAVY
from aios_assets.metadata import image
from aios_assets.partitions import daily_partitions
from aios_resources import InboxResource, ModelRegistryResource, PolicyResource, StoresResource

GROUP = "backtest"
SLO_GROUP = "observability"

BACKTEST_BOUNDS = dg.AssetCheckSpec(
    "backtest_bounds", asset="backtest_summary",
    description="Pooled calibration and fraud caught of the champion stay within the bounds file "
                "(bench/backtest_bounds.json unless the run config names another).")
SLO_CHECKS = [
    dg.AssetCheckSpec("latency_p95", asset="slo_report", description="p95 latency of one decision under its ceiling."),
    dg.AssetCheckSpec("override_rate_change", asset="slo_report",
                      description="The human override rate moved no more than the configured share."),
    dg.AssetCheckSpec("drift_share", asset="slo_report", description="The drifted feature share is under its ceiling."),
]


class WindowConfig(dg.Config):
    """A window of history days; empty bounds mean the last 14 days of history."""

    start: str = ""
    end: str = ""


class SummaryConfig(WindowConfig):
    """The window, and the regression-bounds file its check uses (empty: bench/backtest_bounds.json)."""

    bounds: str = ""


class EconomicsConfig(WindowConfig):
    """The window, and the cost model the bands are priced with (empty: config/costs.yaml)."""

    costs: str = ""


def _settings(inbox: InboxResource, registry: ModelRegistryResource) -> Settings:
    return Settings(home=Path(inbox.home), mlflow_tracking_uri=registry.tracking_uri, model_name=registry.model_name)


def _window(settings: Settings, config: WindowConfig) -> list[str]:
    from aios.usecases.backtest import resolve_window

    try:
        return resolve_window(settings, config.start or None, config.end or None)
    except (ValueError, FileNotFoundError) as exc:
        raise dg.Failure(str(exc)) from exc


def _scored_window(inbox: InboxResource, registry: ModelRegistryResource, config: WindowConfig):
    """Settings, the window's days, and the backtest rows scored for them (a Failure saying what is missing)."""
    from aios.usecases.backtest import load_window

    settings = _settings(inbox, registry)
    days = _window(settings, config)
    try:
        return settings, days, load_window(settings, days)
    except (FileNotFoundError, ValueError) as exc:
        raise dg.Failure(str(exc)) from exc


def _floats(prefix: str, metrics: dict) -> dict[str, dg.MetadataValue]:
    return {f"{prefix}{k}": dg.MetadataValue.float(float(v)) for k, v in metrics.items()}


@dg.asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"pandas", "parquet"},
          description="The day's history claims' features, frozen as a content-addressed parquet snapshot.")
def backtest_snapshot(context: dg.AssetExecutionContext, inbox: InboxResource,
                      registry: ModelRegistryResource) -> dg.Output[str]:
    """The content hash of the day's frozen feature snapshot."""
    from aios.usecases.backtest import build_snapshot
    from models.features import feature_version

    try:
        snap = build_snapshot(_settings(inbox, registry), context.partition_key)
    except (ValueError, FileNotFoundError) as exc:
        raise dg.Failure(str(exc)) from exc
    return dg.Output(snap.hash, metadata={"snapshot": snap.hash, "path": dg.MetadataValue.path(str(snap.path)),
                                          "rows": snap.rows, "feature_version": feature_version()})


@dg.asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"mlflow", "pgmpy"}, op_tags=HEAVY,
          description="Champion and challenger (MLflow aliases) decide the same frozen snapshot; labels joined "
                      "by claim id; AUC, Brier, ECE, automation, fraud caught, false positives, expected loss.")
def backtest_report(context: dg.AssetExecutionContext, backtest_snapshot: str, inbox: InboxResource,
                    registry: ModelRegistryResource, policy: PolicyResource) -> dg.MaterializeResult:
    """Champion against challenger on the day's snapshot: metrics and reliability diagram."""
    from aios.usecases.backtest import run_partition
    from aios.usecases.backtest_report import markdown_table
    from aios.usecases.plots import calibration_plot
    from models.backtest import reliability_by_role

    day = context.partition_key
    result = run_partition(_settings(inbox, registry), day, backtest_snapshot, policy.load())
    for role, why in result.skipped.items():
        context.log.warning(f"{role} skipped: {why}")
    meta: dict = {"snapshot": result.snapshot, "models": dg.MetadataValue.json(result.models),
                  "metrics": dg.MetadataValue.md(markdown_table(result.metrics.drop(columns=["partition"]))),
                  "reliability_diagram": image(calibration_plot(reliability_by_role(result.scored), f"p_fraud {day}"),
                                               "reliability")}
    for row in result.metrics.to_dict("records"):
        meta.update(_floats(f"{row['role']}_", {k: row[k] for k in ("auc", "brier", "ece", "automation_rate",
                                                                     "fraud_caught", "false_positive_escalations",
                                                                     "expected_loss")}))
    return dg.MaterializeResult(metadata=meta)


@dg.asset(group_name=GROUP, deps=[backtest_report], kinds={"pandas"}, check_specs=[BACKTEST_BOUNDS],
          description="A window of backtested days pooled: champion against challenger, reliability diagram, "
                      "per-partition measures; the regression bounds checked.")
def backtest_summary(context: dg.AssetExecutionContext, config: SummaryConfig, inbox: InboxResource,
                     registry: ModelRegistryResource) -> dg.MaterializeResult:
    """The backtest window pooled, with the regression-bounds check; the report written under reports/."""
    from aios.usecases.backtest import load_bounds
    from aios.usecases.backtest_report import backtest_window_report, markdown_table, summary_frame

    settings, days, scored = _scored_window(inbox, registry, config)
    bounds_path = Path(config.bounds) if config.bounds else None
    try:
        bounds = load_bounds(bounds_path)
    except (OSError, ValueError) as exc:
        raise dg.Failure(f"bounds file {config.bounds or 'bench/backtest_bounds.json'}: {exc}") from exc
    report = backtest_window_report(settings, days, scored, bounds,
                                    f"Dagster runs: backtest_job × {len(days)}, backtest_summary_job {context.run_id}")
    title = f"{days[0]} .. {days[-1]}"
    meta = {"window": title, "partitions": len(days), "report": dg.MetadataValue.path(str(report.path)),
            "summary": dg.MetadataValue.md(markdown_table(summary_frame(report.table))),
            "reliability_diagram": image(report.images["reliability.png"], "reliability"),
            "per_partition": image(report.images["per_partition.png"], "per-partition measures")}
    for row in report.table[report.table["partition"] == "ALL"].to_dict("records"):
        meta.update(_floats(f"{row['role']}_", {k: row[k] for k in ("auc", "brier", "ece", "automation_rate",
                                                                     "fraud_caught", "false_positive_escalations",
                                                                     "expected_loss", "realized_loss")}))
    check = dg.AssetCheckResult(
        check_name="backtest_bounds", passed=not report.broken, severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(report.broken) or f"{report.role} within bounds over {title}",
        metadata={"bounds": dg.MetadataValue.json(bounds), "role": report.role,
                  "bounds_file": str(bounds_path or "bench/backtest_bounds.json"),
                  "ece": float(report.pooled["ece"]), "fraud_caught": float(report.pooled["fraud_caught"])})
    return dg.MaterializeResult(metadata=meta, check_results=[check])


@dg.asset(group_name=GROUP, deps=[backtest_report], kinds={"pandas"},
          description="Automation rate against expected cost over a grid of routing bands (config/costs.yaml), "
                      "the recommended bands, cost per 1,000 decisions, and Bayesian fusion against "
                      "classifier-only routing at the same review budget.")
def threshold_economics(context: dg.AssetExecutionContext, config: EconomicsConfig, inbox: InboxResource,
                        registry: ModelRegistryResource, policy: PolicyResource) -> dg.MaterializeResult:
    """Automation against expected cost over a grid of routing bands, and the recommended bands; the report
    written under reports/."""
    from aios.usecases.backtest_report import markdown_table, study_frames, threshold_window_report
    from models.economics import load_costs

    settings, days, scored = _scored_window(inbox, registry, config)
    pol = policy.load()
    report = threshold_window_report(settings, days, scored, pol, load_costs(Path(config.costs) if config.costs
                                                                             else None))
    study = report.study
    bands, fusion = study_frames(study)
    f = study.fusion_current
    return dg.MaterializeResult(metadata={
        "window": f"{days[0]} .. {days[-1]}", "model": report.model, "policy": pol.label,
        "report": dg.MetadataValue.path(str(report.path)), "currency": study.costs.currency,
        "recommended_bands": dg.MetadataValue.json(study.recommended.as_dict()),
        "bands_in_force": dg.MetadataValue.json(study.current.as_dict()),
        "cost_per_1k_in_force": dg.MetadataValue.float(study.current_eval["cost_per_1k"]),
        "cost_per_1k_recommended": dg.MetadataValue.float(study.recommended_eval["cost_per_1k"]),
        "operating_cost_per_1k": dg.MetadataValue.float(study.current_eval["operating_cost_per_1k"]),
        "fusion_false_positive_change": dg.MetadataValue.float(f.false_positive_change),
        "bands": dg.MetadataValue.md(markdown_table(bands)),
        "fusion_vs_classifier": dg.MetadataValue.md(markdown_table(fusion)),
        "trade_off": image(report.image, "threshold trade-off"),
    })


@dg.asset(partitions_def=daily_partitions, group_name=SLO_GROUP, kinds={"python"}, deps=["decisions"],
          check_specs=SLO_CHECKS, automation_condition=dg.AutomationCondition.eager(),
          description="The partition against its SLOs (config/slo.yaml): p95 latency of one decision, "
                      "the human override rate's change, the drifted feature share.")
def slo_report(context: dg.AssetExecutionContext, claim_features: pd.DataFrame, inbox: InboxResource,
               registry: ModelRegistryResource, policy: PolicyResource,
               stores: StoresResource) -> dg.MaterializeResult:
    """The partition against its SLOs: decision latency, override-rate change, drifted share."""
    import time

    from connectors.stores.alarms import latest_drift_gate, review_outcomes
    from aios.usecases.backtest import load_role
    from models.decision import decide
    from models.slo import (
        drift_share_of,
        evaluate_drift,
        evaluate_latency,
        evaluate_override,
        load_slo,
        override_change,
        override_counts,
    )

    slo = load_slo()
    part = context.partition_key
    latencies = []
    if len(claim_features):
        models = load_role(_settings(inbox, registry), registry.alias, policy.load())
        decide(claim_features.iloc[[0]], models)  # first call pays one-off costs no request pays again
        for i in range(min(slo.latency.probe_claims, len(claim_features))):
            t = time.perf_counter()
            decide(claim_features.iloc[[i]], models)
            latencies.append(time.perf_counter() - t)
    engine = stores.engine()
    change = override_change(override_counts(review_outcomes(engine)), part, slo)
    gate = latest_drift_gate(engine, part)
    share = drift_share_of(gate[1]) if gate else None
    verdicts = [evaluate_latency(latencies, slo), evaluate_override(change, slo),
                evaluate_drift(share, gate[0] if gate else True, slo)]
    checks = [dg.AssetCheckResult(check_name=v.name, passed=v.passed, severity=dg.AssetCheckSeverity.WARN,
                                  description=v.detail, metadata={"value": dg.MetadataValue.float(v.value),
                                                                  "limit": dg.MetadataValue.float(v.limit)})
              for v in verdicts]
    return dg.MaterializeResult(check_results=checks, metadata={
        "slo_version": slo.version, **{v.name: dg.MetadataValue.float(v.value) for v in verdicts},
        "override_rate": dg.MetadataValue.float(change.rate),
        "override_baseline": dg.MetadataValue.float(change.baseline),
        "reviewed": change.reviewed, "drift_gate": gate[1] if gate else "not evaluated"})


backtest_job = dg.define_asset_job(
    "backtest_job", selection=dg.AssetSelection.assets(backtest_snapshot, backtest_report),
    partitions_def=daily_partitions,
    description="Backtest one history day: frozen snapshot, champion and challenger decisions, metrics.")
backtest_summary_job = dg.define_asset_job(
    "backtest_summary_job", selection=dg.AssetSelection.assets(backtest_summary, threshold_economics),
    description="Pool a window of backtested days and study the routing bands' economics.")
slo_job = dg.define_asset_job(
    "slo_job", selection=dg.AssetSelection.assets(slo_report), partitions_def=daily_partitions,
    description="Evaluate a partition against its SLOs (launched by the alarm sensor).")
