"""How runs execute their steps: in the run's own process tree (embedded default) or as Celery tasks on
workers over RabbitMQ (`AIOS_EXECUTOR=celery`, what `make cluster` runs), with the same jobs and code.

Celery settings that make a killed worker's step come back (verified with dagster-celery 0.29 / celery 5.7):
with the defaults a task is acknowledged on receipt, so a worker killed mid-step loses it and the run hangs;
late acknowledgement plus rejecting on worker loss makes RabbitMQ redeliver the step to another worker
(steps must therefore be safe to run twice, which the stores' idempotent writes and the payout outbox are).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aios.kernel.settings import Executor, Settings

if TYPE_CHECKING:  # dagster is imported only when an executor is built: `aios cluster` starts fast
    import dagster as dg

# Heavy steps (document reading, backtests) go to their own queue, so a day's scoring is never stuck
# behind them: `make cluster` starts workers for the default queue and one that also serves this one.
HEAVY_QUEUE = "heavy"
DEFAULT_QUEUE = "dagster"
HEAVY = {"dagster-celery/queue": HEAVY_QUEUE}

CELERY_APP_SETTINGS: dict[str, Any] = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_cancel_long_running_tasks_on_connection_loss": True,
    "worker_prefetch_multiplier": 1,
    # each step in a fresh pool child (forked from a main process that preloaded the code,
    # aios_assets/worker_preload.py): a step cancelled when the broker connection drops cannot leave a
    # half-imported module behind for the next step on that child
    "worker_max_tasks_per_child": 1,
    "broker_connection_retry_on_startup": True,
}


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery executor's configuration; workers are started with the same (`aios cluster worker`)."""
    return {"broker": settings.celery_broker, "backend": "rpc://", "config_source": dict(CELERY_APP_SETTINGS),
            "retries": {"enabled": {}}}


def run_executor(settings: Settings) -> dg.ExecutorDefinition | None:
    """The executor of every job for these settings; None keeps Dagster's default (multiprocess when
    launched, in-process under `execute_in_process`)."""
    if settings.executor is not Executor.celery:
        return None
    from dagster_celery import celery_executor

    return celery_executor.configured(celery_config(settings), name="celery")


def answering_workers(settings: Settings, timeout: float) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """(worker -> queues it serves, worker -> tasks it is running) of the Celery workers that answer within
    `timeout` seconds on the configured broker."""
    from dagster_celery.make_app import make_app

    cfg = celery_config(settings)
    app = make_app({"broker": cfg["broker"], "backend": cfg["backend"], "config_source": cfg["config_source"],
                    "include": []})
    inspect = app.control.inspect(timeout=timeout)
    return inspect.active_queues() or {}, inspect.active() or {}
