"""The `aios` command line: each step of the demo is a command, with progress shown for long work."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from aios.kernel.settings import get_settings
from aios.cli.backtest import backtest, dagster_log, thresholds
from aios.cli.replay import replay
from aios.cli.users import users_app
from aios.cli.payouts import payouts_app
from aios.cli.documents import documents_app
from aios.cli.clients import clients_app
from aios.cli.cluster import cluster_app
from aios.cli.audit import audit_app
from aios.cli.evaluate import evaluate_app
from aios.cli.policy import policy_app
from aios.cli.land import land

app = typer.Typer(help="aios: claims decisions on Dagster. `aios demo` runs everything end to end.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")
app.add_typer(users_app, name="users")
app.add_typer(payouts_app, name="payouts")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(documents_app, name="documents")
app.add_typer(clients_app, name="clients")
app.add_typer(cluster_app, name="cluster")
app.command()(replay)
app.command()(backtest)
app.command()(thresholds)
app.command()(land)
db_app = typer.Typer(help="The stores' database: migrations and the production profile's setup.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Alembic revision to migrate to.")) -> None:
    """Migrate the stores database of the active profile (Alembic)."""
    from connectors.stores.schema import current_revision, upgrade

    url = get_settings().db_url
    upgrade(url, revision)
    console.print(f"stores database at revision {current_revision(url)}")


@db_app.command("prepare")
def db_prepare() -> None:
    """Production profile: create the PostgreSQL databases, migrate the stores, write DAGSTER_HOME/dagster.yaml."""
    from aios.usecases.production import prepare_production

    s = get_settings()
    if s.profile.value != "production":
        console.print("[red]`aios db prepare` is for AIOS_PROFILE=production[/] (the embedded profile needs no setup)")
        raise typer.Exit(2)
    home = Path(os.environ.get("DAGSTER_HOME") or s.dagster_home)
    for line in prepare_production(s, home):
        console.print(line)


docs_app = typer.Typer(help="Documentation for regulators, written from live metadata.", no_args_is_help=True)
app.add_typer(docs_app, name="docs")


@docs_app.command("model-card")
def model_card(out: Path = typer.Option(None, help="Where to write the Markdown (default .aios/reports/model_card.md).")
               ) -> None:
    """Write the model card and the risk-classification notes as Markdown."""
    from aios.usecases.model_card import write_model_card

    try:
        path = write_model_card(get_settings(), out)
    except LookupError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    console.print(f"model card written to {path}")
console = Console()
T = TypeVar("T")


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def _launch(what: str, name: str, job: Callable[[], T]) -> T:
    """Run `job` (a function of the one launcher, `aios_assets.launch`: Dagster in process against the
    persistent instance) with a spinner, its log in .aios/logs/<name>.log; what the runs did."""
    s = get_settings()
    s.ensure_dirs()
    with console.status(f"[bold]{what}[/] (Dagster, in process; logs in .aios/logs/)"), \
            dagster_log(s, name) as log:
        try:
            return job()
        except Exception as exc:  # noqa: BLE001 - a launch that cannot start says why, the trace is in the log
            import traceback

            traceback.print_exc()
            console.print(f"[red]{what} failed[/]: {exc}; see {log}")
            raise typer.Exit(1) from exc


@app.command()
def generate(days: int = typer.Option(None, help="Days of history (default: settings.history_days)."),
             per_day: int = typer.Option(None, help="Mean claims per day."),
             seed: int = typer.Option(None, help="Seed; the same seed gives the same data.")) -> None:
    """Generate the seeded book of policies and a labelled claims history ending the day before the demo day."""
    from aios.usecases.datasets import generate_history

    s = get_settings()
    days = days or s.history_days
    with _progress() as progress:
        task = progress.add_task("generating history", total=days)
        history = generate_history(s, days, per_day or s.claims_per_day, s.seed if seed is None else seed,
                                   on_day=lambda: progress.advance(task))
    console.print(f"history: {len(history):,} claims, {history['submitted_at'].min():%Y-%m-%d} to "
                  f"{history['submitted_at'].max():%Y-%m-%d}, fraud rate {history['is_fraud'].mean():.2%} "
                  f"→ {s.history_path}")


@app.command()
def train() -> None:
    """Train and register the classifier (@champion), fit the Bayesian network, refresh the drift reference."""
    s = get_settings()
    if not s.history_path.exists():
        console.print("[red]no history yet[/]: run `aios generate` first")
        raise typer.Exit(2)
    t = time.perf_counter()
    from aios_assets import launch

    out = _launch("training", "train", launch.train)
    if not out.success:
        console.print(f"[red]training failed[/] (run {out.run_id}): {out.error}; see .aios/logs/train.log")
        raise typer.Exit(1)
    console.print(f"trained in {time.perf_counter() - t:.0f} s (run {out.run_id})")


@app.command()
def drop(day: str = typer.Option(None, "--date", help="Day of the batch (YYYY-MM-DD); default: the demo day."),
         malformed: int = typer.Option(7, help="Rows that break the contract, to show quarantine."),
         fmt: str = typer.Option("csv", "--format", help="csv or jsonl."),
         drift: bool = typer.Option(False, help="Shift the batch's distribution (to see the drift gate act)."),
         per_day: int = typer.Option(None, help="Mean claims in the batch."),
         document_files: bool = typer.Option(False, help="Also store each document as a scan or PDF (for "
                                                         "`documents_job`; ~0.1 s per document).")) -> None:
    """Drop one day's batch of claims (and their documents) into the inbox."""
    from aios.usecases.datasets import drop_batch

    s = get_settings()
    try:
        path = drop_batch(s, day or s.demo_date, malformed=malformed, fmt=fmt, drift=drift, per_day=per_day,
                          document_files=document_files)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    console.print(f"dropped a batch ({malformed} malformed rows, drift={drift}) → {path}")


