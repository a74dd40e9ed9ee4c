"""Run the code location's jobs in process against the persistent Dagster instance (DAGSTER_HOME),
so runs launched from the `aios` CLI show up in the Dagster UI like any other.

Invoked by the CLI as `python -m aios_assets.launch {train|ingest|partition} ...`; prints one JSON
object per job on stdout.
"""

import argparse
import json
import sys

import dagster as dg

from aios.kernel.settings import get_settings


def _instance() -> dg.DagsterInstance:
    get_settings().dagster_home.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.get()


def train() -> dict:
    """Materialize the training assets: classifier (registered @champion), network, drift reference."""
    from aios_assets.definitions import defs

    result = defs.resolve_job_def("training_job").execute_in_process(instance=_instance(), raise_on_error=False)
    return {"job": "training_job", "success": result.success, "run_id": result.run_id}


def run_partition(partition: str) -> dict:
    """Materialize the claims job for one day; a failed blocking check leaves payouts unmaterialized."""
    from aios_assets.definitions import defs

    result = defs.resolve_job_def("claims_job").execute_in_process(
        partition_key=partition, instance=_instance(), raise_on_error=False)
    checks = {}
    for ev in result.get_asset_check_evaluations():
        checks[ev.check_name] = {"passed": ev.passed, "description": ev.description}
    return {"job": "claims_job", "partition": partition, "success": result.success, "run_id": result.run_id,
            "checks": checks}


def ingest() -> list[dict]:
    """Evaluate the inbox sensor once with its stored cursor, then run what it requested."""
    from aios_assets.definitions import defs
    from sensors.inbox import inbox_sensor

    instance = _instance()
    ctx = dg.build_sensor_context(instance=instance, cursor=_load_cursor(instance),
                                  resources=defs.resources, definitions=defs)
    result = inbox_sensor(ctx)
    _save_cursor(instance, result.cursor)
    return [run_partition(r.partition_key) for r in result.run_requests]


_CURSOR_KEY = "aios/launcher/inbox_sensor_cursor"


def _load_cursor(instance: dg.DagsterInstance) -> str | None:
    return instance.run_storage.get_cursor_values({_CURSOR_KEY}).get(_CURSOR_KEY)


def _save_cursor(instance: dg.DagsterInstance, cursor: str | None) -> None:
    if cursor is not None:
        instance.run_storage.set_cursor_values({_CURSOR_KEY: cursor})


def main(argv: list[str] | None = None) -> int:
    """Run `train`, `ingest` or `partition <day>` and print the result; the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m aios_assets.launch")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("train")
    sub.add_parser("ingest")
    p = sub.add_parser("partition")
    p.add_argument("partition")
    args = parser.parse_args(argv)
    if args.cmd == "train":
        out: object = train()
    elif args.cmd == "ingest":
        out = ingest()
    else:
        out = run_partition(args.partition)
    print("AIOS_RESULT " + json.dumps(out))
    results = out if isinstance(out, list) else [out]
    return 0 if all(r["success"] or r.get("checks") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
