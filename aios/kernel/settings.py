"""One settings object, read from `AIOS_*` environment variables, selects the profile.

The embedded profile (default) keeps everything under `.aios/` in SQLite and needs
no server. The production profile points the stores, MLflow and the Dagster
instance at PostgreSQL.
"""

from __future__ import annotations

import os
from enum import Enum
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CURRENT_NETWORK = "current"


def network_dir(home: Path) -> Path:
    """The Bayesian-network folder of the state under `home` (for callers that hold only the home)."""
    return Path(home) / "artifacts" / "bayes"


def network_path(home: Path, version: str = CURRENT_NETWORK) -> Path:
    """The file of network `version` under `home`; `current` is the network training published last."""
    return network_dir(home) / f"{version}.json"


class Profile(str, Enum):
    """The deployment profile: embedded (SQLite under `.aios/`) or production (PostgreSQL)."""

    embedded = "embedded"
    production = "production"


class Executor(str, Enum):
    """How a run executes its steps."""

    default = "default"
    celery = "celery"


class Settings(BaseSettings):
    """Every knob of the platform; each field is the env var `AIOS_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="AIOS_", extra="ignore")

    profile: Profile = Profile.embedded
    home: Path = Field(default=PROJECT_ROOT / ".aios", description="Root of all local state.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL of the platform stores.")
    postgres_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/aios"
    mlflow_tracking_uri: str | None = None
    dagster_database_url: str | None = Field(default=None, description="Dagster instance storage (production).")
    model_name: str = "aios-fraud"
    model_alias: str = "champion"
    partition_start: str = "2026-01-01"
    demo_date: str = "2026-11-20"
    history_days: int = 150
    claims_per_day: int = 400
    seed: int = 7
    quarantine_max_share: float = Field(default=0.05, description="Blocking check bound on quarantined share.")
    drift_share_threshold: float = Field(default=0.5, description="Share of drifted columns that fails the drift check.")
    payout_rail: str = Field(default="iso20022", description="Payment rail: iso20022 (pain.001 files) or http.")
    payout_bank_dir: Path | None = Field(default=None, description="The bank's SFTP folders (default: home/bank).")
    payout_api_url: str | None = Field(default=None, description="Base URL of the payment API (rail http).")
    payout_bank_standin: bool | None = Field(default=None, description="Run mock-bank in process (embedded default).")
    allowed_hosts: list[str] = Field(default=["127.0.0.1", "localhost", "::1"],
                                     description="Host headers the service answers (DNS rebinding); JSON list.")
    api_max_body_bytes: int = Field(default=2_000_000, ge=1024, description="Largest request body (else 413).")
    api_docs: bool | None = Field(default=None, description="Serve /openapi.json; default: only on embedded.")
    executor: Executor = Field(default=Executor.default, description="How runs execute their steps: `default` "
                               "(in the run's own process tree) or `celery` (each step a task on Celery workers over "
                               "RabbitMQ; `make cluster` sets it with the production profile).")
    celery_broker: str = Field(default="pyamqp://guest:guest@127.0.0.1:5672//", description="Celery broker URL.")
    io_dir: Path | None = Field(default=None, description="Where steps exchange their outputs; every worker must "
                                "reach it (a shared filesystem here, object storage in production).")
    max_run_seconds: int = Field(default=3600, description="A run still going after this is failed by run "
                                 "monitoring (a run whose worker died is never left started).")

    @property
    def inbox_dir(self) -> Path:
        """The file-drop inbox where claims files arrive."""
        return self.home / "inbox"

    @property
    def landing_dir(self) -> Path:
        """Where landed inbox files go, one folder per day."""
        return self.home / "landing"

    @property
    def rejected_dir(self) -> Path:
        """Where inbox files that cannot be landed are moved."""
        return self.home / "inbox-rejected"

    @property
    def documents_dir(self) -> Path:
        """The claim document store."""
        return self.home / "documents"

    @property
    def data_dir(self) -> Path:
        """Generated data: the claims history and the reference data."""
        return self.home / "data"

    @property
    def artifacts_dir(self) -> Path:
        """Local artifacts: plots and Bayesian networks."""
        return self.home / "artifacts"

    @property
    def network_dir(self) -> Path:
        """Where training saves the Bayesian networks, one `<version>.json` each plus `current.json`."""
        return network_dir(self.home)

    def network_path(self, version: str = CURRENT_NETWORK) -> Path:
        """The file of network `version` (`current`: the one training published last)."""
        return network_path(self.home, version)

    @property
    def mlflow_artifacts_dir(self) -> Path:
        """The MLflow artifact store."""
        return self.home / "mlartifacts"

    @property
    def step_io_dir(self) -> Path:
        """Where steps exchange their outputs (the I/O manager's base directory)."""
        return self.io_dir or self.home / "step-io"

    @property
    def dagster_home(self) -> Path:
        """The Dagster instance directory (DAGSTER_HOME)."""
        return self.home / "dagster"

    @property
    def history_path(self) -> Path:
        """The labelled claims history (parquet)."""
        return self.data_dir / "history.parquet"

    @property
    def policies_path(self) -> Path:
        """The book of policies, the claims' reference data (parquet)."""
        return self.data_dir / "policies.parquet"

    @property
    def db_url(self) -> str:
        """The stores' SQLAlchemy URL for the active profile."""
        if self.database_url:
            return self.database_url
        if self.profile is Profile.production:
            return self.postgres_url
        return f"sqlite:///{self.home / 'aios.db'}"

    @property
    def mlflow_uri(self) -> str:
        """MLflow tracking + registry URI for the active profile."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        if self.profile is Profile.production:
            return self.postgres_url.rsplit("/", 1)[0] + "/aios_mlflow"
        return f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def dagster_storage_url(self) -> str:
        """PostgreSQL URL of the Dagster instance storage on the production profile."""
        return self.dagster_database_url or self.postgres_url.rsplit("/", 1)[0] + "/aios_dagster"

    @property
    def serve_api_docs(self) -> bool:
        """Whether the service publishes its OpenAPI document (explicit setting, else only on embedded)."""
        return self.profile is Profile.embedded if self.api_docs is None else self.api_docs

    def ensure_dirs(self) -> None:
        """Create the local state folders of the profile."""
        for d in (self.home, self.inbox_dir, self.landing_dir, self.rejected_dir, self.documents_dir,
                  self.data_dir, self.artifacts_dir, self.mlflow_artifacts_dir, self.dagster_home):
            d.mkdir(parents=True, exist_ok=True)

    def resource_env(self) -> dict[str, str]:
        """The resolved values the Dagster resources read through `dg.EnvVar`."""
        return {
            "AIOS_RESOLVED_DATABASE_URL": self.db_url,
            "AIOS_RESOLVED_MLFLOW_URI": self.mlflow_uri,
            "AIOS_RESOLVED_HOME": str(self.home),
            "AIOS_RESOLVED_PAYOUT_RAIL": self.payout_rail,
            "AIOS_RESOLVED_PAYOUT_BANK_DIR": str(self.payout_bank_dir or self.home / "bank"),
            "AIOS_RESOLVED_PAYOUT_API_URL": self.payout_api_url or "",
            "AIOS_RESOLVED_PAYOUT_BANK_STANDIN": str(self.payout_bank_standin if self.payout_bank_standin is not None
                                                     else self.profile == Profile.embedded).lower(),
            "AIOS_RESOLVED_IO_DIR": str(self.step_io_dir),
        }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()


def export_resource_env(settings: Settings | None = None) -> None:
    """Put resolved settings into the environment for `dg.EnvVar` (explicit env vars win)."""
    s = settings or get_settings()
    for key, value in s.resource_env().items():
        os.environ.setdefault(key, value)
