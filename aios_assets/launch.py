"""The one launcher: every job the `aios` CLI and the benchmarks start goes through here.

Jobs run in process (`JobDefinition.execute_in_process`) against the persistent Dagster instance
(DAGSTER_HOME), so a run launched from the CLI shows up in the Dagster UI like any other, and its
outcome is read from Dagster's own result. On the distributed profile (`AIOS_EXECUTOR=celery`) a run
goes through `dg.execute_job` with the reconstructable job instead (`execute_in_process` ignores the
job's executor): this process orchestrates, the Celery workers run the steps, and the run carries
`dagster/max_runtime` so run monitoring fails it if this process dies. Either way the outcome is read from Dagster's own result: run id, success, asset check evaluations and the
materializations' metadata (`RunOutcome`). Nothing is parsed from stdout.

The benchmarks keep Dagster out of their own process (its imports and memory would be measured with
them) and time a run the way the daemon starts one, in a fresh process: `run_in_child` starts
`python -m aios_assets.launch {train|ingest|partition DAY}`, whose exit status says whether the run
succeeded; what it computed is in the stores and the instance.

Dagster is imported inside the functions, not at the top: the CLI imports this module for every
command that launches, and the benchmarks import it for `child_env`, without paying for Dagster.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aios.kernel.settings import PROJECT_ROOT, Executor, Settings, get_settings

if TYPE_CHECKING:
    import dagster as dg
    from dagster._core.execution.execution_result import ExecutionResult

_CURSOR_KEY = "aios/launcher/inbox_sensor_cursor"


@dataclass(frozen=True)
class RunOutcome:
    """What one Dagster run did, from its own records: the run, its checks and what it materialized."""

    job: str
    run_id: str
    success: bool
    partition: str | None = None
    error: str | None = None
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def acceptable(self) -> bool:
        """Succeeded, or failed only because a check blocked what follows it (that is the gate working)."""
        return self.success or any(not c["passed"] for c in self.checks.values())


# ------------------------------------------------------------------------------------------- environment


def child_env(settings: Settings) -> dict[str, str]:
    """Environment for a child process working on `settings.home` (its own Dagster home, one thread,
    no network look-ups, no telemetry)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_RESOLVED_")}
    env.update(AIOS_HOME=str(settings.home), DAGSTER_HOME=str(settings.dagster_home))
    for key, value in _PROCESS_DEFAULTS.items():
        env.setdefault(key, value)
    return env


_PROCESS_DEFAULTS = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "GX_ANALYTICS_ENABLED": "false",
                     "DAGSTER_DISABLE_TELEMETRY": "1"}


def instance(settings: Settings | None = None) -> dg.DagsterInstance:
    """The persistent Dagster instance of DAGSTER_HOME (default: the settings' dagster home)."""
    import dagster as dg

    s = settings or get_settings()
    for key, value in _PROCESS_DEFAULTS.items():
        os.environ.setdefault(key, value)
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(s.dagster_home)))
    home.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.get()


def _defs() -> dg.Definitions:
    from aios_assets.definitions import defs

    return defs


def _error(result: ExecutionResult) -> str | None:
    import dagster as dg

    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE and event.step_failure_data:
            error = event.step_failure_data.error
            while error.cause is not None:  # Dagster wraps the step's own exception: name that one
                error = error.cause
            return f"{event.step_key}: {error.message.strip()}"
    return None if result.success else "run failed"


def execute(job: str, *, partition: str | None = None, **kwargs: Any) -> ExecutionResult:
    """Run `job` (optionally one partition; `kwargs`: run_config, asset_selection) on the settings'
    executor: in this process, or steps as Celery tasks orchestrated from this process."""
    s = get_settings()
    if s.executor is not Executor.celery:
        return _defs().resolve_job_def(job).execute_in_process(partition_key=partition, instance=instance(),
                                                               raise_on_error=False, **kwargs)
    import dagster as dg

    tags = {"dagster/max_runtime": str(s.max_run_seconds)}
    if partition is not None:
        tags["dagster/partition"] = partition
    return dg.execute_job(_reconstructable(job), instance(), tags=tags, raise_on_error=False, **kwargs)


