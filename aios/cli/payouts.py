"""`aios payouts ...`: where payouts stand per rail (`status`) and a dispatch of pending intents (`dispatch`)."""

from __future__ import annotations

import json
from datetime import date

import typer
from rich.console import Console
from rich.table import Table

payouts_app = typer.Typer(help="Payout intents and the payment rails.", no_args_is_help=True)
console = Console()

GATES = ("data_quality", "drift")


def _engine():
    from aios.kernel.db import get_engine
    from aios.kernel.settings import get_settings
    from connectors.rails.outbox import ensure_outbox

    s = get_settings()
    s.ensure_dirs()
    engine = get_engine(s.db_url)
    ensure_outbox(engine)
    return engine


def _day(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise typer.BadParameter(f"--date: expected YYYY-MM-DD, got {value!r}") from None


@payouts_app.command()
def status(day: str | None = typer.Option(None, "--date", help="Only the claims of this day (partition)."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Payout intents per rail: waiting (intent), sending, sent, acknowledged, rejected."""
    from connectors.rails.outbox import STATUSES, status_counts

    counts = status_counts(_engine(), _day(day))
    if as_json:
        typer.echo(json.dumps(counts, sort_keys=True))
        return
    table = Table(title=f"payouts{' for ' + day if day else ''}")
    table.add_column("rail")
    for s in STATUSES:
        table.add_column(s, justify="right")
    table.add_column("total", justify="right")
    for rail, by in sorted(counts.items()):
        table.add_row(rail, *(str(by[s]) for s in STATUSES), str(sum(by.values())))
    if not counts:
        table.add_row("(none)", *("0" for _ in STATUSES), "0")
    console.print(table)


@payouts_app.command()
def dispatch(day: str | None = typer.Option(None, "--date", help="Only the claims of this day (partition).")
             ) -> None:
    """Send pending intents through the configured rail, collect its verdicts, audit each one."""
    from connectors.stores.audit import record_settlements
    from aios.kernel.settings import get_settings
    from connectors.payout import PayoutConnector
    from connectors.rails.select import build_rail

    s = get_settings()
    env = s.resource_env()
    engine = _engine()
    rail, settle = build_rail(s.payout_rail, env["AIOS_RESOLVED_PAYOUT_BANK_DIR"], s.payout_api_url or "",
                              env["AIOS_RESOLVED_PAYOUT_BANK_STANDIN"] == "true")
    report = PayoutConnector(engine, required_gates=GATES, rail=rail, settle=settle).dispatch(_day(day))
    record_settlements(engine, report.settled, actor="cli:payouts-dispatch")
    console.print(f"batches sent: {len(report.batches)}, payments sent: {report.sent}, "
                  f"acknowledged: {len(report.acknowledged)}, rejected: {len(report.rejected)}")
    for part, reasons in sorted(report.refused.items()):
        console.print(f"[yellow]refused {part}[/]: " + "; ".join(reasons))
    for line in report.unavailable:
        console.print(f"[red]rail unavailable[/]: {line}")
