"""`aios replay`: recompute a stored decision from its snapshot, or a partition counterfactually."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from aios.kernel.settings import get_settings

console = Console()


def replay(claim_id: str = typer.Argument(None, help="The claim whose decision to recompute."),
           partition: str = typer.Option(None, "--partition", help="Counterfactual over this day's snapshots."),
           model_alias: str = typer.Option("champion", "--model-alias", help="MLflow alias for the counterfactual."),
           policy: Path = typer.Option(None, "--policy", help="Policy set (directory or manifest) for the counterfactual."),
           verify: bool = typer.Option(False, "--verify", help="With --partition: replay every decision with its "
                                                                "pinned versions and exit 1 on any difference.")
           ) -> None:
    """Replay one claim with its pinned versions (exit 1 on a difference), or a partition counterfactually."""
    from aios.usecases.replay import counterfactual, replay_claim, replay_partition

    s = get_settings()
    if (claim_id is None) == (partition is None):
        console.print("[red]give a CLAIM_ID or --partition P[/]")
        raise typer.Exit(2)
    try:
        if claim_id is not None:
            result = replay_claim(s, claim_id)
            if result.match:
                console.print(f"[green]match[/]: {claim_id} → {result.recomputed['route']} "
                              f"(p_fraud {result.recomputed['p_fraud']:.6f}), versions {result.recorded['versions']}")
                return
            console.print(f"[red]differs[/]: {claim_id}: {result.first_difference}", soft_wrap=True)
            raise typer.Exit(1)
        if verify:
            results = replay_partition(s, partition)
            bad = [r for r in results if not r.match]
            console.print(f"{partition}: {len(results) - len(bad)} of {len(results)} decisions match on replay")
            for r in bad[:20]:
                console.print(f"[red]differs[/]: {r.claim_id}: {r.first_difference}", soft_wrap=True)
            if bad:
                raise typer.Exit(1)
            return
        cf = counterfactual(s, partition, model_alias, policy)
    except LookupError as exc:
        console.print(f"[red]{exc}[/]", soft_wrap=True)
        raise typer.Exit(1) from exc
    table = Table(title=f"{partition}: stored vs {model_alias} / {cf.versions_after.get('policy')}")
    for col in ("measure", "before", "after"):
        table.add_column(col)
    for k in cf.before:
        fmt = "{:.1%}" if k == "automation_rate" else "{:,.0f}"
        table.add_row(k, fmt.format(cf.before[k]), fmt.format(cf.after[k]))
    table.add_row("route changes", "", f"{len(cf.changes):,}")
    console.print(table)
    if len(cf.changes):
        moves = cf.changes.groupby(["route_before", "route_after"]).size().reset_index(name="claims")
        detail = Table(title="route changes")
        for col in moves.columns:
            detail.add_column(col)
        for r in moves.itertuples(index=False):
            detail.add_row(*[str(v) for v in r])
        console.print(detail)
