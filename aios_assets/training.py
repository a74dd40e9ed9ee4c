"""Unpartitioned model assets: the registered fraud classifier, the Bayesian network, the drift reference."""


import dagster as dg
import pandas as pd

from aios_assets.metadata import image
from aios_resources import InboxResource, ModelRegistryResource, StoresResource

DRIFT_REFERENCE_ROWS = 5000


def _training_data(inbox: InboxResource):
    from models.training import training_data

    s = inbox.settings
    if not s.history_path.exists():
        raise dg.Failure(f"claims history {s.history_path} is missing: run `aios generate` first")
    history = pd.read_parquet(s.history_path)
    docs = pd.read_parquet(s.data_dir / "history_documents.parquet")
    as_of = str((pd.Timestamp(history["submitted_at"].max()) + pd.Timedelta(days=1)).date())
    return training_data(history, docs, inbox.policies(), as_of=as_of)


@dg.asset(group_name="training", kinds={"sklearn", "mlflow"},
          description="Calibrated fraud classifier trained on labelled history, registered in MLflow as @champion.")
def fraud_model(context: dg.AssetExecutionContext, inbox: InboxResource, registry: ModelRegistryResource,
                stores: StoresResource) -> dg.MaterializeResult:
    """The calibrated fraud classifier, registered in MLflow as @champion."""
    from sklearn.metrics import roc_auc_score

    from aios.usecases.plots import calibration_plot
    from models.calibration import brier_score, expected_calibration_error, reliability_table
    from models.classifier import fit_calibrated_classifier, score
    from connectors.registry import log_and_register

    data = _training_data(inbox)
    model = fit_calibrated_classifier(data.X_train, data.y_train)
    p = score(model, data.X_holdout)
    metrics = {
        "holdout_auc": float(roc_auc_score(data.y_holdout, p)),
        "holdout_brier": brier_score(p, data.y_holdout),
        "holdout_ece": expected_calibration_error(p, data.y_holdout),
        "train_rows": float(len(data.X_train)),
        "holdout_rows": float(len(data.X_holdout)),
        "fraud_rate": float(data.y_train.mean()),
    }
    plot_path = registry.artifact_root.parent / "artifacts" / "calibration.png"
    png = calibration_plot(reliability_table(p, data.y_holdout), "fraud_model on holdout", plot_path)
    ref = log_and_register(
        model, tracking_uri=registry.tracking_uri, artifact_root=registry.artifact_root, name=registry.model_name,
        alias=registry.alias, metrics=metrics,
        params={"window_start": data.window[0], "window_end": data.window[1], "as_of": data.as_of,
                "estimator": "HistGradientBoosting+isotonic"},
        artifacts={"calibration": plot_path},
    )
    context.log.info(f"registered {ref.name} version {ref.version} as @{registry.alias}")
    from connectors.stores.audit import record_change

    record_change(stores.engine(), "model_alias_set", f"dagster:{context.run_id}",
                  {"model": ref.name, "alias": registry.alias, "version": ref.version, "mlflow_run_id": ref.run_id,
                   "metrics": metrics}, versions={"classifier": f"{ref.name}/{ref.version}"})
    return dg.MaterializeResult(metadata={
        "model": f"{ref.name}/{ref.version}", "alias": registry.alias, "mlflow_run_id": ref.run_id,
        "training_window": f"{data.window[0]} .. {data.window[1]}",
        **{k: dg.MetadataValue.float(v) for k, v in metrics.items()},
        "calibration_curve": image(png, "reliability diagram"),
    })


@dg.asset(group_name="training", deps=[fraud_model], kinds={"pgmpy"},
          description="Bayesian network fusing the champion's score band with rule signals; fit on the holdout.")
def bayes_network(context: dg.AssetExecutionContext, inbox: InboxResource,
                  registry: ModelRegistryResource) -> dg.MaterializeResult:
    """The Bayesian network fusing the champion's score band with rule signals."""
    from aios.usecases.plots import calibration_plot
    from models.bayes import evidence_frame, fit_network
    from models.calibration import expected_calibration_error, reliability_table
    from models.classifier import score
    from models.fusion import compile_network, fuse

    data = _training_data(inbox)
    model, version = registry.load_champion()
    s = score(model, data.X_holdout)
    evidence = evidence_frame(data.features_holdout, s)
    net = fit_network(evidence, data.y_holdout, meta={"classifier": f"{registry.model_name}/{version}",
                                                      "window": list(data.window)})
    path = net.save(registry.network_path(net.version))
    net.save(registry.network_path())
    fusion = fuse(compile_network(net), evidence)
    ece = expected_calibration_error(fusion.p_fraud, data.y_holdout)
    png = calibration_plot(reliability_table(fusion.p_fraud, data.y_holdout), "p_fraud (in-sample)")
    context.log.info(f"bayes network {net.version} saved to {path}")
    return dg.MaterializeResult(metadata={
        "version": net.version, "path": dg.MetadataValue.path(str(path)),
        "fit_rows": len(evidence), "classifier": f"{registry.model_name}/{version}",
        "posterior_ece_in_sample": dg.MetadataValue.float(ece),
        "calibration_curve": image(png, "posterior reliability"),
    })


@dg.asset(group_name="training", kinds={"pandas"},
          description="A sample of training-time claim features: the reference the drift check compares against.")
def drift_reference(inbox: InboxResource) -> dg.Output[pd.DataFrame]:
    """A sample of training features: the drift check's reference."""
    data = _training_data(inbox)
    ref = data.X_train.sample(min(DRIFT_REFERENCE_ROWS, len(data.X_train)), random_state=0)
    return dg.Output(ref, metadata={"rows": len(ref), "window": f"{data.window[0]} .. {data.window[1]}"})
