"""Run a backtest window through Dagster in process, against the persistent instance (DAGSTER_HOME),
so `aios backtest` shows its figures in the Dagster UI like any other run.

Invoked by the CLI as `python -m aios_assets.backtest_launch --from DAY --to DAY`: one `backtest_job`
run per day (a line `AIOS_PROGRESS {...}` after each, for the CLI's progress bar), then one
`backtest_summary_job` run over the window (`AIOS_RESULT {...}`).
"""

import argparse
import json
import os
import sys
from pathlib import Path

import dagster as dg

from aios.kernel.settings import get_settings


def _error(result: dg.ExecuteInProcessResult) -> str | None:
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE and event.step_failure_data:
            return f"{event.step_key}: {event.step_failure_data.error.message.strip()}"
    return None if result.success else "run failed"


def run_window(days: list[str], summary: bool = True) -> dict:
    """Backtest each day, then pool the window; prints one progress line per day."""
    from aios_assets.definitions import defs

    Path(os.environ.get("DAGSTER_HOME") or get_settings().dagster_home).mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def("backtest_job")
    failed = []
    for day in days:
        result = job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False)
        error = _error(result)
        if error:
            failed.append(day)
        print("AIOS_PROGRESS " + json.dumps({"day": day, "success": result.success, "run_id": result.run_id,
                                             "error": error}), flush=True)
    out: dict = {"days": days, "failed": failed}
    if summary and not failed:
        window = {"config": {"start": days[0], "end": days[-1]}}
        result = defs.resolve_job_def("backtest_summary_job").execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={"ops": {"backtest_summary": window, "threshold_economics": window}})
        out["summary"] = {"success": result.success, "run_id": result.run_id, "error": _error(result),
                          "checks": {e.check_name: {"passed": e.passed, "description": e.description}
                                     for e in result.get_asset_check_evaluations()}}
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: backtest the window given by --from/--to; exit 1 when a run failed."""
    parser = argparse.ArgumentParser(prog="python -m aios_assets.backtest_launch")
    parser.add_argument("--from", dest="start", required=True)
    parser.add_argument("--to", dest="end", required=True)
    parser.add_argument("--no-summary", action="store_true")
    args = parser.parse_args(argv)
    from aios.usecases.backtest import day_range

    out = run_window(day_range(args.start, args.end), summary=not args.no_summary)
    print("AIOS_RESULT " + json.dumps(out), flush=True)
    return 0 if not out["failed"] and out.get("summary", {}).get("success", True) else 1


if __name__ == "__main__":
    sys.exit(main())
