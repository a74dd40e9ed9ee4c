"""`aios evaluate fusion`: the modular-fusion study (models/fusion_study.py) from the command line."""

from __future__ import annotations

import json
import os
import time

import typer
from rich.console import Console
from rich.table import Table

evaluate_app = typer.Typer(help="Studies that evaluate the decision models on synthetic worlds with known truth.",
                           no_args_is_help=True)
console = Console(width=220)  # the tables have ten columns; let them run wide rather than wrap


def _print(frame, title: str) -> None:
    table = Table(title=title, show_lines=False)
    for c in frame.columns:
        table.add_column(str(c), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*[str(v) for v in row])
    console.print(table)


@evaluate_app.command("fusion")
def fusion(seeds: int = typer.Option(10, "--seeds", min=2, help="Seeds (worlds); intervals are over seeds."),
           as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON instead of tables."),
           quick: bool = typer.Option(False, "--quick", help="Small worlds and N up to 200 (about a minute).")) -> None:
    """B0-B6, the Bayesian network and the oracle side by side, per regime, with bootstrap intervals."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from models.fusion_study import (PRIMARY, StudyConfig, headline, quick_config, result_json, run_study,
                                     seed_claim_check, study_inputs)

    cfg = quick_config(seeds) if quick else StudyConfig(seeds=tuple(range(seeds)))
    t0 = time.perf_counter()

    def progress(seed: int, regime: str) -> None:
        if not as_json:
            console.print(f"[dim]{time.perf_counter() - t0:6.0f}s seed {seed} {regime}[/]")

    result = run_study(cfg, *study_inputs(), progress=progress)
    if as_json:
        typer.echo(json.dumps(result_json(result), default=float))
        return
    head = headline(result.summary)
    for regime in head["regime"].unique():
        _print(head[head["regime"] == regime].drop(columns=["regime"]), f"{regime} (primary: {PRIMARY})")
    _print(seed_claim_check(result.summary, cfg.budgets), "The seed's claim: 18% fewer false positives?")
    console.print(f"bands in force: {result.bands}; {len(cfg.seeds)} seeds; {time.perf_counter() - t0:.0f}s")
