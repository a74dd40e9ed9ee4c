"""`aios backtest` and `aios thresholds`: replay history days, compare champion and challenger, study the bands.

The backtest runs through Dagster in a child process (so the figures also appear in the UI and
this CLI never imports Dagster); the reports are written from the stored results under
`<home>/reports/`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from aios.kernel.settings import Settings, get_settings

console = Console()
FROM = typer.Option(None, "--from", help="First history day (YYYY-MM-DD); default: 14 days before --to.")
TO = typer.Option(None, "--to", help="Last history day (YYYY-MM-DD); default: the last day of history.")


def _child_env(s: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DAGSTER_HOME", str(s.dagster_home))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def _window(s: Settings, start: str | None, end: str | None) -> list[str]:
    from aios.usecases.backtest import resolve_window

    try:
        return resolve_window(s, start, end)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc


def _replay(s: Settings, days: list[str]) -> dict:
    """Run the backtest window through Dagster in a child process, with a progress bar per day."""
    log_dir = s.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "backtest.log"
    result: dict = {}
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress, open(log, "w") as err:
        task = progress.add_task(f"backtesting {days[0]} (loading models)", total=len(days))
        proc = subprocess.Popen([sys.executable, "-m", "aios_assets.backtest_launch", "--from", days[0],
                                 "--to", days[-1]], env=_child_env(s), stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("AIOS_PROGRESS "):
                step = json.loads(line[len("AIOS_PROGRESS "):])
                if step["error"]:
                    progress.console.print(f"[red]{step['day']} failed[/]: {step['error']}")
                progress.advance(task)
                done = int(progress.tasks[0].completed)
                progress.update(task, description="pooling the window" if done == len(days)
                                else f"backtesting {days[min(done, len(days) - 1)]}")
            elif line.startswith("AIOS_RESULT "):
                result = json.loads(line[len("AIOS_RESULT "):])
        proc.wait()
    if not result:
        console.print(f"[red]backtest failed[/]; see {log}")
        raise typer.Exit(proc.returncode or 1)
    return result


def _ensure_challenger(s: Settings) -> None:
    from aios.usecases.backtest import alias_exists, train_challenger

    if alias_exists(s, "challenger"):
        return
    with console.status("no @challenger in the registry: training one (another seed) and its network"):
        label = train_challenger(s)
    console.print(f"registered challenger {label} as @challenger")


def _print_table(title: str, frame, first: str) -> None:
    from aios.usecases.backtest_report import fmt_value

    table = Table(title=title)
    for c in frame.columns:
        table.add_column(str(c), justify="left" if c == first else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*[fmt_value(v) for v in row])
    console.print(table)


def backtest(start: str = FROM, end: str = TO,
             check_bounds: bool = typer.Option(False, "--check-bounds",
                                               help="Exit non-zero when the champion breaks the bounds."),
             bounds_path: Path = typer.Option(None, "--bounds",
                                              help="Bounds file (default bench/backtest_bounds.json)."),
             challenger: bool = typer.Option(True, "--challenger/--no-challenger",
                                             help="Train and register a @challenger when the registry has none.")
             ) -> None:
    """Replay history days: champion and challenger on the same frozen snapshots, report with plots."""
    from aios.usecases.backtest import labelled_by_share, load_bounds, load_window, reports_dir, training_cutoff
    from aios.usecases.backtest_report import backtest_markdown, partition_plot, reliability_plot, summary_frame, write_report
    from models.backtest import check_bounds as broken_bounds
    from models.backtest import metrics_table

    s = get_settings()
    days = _window(s, start, end)
    if challenger:
        _ensure_challenger(s)
    result = _replay(s, days)
    if result["failed"]:
        console.print(f"[red]{len(result['failed'])} day(s) failed[/]: {result['failed']}; see {s.home / 'logs'}")
        raise typer.Exit(1)
    scored = load_window(s, days)
    table = metrics_table(scored)
    bounds = load_bounds(bounds_path)
    role = bounds.get("role", "champion")
    pooled = table[(table["partition"] == "ALL") & (table["role"] == role)].iloc[0].to_dict()
    broken = broken_bounds(pooled, bounds)
    title = f"{days[0]} .. {days[-1]}"
    images = {"reliability.png": reliability_plot(scored, f"p_fraud, pooled {title}"),
              "per_partition.png": partition_plot(table, f"backtest {title}")}
    models = ", ".join(f"{r} = {m}" for r, m in table.groupby("role")["model"].first().items())
    summary_run = result.get("summary", {}).get("run_id")
    notes = [f"models: {models}", f"labels joined by claim id from {s.history_path}",
             f"Dagster runs: backtest_job × {len(days)}, backtest_summary_job {summary_run}"]
    for role_name in sorted(table["role"].unique()):
        cutoff = training_cutoff(s, role_name)
        if cutoff:
            notes.append(f"{role_name} trained on labels that had arrived by {cutoff}: "
                         f"{labelled_by_share(s, days, cutoff):.1%} of the window's claims (the rest is out of sample)")
    md = backtest_markdown(table, days, {"Reliability diagram": "reliability.png",
                                         "Per-partition measures": "per_partition.png"}, broken, notes)
    path = write_report(reports_dir(s) / f"backtest-{days[0]}_{days[-1]}", "report.md", md, images)
    _print_table(f"backtest {title} (pooled)", summary_frame(table), "measure")
    console.print(f"report: {path}")
    if broken:
        console.print(f"[{'red' if check_bounds else 'yellow'}]{role} breaks the bounds[/]: " + "; ".join(broken))
        if check_bounds:
            raise typer.Exit(1)
    elif check_bounds:
        console.print(f"[green]{role} within bounds[/] ({bounds_path or 'bench/backtest_bounds.json'})")


def thresholds(start: str = FROM, end: str = TO,
               costs_path: Path = typer.Option(None, "--costs", help="Cost model (default config/costs.yaml)."),
               run: bool = typer.Option(True, "--run/--no-run", help="Backtest days that have no results first.")
               ) -> None:
    """Automation rate against expected cost over routing bands: recommended bands, cost per 1,000 decisions,
    and Bayesian fusion against classifier-only routing at the same review budget."""
    from aios.usecases.backtest import load_window, reports_dir
    from aios.usecases.backtest_report import study_frames, threshold_plot, thresholds_markdown, write_report
    from governance.policy import load_policy_set
    from models.economics import check_bands_match_policy, load_costs, threshold_study

    s = get_settings()
    days = _window(s, start, end)
    try:
        scored = load_window(s, days)
    except (FileNotFoundError, ValueError) as exc:
        if not run:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from exc
        _replay(s, days)
        scored = load_window(s, days)
    champ = scored[(scored["role"] == "champion") & scored["is_fraud"].notna()]
    policy = load_policy_set()
    current = check_bands_match_policy(champ["p_fraud"].to_numpy(), champ["amount"].to_numpy(), policy)
    study = threshold_study(champ["p_fraud"].to_numpy(), champ["score"].to_numpy(), champ["amount"].to_numpy(),
                            champ["is_fraud"].to_numpy(), current, load_costs(costs_path))
    title = f"{days[0]} .. {days[-1]}"
    png = threshold_plot(study, f"routing bands, {title}")
    notes = [f"model: {champ['model'].iat[0]} (champion), policy {policy.label}",
             f"{len(champ):,} labelled claims, {int(champ['is_fraud'].sum())} frauds"]
    md = thresholds_markdown(study, days, "trade_off.png", notes)
    path = write_report(reports_dir(s) / f"thresholds-{days[0]}_{days[-1]}", "report.md", md, {"trade_off.png": png})
    bands, fusion = study_frames(study)
    _print_table(f"routing bands {title} ({study.costs.currency})", bands, "")
    _print_table("fusion against classifier-only at the same review budget", fusion, "")
    r = study.recommended
    console.print(f"recommended bands: auto_approve below p_fraud {r.auto_approve_max_p}, refer_siu from "
                  f"{r.refer_siu_min_p} → {study.recommended_eval['cost_per_1k']:,.0f} {study.costs.currency} per "
                  f"1,000 decisions (in force: {study.current_eval['cost_per_1k']:,.0f})")
    console.print(f"report: {path}")
