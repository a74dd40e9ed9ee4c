"""`aios audit ...`: verify the ledger's chain, show one claim's record, export a time range.

The main CLI mounts `audit_app` (`app.add_typer(audit_app, name="audit")`). Every
command builds its engine from `aios.kernel.settings.get_settings().db_url`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.pretty import Pretty
from rich.table import Table

from aios.kernel.db import get_engine
from aios.kernel.settings import get_settings
from aios.kernel.canonical import canonical_json
from connectors.stores.ledger import AuditLedger

audit_app = typer.Typer(help="The hash-chained audit ledger: verify, show, export.", no_args_is_help=True)
console = Console()


def _ledger() -> AuditLedger:
    url = get_settings().db_url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return AuditLedger(get_engine(url))


@audit_app.command()
def verify() -> None:
    """Walk the whole chain; exit 1 at the first broken link, printing its seq and the reason."""
    result = _ledger().verify()
    if result.ok:
        console.print(f"[green]ledger OK[/]: {result.checked} rows, head seq {result.head_seq} "
                      f"hash {result.head_hash}")
        return
    seq = result.first_broken_seq if result.first_broken_seq is not None else "-"
    console.print(f"[red]ledger BROKEN[/] at seq {seq}: {result.reason} ({result.checked} rows intact before it)")
    raise typer.Exit(1)


@audit_app.command()
def show(claim_id: str = typer.Argument(..., help="The claim whose ledger rows to join."),
         as_json: bool = typer.Option(False, "--json", help="Print the record as JSON instead of tables.")) -> None:
    """Everything the ledger holds on one claim: decision, data snapshot, versions, reviews, payouts."""
    record = _ledger().claim_record(claim_id)
    if not record["events"]:
        console.print(f"[yellow]no ledger rows for claim {claim_id}[/]")
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(record, indent=2, ensure_ascii=False, sort_keys=True))
        return
    summary = Table(title=f"claim {claim_id}", show_header=False)
    summary.add_column("field", style="bold")
    summary.add_column("value", overflow="fold")
    for key in ("route", "snapshot_hash", "first_at", "last_at", "reviewers", "paid_amount", "rows_intact"):
        summary.add_row(key, str(record[key]))
    summary.add_row("versions", Pretty(record["versions"]))
    summary.add_row("decision", Pretty(record["decision"]))
    console.print(summary)
    events = Table(title="ledger rows")
    for col in ("seq", "at", "event", "actor", "payload"):
        events.add_column(col, overflow="fold")
    for e in record["events"]:
        events.add_row(str(e["seq"]), e["at"], e["event"], e["actor"], canonical_json(e["payload"]))
    console.print(events)


@audit_app.command()
def export(from_ts: str = typer.Option(None, "--from", help="Start (inclusive), ISO date or time, UTC."),
           to_ts: str = typer.Option(None, "--to", help="End (exclusive), ISO date or time, UTC."),
           out: Path = typer.Option(None, "--out", help="Write JSON lines here instead of stdout.")) -> None:
    """Rows in [from, to) as JSON lines, each still verifiable (`governance.hashchain.row_hash`)."""
    ledger = _ledger()
    fh = out.open("w", encoding="utf-8") if out else sys.stdout
    n = 0
    try:
        for row in ledger.export(from_ts, to_ts):
            fh.write(canonical_json(row) + "\n")
            n += 1
    finally:
        if out:
            fh.close()
    if out:
        console.print(f"exported {n} rows to {out}")