def _reconstructable(job: str):  # noqa: ANN202 (dagster's ReconstructableJob)
    """`job` as other processes (Celery workers, step subprocesses) rebuild it: by module and name."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repo = ReconstructableRepository.for_module("aios_assets.definitions", "defs",
                                                working_directory=str(PROJECT_ROOT))
    return repo.get_reconstructable_job(job)


def outcome(job: str, result: ExecutionResult, partition: str | None = None) -> RunOutcome:
    """A run's outcome read from Dagster's result: check evaluations and each materialization's metadata
    (as plain values: text, numbers, JSON, paths)."""
    checks = {e.check_name: {"passed": e.passed, "description": e.description}
              for e in result.get_asset_check_evaluations()}
    metadata = {}
    for event in result.get_asset_materialization_events():
        meta = event.step_materialization_data.materialization.metadata
        metadata[event.asset_key.to_user_string()] = {k: v.value for k, v in meta.items()}
    return RunOutcome(job, result.run_id, result.success, partition, _error(result), checks, metadata)


# ------------------------------------------------------------------------------------------- the jobs


def train() -> RunOutcome:
    """Materialize the training assets: classifier (registered @champion), network, drift reference."""
    return outcome("training_job", execute("training_job"))


def run_partition(partition: str) -> RunOutcome:
    """Materialize the claims job for one day; a failed blocking check leaves payouts unmaterialized."""
    return outcome("claims_job", execute("claims_job", partition=partition), partition)


def reexecute(run_id: str) -> RunOutcome:
    """Re-execute a failed run from its failure (the steps that failed or never ran), on the settings'
    executor; the partition and tags are the failed run's."""
    import dagster as dg

    inst = instance()
    failed = inst.get_run_by_id(run_id)
    if failed is None:
        raise ValueError(f"run_id: no run {run_id} in the instance at {os.environ['DAGSTER_HOME']}")
    options = dg.ReexecutionOptions.from_failure(run_id, inst)
    keep = ("dagster/partition", "dagster/max_runtime")  # not inherited by execute_job's re-execution
    tags = {k: v for k, v in failed.tags.items() if k in keep or not k.startswith("dagster/")}
    tags.update({"dagster/parent_run_id": run_id, "dagster/root_run_id": failed.root_run_id or run_id})
    result = dg.execute_job(_reconstructable(failed.job_name), inst, reexecution_options=options, tags=tags)
    return outcome(failed.job_name, result, failed.tags.get("dagster/partition"))


def ingest() -> list[RunOutcome]:
    """Evaluate the inbox sensor once with its stored cursor, then run what it requested."""
    import dagster as dg

    from sensors.inbox import inbox_sensor

    defs, inst = _defs(), instance()
    cursor = inst.run_storage.get_cursor_values({_CURSOR_KEY}).get(_CURSOR_KEY)
    result = inbox_sensor(dg.build_sensor_context(instance=inst, cursor=cursor, resources=defs.resources,
                                                  definitions=defs))
    if result.cursor is not None:
        inst.run_storage.set_cursor_values({_CURSOR_KEY: result.cursor})
    return [run_partition(r.partition_key) for r in result.run_requests]


def backtest_days(days: Iterable[str], on_day: Callable[[RunOutcome], None] | None = None) -> list[RunOutcome]:
    """Run `backtest_job` for each day (frozen snapshot, champion and challenger, metrics); `on_day` is told
    each day's outcome as it finishes."""
    out = []
    for day in days:
        result = outcome("backtest_job", execute("backtest_job", partition=day), day)
        out.append(result)
        if on_day:
            on_day(result)
    return out


def backtest_window(days: list[str], assets: tuple[str, ...] = ("backtest_summary", "threshold_economics"),
                    bounds: Path | None = None, costs: Path | None = None) -> RunOutcome:
    """Materialize the window assets (`backtest_summary` with its bounds check, `threshold_economics`) over
    the backtested `days`; `bounds` and `costs` replace the default bounds and cost-model files."""
    import dagster as dg

    window = {"start": days[0], "end": days[-1]}
    config = {"backtest_summary": {"config": {**window, "bounds": str(bounds or "")}},
              "threshold_economics": {"config": {**window, "costs": str(costs or "")}}}
    result = execute("backtest_summary_job", asset_selection=[dg.AssetKey(a) for a in assets],
                     run_config={"ops": {a: config[a] for a in assets}})
    return outcome("backtest_summary_job", result)


# ------------------------------------------------------------------------------------------- child process


def run_in_child(settings: Settings, *args: str, timeout: float = 900) -> None:
    """Run `python -m aios_assets.launch ARGS` for `settings.home` in a child process; raises RuntimeError
    with the end of its log when the run failed."""
    proc = subprocess.run([sys.executable, "-m", "aios_assets.launch", *args], env=child_env(settings),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"launch {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    """`train`, `ingest`, `partition DAY` or `reexecute RUN_ID`: exit 0 when every run succeeded (or was stopped by a check)."""
    parser = argparse.ArgumentParser(prog="python -m aios_assets.launch")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("train")
    sub.add_parser("ingest")
    sub.add_parser("partition").add_argument("partition")
    sub.add_parser("reexecute", help="re-execute a failed run from its failure").add_argument("run_id")
    args = parser.parse_args(argv)
    if args.cmd == "train":
        outcomes = [train()]
    elif args.cmd == "ingest":
        outcomes = ingest()
    elif args.cmd == "reexecute":
        outcomes = [reexecute(args.run_id)]
    else:
        outcomes = [run_partition(args.partition)]
    for o in outcomes:
        print(f"{o.job} {o.partition or ''} run {o.run_id}: {'success' if o.success else o.error}", file=sys.stderr)
    return 0 if all(o.acceptable for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
