"""Test setup: every test session gets its own AIOS_HOME (set before any aios module reads settings)."""

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="aios-test-")
os.environ["AIOS_HOME"] = _HOME
# Every launcher in the session (CLI commands included) uses the session's Dagster instance, never the
# project's .aios/dagster that `make test` exports.
os.environ["DAGSTER_HOME"] = os.path.join(_HOME, "dagster")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"
for _key in [k for k in os.environ if k.startswith("AIOS_RESOLVED_")]:
    del os.environ[_key]

import pytest  # noqa: E402

from aios.kernel.settings import get_settings  # noqa: E402

# Small but realistic: enough labelled fraud to train and calibrate, quick to fit.
TEST_HISTORY_DAYS = 100
TEST_CLAIMS_PER_DAY = 300


@pytest.fixture(scope="session")
def settings():
    """The session's settings (its own AIOS_HOME)."""
    s = get_settings()
    s.ensure_dirs()
    return s


@pytest.fixture(scope="session")
def instance(settings):
    """A Dagster instance in the session's home (runs and IO-manager storage persist across tests)."""
    import dagster as dg

    return dg.DagsterInstance.local_temp(tempdir=str(settings.dagster_home))


@pytest.fixture(scope="session")
def defs():
    """The code location's Definitions, bound to the session's settings."""
    from aios_assets.definitions import defs as d

    return d


@pytest.fixture(scope="session")
def trained(settings, instance, defs):
    """History generated and the training job materialized: classifier @champion, network, drift reference."""
    from aios.usecases.datasets import generate_history

    generate_history(settings, TEST_HISTORY_DAYS, TEST_CLAIMS_PER_DAY, settings.seed, n_policies=8000)
    result = defs.resolve_job_def("training_job").execute_in_process(instance=instance)
    assert result.success
    return settings


@pytest.fixture(scope="session")
def run_day(trained, instance, defs):
    """Drop a day's batch into the inbox, let the inbox sensor land it, and run the claims job for that day."""
    import dagster as dg

    from aios.usecases.datasets import drop_batch
    from sensors.inbox import inbox_sensor

    def _run(day: str, **drop_kwargs):
        drop_batch(trained, day, **drop_kwargs)
        ctx = dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs)
        requested = inbox_sensor(ctx).run_requests
        assert [r.partition_key for r in requested] == [day]
        return defs.resolve_job_def("claims_job").execute_in_process(partition_key=day, instance=instance,
                                                                  raise_on_error=False)

    return _run
