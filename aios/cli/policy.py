"""`aios policy check [PATH]`: load a policy set (parse + check every file) and run its tables.

The main CLI mounts `policy_app` (`app.add_typer(policy_app, name="policy")`).
`policy diff OLD NEW --partition P` routes a partition's stored decisions under both sets.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from governance.policy import POLICY_DIR, ROUTES, PolicyError, load_policy_set, run_policy_tables

policy_app = typer.Typer(help="Policy-as-code: check the CEL policy files and their tables.", no_args_is_help=True)
console = Console()


@policy_app.callback()
def _main() -> None:
    """Policy-as-code commands."""


@policy_app.command()
def check(path: Path = typer.Argument(None, help=f"Policy directory or manifest (default: {POLICY_DIR}).")) -> None:
    """Load the policy set and run every file's `tests:` table; exit 1 on any error or failing row."""
    try:
        policy_set = load_policy_set(path)
    except PolicyError as exc:
        console.print(f"[red]refused[/]: {exc}", soft_wrap=True)
        raise typer.Exit(1) from exc
    failures = run_policy_tables(policy_set)
    table = Table(title=f"policy set {policy_set.label} ({policy_set.digest[:12]})")
    for col in ("kind", "policy", "rules", "table rows", "failed"):
        table.add_column(col)
    for kind, pol in sorted(policy_set.policies.items()):
        failed = sum(1 for f in failures if f.path == str(pol.path))
        table.add_row(kind, pol.label, ", ".join(pol.rules), str(len(pol.tests)),
                      f"[red]{failed}[/]" if failed else "0")
    console.print(table)
    for f in failures:
        console.print(f"[red]FAIL[/] {f}", soft_wrap=True)
    if failures:
        raise typer.Exit(1)
    console.print("[green]all policy tables pass[/]")


@policy_app.command()
def diff(old: Path = typer.Argument(..., help="The policy set in force (directory or manifest)."),
         new: Path = typer.Argument(..., help="The proposed policy set (directory or manifest)."),
         partition: str = typer.Option(..., "--partition", help="Day whose stored decisions are routed again."),
         show: int = typer.Option(20, help="How many changed claims to list.")) -> None:
    """How many claims of a partition would change route under NEW instead of OLD, and which."""
    from aios.kernel.db import get_engine
    from aios.kernel.settings import get_settings
    from connectors.stores.decisions import decisions_table, read_table

    try:
        before, after = load_policy_set(old), load_policy_set(new)
    except PolicyError as exc:
        console.print(f"[red]refused[/]: {exc}", soft_wrap=True)
        raise typer.Exit(1) from exc
    decisions = read_table(get_engine(get_settings().db_url), decisions_table, partition)
    if decisions.empty:
        console.print(f"[red]no stored decisions for partition {partition}[/]")
        raise typer.Exit(1)
    p, amount = decisions["p_fraud"].to_numpy(float), decisions["amount"].to_numpy(float)
    r_old, r_new = before.route(p, amount).astype(str), after.route(p, amount).astype(str)
    changed = decisions.assign(route_old=r_old, route_new=r_new)[r_old != r_new]
    summary = Table(title=f"{partition}: {before.label} → {after.label}")
    for col in ("route", "before", "after"):
        summary.add_column(col)
    for route in ROUTES:
        summary.add_row(route, str(int((r_old == route).sum())), str(int((r_new == route).sum())))
    console.print(summary)
    console.print(f"{len(changed)} of {len(decisions)} claims change route")
    if len(changed):
        detail = Table()
        for col in ("claim_id", "p_fraud", "amount", "old", "new"):
            detail.add_column(col)
        for r in changed.head(show).to_dict("records"):
            detail.add_row(r["claim_id"], f"{r['p_fraud']:.4f}", f"{r['amount']:,.2f}", r["route_old"], r["route_new"])
        console.print(detail)
