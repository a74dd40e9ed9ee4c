"""`aios policy check [PATH]`: load a policy set (parse + check every file) and run its tables.

The main CLI mounts `policy_app` (`app.add_typer(policy_app, name="policy")`).
`policy diff` (decisions under two policy versions) comes later: it needs decisions data.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from governance.policy import POLICY_DIR, PolicyError, load_policy_set, run_policy_tables

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
