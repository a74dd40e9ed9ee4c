"""Imported once by each Celery worker's main process (`aios cluster worker` passes it with `-i`), before the
pool forks: the code location and the libraries steps import lazily are then already in every pool child.

That is what makes `worker_max_tasks_per_child: 1` affordable: each step runs in a fresh forked child, so a
step cancelled mid-import (Celery terminates running late-acked tasks when the broker connection drops;
Dagster turns the SIGTERM into an interrupt that can land inside an `import`) cannot leave a half-initialised
module behind for the next step (seen as "module 'sqlalchemy.orm.loading' has no attribute 'instances'").
"""

import great_expectations  # noqa: F401
import mlflow  # noqa: F401
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
import sklearn.ensemble  # noqa: F401

import aios_assets.definitions  # noqa: F401
