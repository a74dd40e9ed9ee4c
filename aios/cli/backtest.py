"""`aios backtest` and `aios thresholds`: replay history days, compare champion and challenger, study the bands.

Both launch the assets through the one launcher (`aios_assets.launch`: Dagster in process, against the
persistent instance, so the figures also appear in the UI) and print what the assets computed: the
bounds check's verdict and the materializations' metadata, with the report each asset wrote under
`<home>/reports/`. Nothing is recomputed here.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from aios.kernel.settings import Settings, get_settings

console = Console()
FROM = typer.Option(None, "--from", help="First history day (YYYY-MM-DD); default: 14 days before --to.")
TO = typer.Option(None, "--to", help="Last history day (YYYY-MM-DD); default: the last day of history.")


@contextlib.contextmanager
def dagster_log(s: Settings, name: str):
    """Send everything written to stderr while a run goes (Dagster's event log, library warnings, native
    code) into `<home>/logs/<name>.log`, so the terminal shows only the command's own lines; yields the
    log's path."""
    log_dir = s.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log, "w") as fh:
        os.dup2(fh.fileno(), 2)  # file descriptor level: handlers that hold the original stream follow too
        try:
            with contextlib.redirect_stderr(fh):
                yield log
        finally:
            fh.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _window(s: Settings, start: str | None, end: str | None) -> list[str]:
    from aios.usecases.backtest import resolve_window

    try:
        return resolve_window(s, start, end)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc


def _replay(s: Settings, days: list[str]) -> list[str]:
    """Run `backtest_job` for each day, with a progress bar; the days that failed."""
    from aios_assets.launch import backtest_days

    failed: list[str] = []
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress, dagster_log(s, "backtest"):
        task = progress.add_task(f"backtesting {days[0]} (loading models)", total=len(days))

        def on_day(o) -> None:
            if not o.success:
                failed.append(o.partition)
                progress.console.print(f"[red]{o.partition} failed[/]: {o.error}")
            progress.advance(task)
            done = int(progress.tasks[0].completed)
            progress.update(task, description="pooling the window" if done == len(days)
                            else f"backtesting {days[min(done, len(days) - 1)]}")

        backtest_days(days, on_day)
    return failed


def _window_assets(s: Settings, days: list[str], assets: tuple[str, ...], **files: Path | None):
    """Materialize window assets over `days`; the run's outcome, or exit 1 saying why it failed."""
    from aios_assets.launch import backtest_window

    with console.status(f"materializing {', '.join(assets)} over {days[0]} .. {days[-1]}"), \
            dagster_log(s, assets[0]) as log:
        out = backtest_window(days, assets, **files)
    if not out.success or any(a not in out.metadata for a in assets):
        console.print(f"[red]{', '.join(assets)} failed[/] (run {out.run_id}): {out.error}; see {log}")
        raise typer.Exit(1)
    return out


def _ensure_challenger(s: Settings) -> None:
    from aios.usecases.backtest import alias_exists, train_challenger

    if alias_exists(s, "challenger"):
        return
    with console.status("no @challenger in the registry: training one (another seed) and its network"):
        label = train_challenger(s)
    console.print(f"registered challenger {label} as @challenger")


def backtest(start: str = FROM, end: str = TO,
             check_bounds: bool = typer.Option(False, "--check-bounds",
                                               help="Exit non-zero when the champion breaks the bounds."),
             bounds_path: Path = typer.Option(None, "--bounds",
                                              help="Bounds file (default bench/backtest_bounds.json)."),
             challenger: bool = typer.Option(True, "--challenger/--no-challenger",
                                             help="Train and register a @challenger when the registry has none.")
             ) -> None:
    """Replay history days: champion and challenger on the same frozen snapshots, report with plots."""
    s = get_settings()
    days = _window(s, start, end)
    if challenger:
        _ensure_challenger(s)
    failed = _replay(s, days)
    if failed:
        console.print(f"[red]{len(failed)} day(s) failed[/]: {failed}; see {s.home / 'logs'}")
        raise typer.Exit(1)
    out = _window_assets(s, days, ("backtest_summary", "threshold_economics"), bounds=bounds_path)
    meta, verdict = out.metadata["backtest_summary"], out.checks["backtest_bounds"]
    console.print(Markdown(f"**backtest {meta['window']} (pooled)**\n\n{meta['summary']}"))
    console.print(f"report: {meta['report']}")
    if not verdict["passed"]:
        console.print(f"[{'red' if check_bounds else 'yellow'}]bounds broken[/]: {verdict['description']}")
        if check_bounds:
            raise typer.Exit(1)
    elif check_bounds:
        console.print(f"[green]{verdict['description']}[/] ({bounds_path or 'bench/backtest_bounds.json'})")


def thresholds(start: str = FROM, end: str = TO,
               costs_path: Path = typer.Option(None, "--costs", help="Cost model (default config/costs.yaml)."),
               run: bool = typer.Option(True, "--run/--no-run", help="Backtest days that have no results first.")
               ) -> None:
    """Automation rate against expected cost over routing bands: recommended bands, cost per 1,000 decisions,
    and Bayesian fusion against classifier-only routing at the same review budget."""
    from aios.usecases.backtest import missing_days

    s = get_settings()
    days = _window(s, start, end)
    missing = missing_days(s, days)
    if missing and not run:
        console.print(f"[red]{len(missing)} day(s) not backtested yet[/] ({missing[0]} .. {missing[-1]}): "
                      f"run `aios backtest --from {days[0]} --to {days[-1]}` or drop --no-run")
        raise typer.Exit(2)
    if missing and _replay(s, missing):
        console.print(f"[red]the backtest failed[/]; see {s.home / 'logs'}")
        raise typer.Exit(1)
    meta = _window_assets(s, days, ("threshold_economics",), costs=costs_path).metadata["threshold_economics"]
    cur = meta["currency"]
    console.print(Markdown(f"**routing bands {meta['window']} ({cur})**\n\n{meta['bands']}\n\n"
                           f"**fusion against classifier-only at the same review budget**\n\n"
                           f"{meta['fusion_vs_classifier']}"))
    r = meta["recommended_bands"]
    console.print(f"recommended bands: auto_approve below p_fraud {r['auto_approve_max_p']}, refer_siu from "
                  f"{r['refer_siu_min_p']} → {meta['cost_per_1k_recommended']:,.0f} {cur} per 1,000 decisions "
                  f"(in force: {meta['cost_per_1k_in_force']:,.0f})")
    console.print(f"report: {meta['report']}")