ingest_app = typer.Typer(help="Land claims and run the claims job for the days they belong to.")
app.add_typer(ingest_app, name="ingest")


@ingest_app.callback(invoke_without_command=True)
def ingest(ctx: typer.Context = None) -> None:  # type: ignore[assignment]
    """Without a subcommand: let the inbox sensor land new files, then run the claims job for each day."""
    if ctx is not None and ctx.invoked_subcommand is not None:
        return
    from aios_assets import launch

    results = _launch("ingesting the inbox and running the claims job", "ingest", launch.ingest)
    if not results:
        console.print("inbox empty: nothing to run")
    _exit_for([_print_run(r) for r in results])


@ingest_app.command("replay")
def ingest_replay(batch: str = typer.Option(..., "--batch", help="Landing batch id (see `aios land`'s log).")
                  ) -> None:
    """Re-run the claims job for every day a landed bus batch touched (for debugging a batch)."""
    from aios.kernel.db import get_engine
    from connectors.landing import read_batch

    claims = read_batch(get_engine(get_settings().db_url), batch, with_meta=True)
    if claims.empty:
        console.print(f"[red]no landed claims for batch {batch}[/]")
        raise typer.Exit(1)
    days = sorted(set(claims["partition"]))
    console.print(f"batch {batch}: {len(claims)} claims in {', '.join(days)}")
    _exit_for([_run_partition(day) for day in days])


@app.command()
def publish(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Claims as CSV or JSON lines."),
            bus: str = typer.Option(..., "--bus", help="pubsub or nats (as configured in config/bus.yaml)."),
            ) -> None:
    """Publish each claim of FILE as one message on the configured topic or stream."""
    from aios.kernel.bus_config import load_bus_config
    from connectors.bus import open_bus
    from connectors.inbox import read_claims_file

    try:
        sub = load_bus_config().by_kind(bus)
    except LookupError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    frame = read_claims_file(file).drop(columns=["_source", "_parse_error"], errors="ignore")
    records = [{k: v for k, v in r.items() if v is not None and v == v} for r in frame.to_dict("records")]
    with open_bus(sub.kind, **sub.config) as b, _progress() as progress:
        b.ensure()
        task = progress.add_task(f"publishing to {sub.name}", total=len(records))
        for i in range(0, len(records), 500):
            chunk = records[i:i + 500]
            b.publish_many(json.dumps(r, default=str).encode() for r in chunk)
            progress.advance(task, len(chunk))
    console.print(f"published {len(records)} claims from {file} to {sub.kind} ({sub.name})")


@app.command("run-partition")
def run_partition(day: str = typer.Argument(..., help="Partition (YYYY-MM-DD).")) -> None:
    """Materialize the claims job for one day (what the daily schedule does); exit 1 when the run failed,
    3 when a blocking check stopped the payouts."""
    _exit_for([_run_partition(day)])


def _run_partition(day: str) -> int:
    from aios_assets import launch

    return _print_run(_launch(f"running claims_job for {day}", "partition", lambda: launch.run_partition(day)))


