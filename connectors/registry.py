"""The model registry: log the calibrated classifier to MLflow, register it, move aliases, load by alias."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# MLflow reads these at import; keep it quiet and offline.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_TRACKING_INSECURE_TLS", "false")

PIP_REQUIREMENTS = ["scikit-learn==1.9.1", "pandas<3", "numpy"]


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model version and the run that produced it."""

    name: str
    version: str
    run_id: str
    alias: str | None = None


def _mlflow(tracking_uri: str):
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return mlflow


def log_and_register(model: Any, *, tracking_uri: str, artifact_root: Path, name: str, alias: str | None,
                     metrics: dict[str, float], params: dict[str, Any], experiment: str = "aios-fraud",
                     artifacts: dict[str, Path] | None = None) -> RegisteredModel:
    """Log `model` in a run, register it as a new version of `name`, and point `alias` at it."""
    mlflow = _mlflow(tracking_uri)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        experiment, artifact_location=Path(artifact_root).resolve().as_uri())
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        for path in (artifacts or {}).values():
            mlflow.log_artifact(str(path))
        info = mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle",
                                        pip_requirements=PIP_REQUIREMENTS)
        mv = mlflow.register_model(info.model_uri, name)
    if alias:
        client.set_registered_model_alias(name, alias, mv.version)
    return RegisteredModel(name, str(mv.version), run.info.run_id, alias)


def set_alias(tracking_uri: str, name: str, alias: str, version: str) -> None:
    """Point `alias` of `name` at `version`."""
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).set_registered_model_alias(name, alias, version)


def resolve_alias(tracking_uri: str, name: str, alias: str) -> RegisteredModel:
    """The version `alias` points at now; a clear error when the model or alias does not exist."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise LookupError(f"no model {name}@{alias} in registry {tracking_uri}: train one first (`aios train`)") from exc
    return RegisteredModel(name, str(mv.version), mv.run_id, alias)


def load_model(tracking_uri: str, name: str, version: str) -> Any:
    """The sklearn model of `name` at exactly `version`."""
    mlflow = _mlflow(tracking_uri)
    return mlflow.sklearn.load_model(f"models:/{name}/{version}")


def load_by_alias(tracking_uri: str, name: str, alias: str) -> tuple[Any, RegisteredModel]:
    """Resolve the alias once, then load that exact version (so the version recorded is the one used)."""
    ref = resolve_alias(tracking_uri, name, alias)
    return load_model(tracking_uri, name, ref.version), ref
