"""Resources wrapping the pure stores, registry, connectors and policy, built from `dg.EnvVar`.

`aios.kernel.settings` resolves the active profile into `AIOS_RESOLVED_*` variables; the
resources read those, so one code path serves the embedded and production profiles.
"""


from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from aios.kernel.db import ensure_tables, get_engine
from aios.kernel.settings import CURRENT_NETWORK, Settings, export_resource_env, network_path

GATES = ("data_quality", "drift")


class StoresResource(dg.ConfigurableResource):
    """The platform database (decisions, quarantine, review queue, gates, payouts)."""

    database_url: str

    def engine(self) -> sa.Engine:
        """The platform database's engine, with its tables created."""
        engine = get_engine(self.database_url)
        ensure_tables(engine)
        return engine


class InboxResource(dg.ConfigurableResource):
    """The file-drop inbox and its landing and rejected folders, plus the reference data."""

    home: str

    @property
    def settings(self) -> Settings:
        """Settings rooted at this resource's `home`."""
        return Settings(home=Path(self.home))

    def landing_dir(self, partition: str) -> Path:
        """The landing directory for one day's files."""
        return self.settings.landing_dir / partition

    def policies(self) -> pd.DataFrame:
        """The book of policies (the claims' policy history)."""
        path = self.settings.policies_path
        if not path.exists():
            raise dg.Failure(f"reference data {path} is missing: run `aios generate` first")
        return pd.read_parquet(path)


class DocumentStoreResource(dg.ConfigurableResource):
    """The claim document store."""

    home: str

    def store(self):
        """The document store under `home/documents`."""
        from connectors.documents import DocumentStore

        return DocumentStore(Path(self.home) / "documents")


class ModelRegistryResource(dg.ConfigurableResource):
    """MLflow tracking and registry; scoring resolves `model_name@alias` and records the version."""

    tracking_uri: str
    home: str
    model_name: str = "aios-fraud"
    alias: str = "champion"

    @property
    def artifact_root(self) -> Path:
        """The MLflow artifact root."""
        return Path(self.home) / "mlartifacts"

    def network_path(self, version: str = CURRENT_NETWORK) -> Path:
        """The file of Bayesian network `version` (`current`: the one in force)."""
        return network_path(Path(self.home), version)

    def load_champion(self) -> tuple[Any, str]:
        """The model under `model_name@alias` and its registry version."""
        from connectors.registry import load_by_alias

        try:
            model, ref = load_by_alias(self.tracking_uri, self.model_name, self.alias)
        except LookupError as exc:
            raise dg.Failure(str(exc)) from exc
        return model, ref.version

    def current_network(self):
        """The current Bayesian network; fails when none was trained."""
        from models.bayes import FraudNetwork

        path = self.network_path()
        if not path.exists():
            raise dg.Failure(f"no Bayesian network at {path}: materialize `bayes_network` (`aios train`) first")
        return FraudNetwork.load(path)


class PolicyResource(dg.ConfigurableResource):
    """The policy set in force (governance/policies/ unless a path is given)."""

    policy_path: str = ""

    def load(self):
        """The policy set from `policy_path`, else the default policies."""
        from governance.policy import load_policy_set

        return load_policy_set(Path(self.policy_path) if self.policy_path else None)


class PayoutResource(dg.ConfigurableResource):
    """The payout connector on the configured rail; it refuses partitions whose gates did not pass."""

    database_url: str
    rail: str = "iso20022"
    bank_dir: str = ""
    api_url: str = ""
    bank_standin: str = "true"  # "true": run the stand-in bank in process (embedded); a str so EnvVar can set it

    def connector(self):
        """A payout connector that requires the data-quality and drift gates."""
        from connectors.payout import PayoutConnector
        from connectors.rails.select import build_rail

        bank_dir = self.bank_dir or str(Path(self.database_url.removeprefix("sqlite:///")).parent / "bank")
        rail, settle = build_rail(self.rail, bank_dir, self.api_url, self.bank_standin.lower() == "true")
        return PayoutConnector(get_engine(self.database_url), required_gates=GATES, rail=rail, settle=settle)


def build_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources of the code location; with `settings`, bound to those values (tests), else to env vars."""
    if settings is not None:
        db, mlflow_uri, home, io_dir = settings.db_url, settings.mlflow_uri, str(settings.home), str(settings.step_io_dir)
        model_name, alias = settings.model_name, settings.model_alias
        env = settings.resource_env()
        payout = PayoutResource(database_url=db, rail=env["AIOS_RESOLVED_PAYOUT_RAIL"],
                                bank_dir=env["AIOS_RESOLVED_PAYOUT_BANK_DIR"],
                                api_url=env["AIOS_RESOLVED_PAYOUT_API_URL"],
                                bank_standin=env["AIOS_RESOLVED_PAYOUT_BANK_STANDIN"])
    else:
        export_resource_env()
        db = dg.EnvVar("AIOS_RESOLVED_DATABASE_URL")
        mlflow_uri = dg.EnvVar("AIOS_RESOLVED_MLFLOW_URI")
        home = dg.EnvVar("AIOS_RESOLVED_HOME")
        io_dir = dg.EnvVar("AIOS_RESOLVED_IO_DIR")
        from aios.kernel.settings import get_settings

        model_name, alias = get_settings().model_name, get_settings().model_alias
        payout = PayoutResource(database_url=db, rail=dg.EnvVar("AIOS_RESOLVED_PAYOUT_RAIL"),
                                bank_dir=dg.EnvVar("AIOS_RESOLVED_PAYOUT_BANK_DIR"),
                                api_url=dg.EnvVar("AIOS_RESOLVED_PAYOUT_API_URL"),
                                bank_standin=dg.EnvVar("AIOS_RESOLVED_PAYOUT_BANK_STANDIN"))
    return {
        "stores": StoresResource(database_url=db),
        "inbox": InboxResource(home=home),
        "documents": DocumentStoreResource(home=home),
        "registry": ModelRegistryResource(tracking_uri=mlflow_uri, home=home, model_name=model_name, alias=alias),
        "policy": PolicyResource(),
        "payout": payout,
        # Steps hand their outputs over through a folder every worker reaches (Celery workers included).
        "io_manager": dg.FilesystemIOManager(base_dir=io_dir),
    }