# Exit statuses of commands that launch runs: a script (or CI) can tell a broken run from a gate at work.
EXIT_RUN_FAILED = 1
EXIT_CHECK_BLOCKED = 3


def _print_run(r) -> int:  # r: aios_assets.launch.RunOutcome
    """Print what a run did, naming the failed step and why, or the check that blocked; its exit status."""
    checks = ", ".join(f"{k}: {'passed' if v['passed'] else 'FAILED'}" for k, v in r.checks.items())
    blocked = {k: v for k, v in r.checks.items() if not v["passed"]}
    colour = "green" if r.success and not blocked else ("yellow" if blocked else "red")
    console.print(f"[{colour}]{r.job} {r.partition or ''}[/] run {r.run_id} — checks: {checks or 'none'}")
    for k, v in blocked.items():
        console.print(f"  [yellow]check {k} blocked what follows it[/]: {v['description']}")
    if not r.success and r.error:
        console.print(f"  [red]failed step[/] {r.error}")
    if blocked:
        return EXIT_CHECK_BLOCKED
    return 0 if r.success else EXIT_RUN_FAILED


def _exit_for(statuses: list[int]) -> None:
    """Exit with the worst status of the runs a command launched (a failed run outranks a blocked check)."""
    worst = EXIT_RUN_FAILED if EXIT_RUN_FAILED in statuses else max(statuses, default=0)
    if worst:
        raise typer.Exit(worst)


@app.command()
def summary(day: str = typer.Option(None, "--date", help="Partition; default: the demo day.")) -> None:
    """Print what happened to a partition and write it to .aios/last_run.json."""
    from aios.usecases.summary import SUMMARY_COUNTED_ROUTES, partition_summary, write_summary

    s = get_settings()
    result = partition_summary(s, day or s.demo_date)
    path = write_summary(result, s.home / "last_run.json")
    table = Table(title=f"aios — partition {result['partition']}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in ("claims_in", "quarantined", *SUMMARY_COUNTED_ROUTES, "paid"):
        table.add_row(key, f"{result[key]:,}")
    table.add_row("drift_detected", str(result["drift_detected"]))
    for k, v in result["versions"].items():
        table.add_row(f"version: {k}", v)
    console.print(table)
    console.print(f"written to {path}")


@app.command()
def demo(fresh: bool = typer.Option(False, help="Regenerate history and retrain even if present.")) -> None:
    """Everything end to end: history, training, one day's drop, the Dagster run, the summary."""
    s = get_settings()
    t0 = time.perf_counter()
    if fresh or not s.history_path.exists():
        generate(days=None, per_day=None, seed=None)
    if fresh or not s.network_path().exists():
        train()
    drop(day=None, malformed=7, fmt="csv", drift=False, per_day=None)
    try:
        ingest()
    finally:
        summary(day=None)
    console.print(f"demo finished in {time.perf_counter() - t0:.0f} s")


@app.command()
def serve(port: int = typer.Option(8000, help="Port to listen on (127.0.0.1 only)."),
          pin_check_seconds: float = typer.Option(10.0, help="How often to check whether the model alias moved."),
          max_batch: int = typer.Option(512, help="Most claims of concurrent requests decided in one call."),
          workers: int = typer.Option(1, min=1, help="Worker processes (each loads the pinned models once)."),
          fast_path: bool = typer.Option(True, help="Decide on the single-claim fast path with group commit "
                                                    "(--no-fast-path: the previous batch-shaped path)."),
          log_level: str = typer.Option("info", help="uvicorn log level.")) -> None:
    """Serve the decision API (POST /v1/decisions, GET /v1/claims/{id}, /metrics; callers need a key from
    `aios clients add`) and the review UI on 127.0.0.1."""
    import os

    import uvicorn

    from service.app import SERVE_ENV, create_app
    from service.decisions_api import FAST_PATH_ENV

    os.environ[FAST_PATH_ENV] = "1" if fast_path else "0"
    if workers == 1:
        uvicorn.run(create_app(pin_check_seconds=pin_check_seconds, max_batch=max_batch), host="127.0.0.1",
                    port=port, log_level=log_level, access_log=False)
        return
    os.environ[SERVE_ENV["pin_check_seconds"]] = str(pin_check_seconds)
    os.environ[SERVE_ENV["max_batch"]] = str(max_batch)
    uvicorn.run("service.app:app_from_env", factory=True, workers=workers, host="127.0.0.1", port=port,
                log_level=log_level, access_log=False)


def main() -> None:
    """Entry point for `python -m aios`."""
    app()


if __name__ == "__main__":
    main()
