"""The one place that assembles `DecisionModels`: a classifier from the MLflow registry, a Bayesian
network from the artifacts folder and a policy set.

- `models_by_alias`: the classifier at an alias's version (backtest roles, counterfactual replay, the
  service's pins), with the network fitted on that classifier's scores unless one is given;
- `models_by_versions`: exactly the versions a stored decision recorded (replay).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from aios.kernel.settings import Settings
from connectors.registry import load_model, resolve_alias
from governance.policy import PolicySet
from models.bayes import FraudNetwork
from models.compiled_network import CompiledNetwork
from models.decision import DecisionModels


@lru_cache(maxsize=4)
def _classifier(tracking_uri: str, name: str, version: str) -> Any:
    return load_model(tracking_uri, name, version)


def current_network(settings: Settings) -> FraudNetwork:
    """The network training published last (`current.json`); FileNotFoundError when none was trained."""
    path = settings.network_path()
    if not path.exists():
        raise FileNotFoundError(f"no Bayesian network at {path}: train first (`aios train`)")
    return FraudNetwork.load(path)


def network_version(settings: Settings, version: str) -> FraudNetwork:
    """The network saved under `version`; LookupError when it is not stored."""
    path = settings.network_path(version)
    if not path.exists():
        raise LookupError(f"Bayesian network {version} is not stored at {path}")
    return FraudNetwork.load(path)


def network_fitted_for(settings: Settings, classifier: str) -> FraudNetwork:
    """The network fitted on `classifier`'s ("name/version") scores: current.json when it matches,
    else the newest saved network that records that classifier."""
    folder = settings.network_dir
    current = settings.network_path().name
    candidates = sorted(folder.glob("*.json"), key=lambda p: (p.name != current, -p.stat().st_mtime))
    for path in candidates:
        meta = json.loads(path.read_text()).get("meta", {})
        if meta.get("classifier") == classifier:
            return FraudNetwork.load(path)
    raise LookupError(f"no Bayesian network fitted for {classifier} under {folder}: "
                      f"run `aios train` (champion) or let `aios backtest` train the challenger")


def decision_models(settings: Settings, name: str, version: str, network: FraudNetwork, policy: PolicySet, *,
                    classifier: Any = None, compiled: CompiledNetwork | None = None) -> DecisionModels:
    """Classifier `name` at `version` (loaded from the registry unless given), `network` and `policy`,
    pinned together; `compiled` reuses an already compiled `network`."""
    if classifier is None:
        classifier = _classifier(settings.mlflow_uri, name, version)
    return DecisionModels(classifier, name, version, network, policy, compiled=compiled)


def models_by_alias(settings: Settings, alias: str, policy: PolicySet, *,
                    network: FraudNetwork | None = None) -> DecisionModels:
    """The classifier at `settings.model_name@alias`'s version with `network` (default: the network fitted
    on that classifier's scores) and `policy`. LookupError when the alias or its network does not exist."""
    ref = resolve_alias(settings.mlflow_uri, settings.model_name, alias)
    if network is None:
        network = network_fitted_for(settings, f"{ref.name}/{ref.version}")
    return decision_models(settings, ref.name, ref.version, network, policy)


def models_by_versions(settings: Settings, versions: dict[str, str], policy: PolicySet) -> DecisionModels:
    """Exactly the classifier ("name/version") and network a decision recorded in its `versions`, with
    `policy`; LookupError when the network is not stored."""
    name, _, version = versions["classifier"].rpartition("/")
    return decision_models(settings, name, version, network_version(settings, versions["bayes_net"]), policy)
