"""`aios clients ...`: service clients of the decision API (add, list, revoke).

`add` prints the API key once (only its SHA-256 is stored); give it to the calling system, which sends
`Authorization: Bearer <key>`. Scopes: decisions:write (POST /v1/decisions), claims:read
(GET /v1/claims/{id}), metrics:read (GET /metrics). Every change goes to the audit ledger.
"""

from __future__ import annotations

import getpass

import typer
from rich.console import Console
from rich.table import Table

clients_app = typer.Typer(help="Service clients (API keys) of the decision API.", no_args_is_help=True)
console = Console()


def _engine():
    from aios.kernel.db import ensure_tables, get_engine
    from aios.kernel.settings import get_settings
    from connectors.stores.clients import TABLES

    s = get_settings()
    s.ensure_dirs()
    engine = get_engine(s.db_url)
    ensure_tables(engine)
    ensure_tables(engine, *TABLES)
    return engine


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@clients_app.command("add")
def add(name: str = typer.Argument(..., help="Client name (letters, digits, . _ -)."),
        scope: list[str] = typer.Option(..., "--scope", help="decisions:write, claims:read or metrics:read; "
                                                              "repeat for several."),
        rate: int = typer.Option(600, "--rate", help="Requests a minute this client may make.")) -> None:
    """Register a client and print its API key (shown once)."""
    from aios.kernel.errors import ReviewError
    from connectors.stores.audit import record_change
    from connectors.stores.clients import add_client

    engine = _engine()
    try:
        client, key = add_client(engine, name, scope, created_by=_actor(), rate_per_minute=rate)
    except ReviewError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    record_change(engine, "client_change", _actor(), {"client_id": client.client_id, "name": name,
                                                       "change": "added", "scopes": sorted(client.scopes),
                                                       "rate_per_minute": rate})
    console.print(f"client [bold]{name}[/] ({client.client_id}) with {', '.join(sorted(client.scopes))}, "
                  f"{rate} requests a minute. Its API key, shown only now:")
    print(key)


@clients_app.command("list")
def list_() -> None:
    """List clients: id, name, scopes, rate, state (never keys)."""
    from connectors.stores.clients import list_clients

    table = Table(title="service clients")
    for col in ("id", "name", "scopes", "rate/min", "active", "created", "revoked"):
        table.add_column(col)
    for c in list_clients(_engine()):
        table.add_row(c["client_id"], c["name"], c["scopes"], str(c["rate_per_minute"]),
                      "yes" if c["active"] else "no", c["created_at"][:19], (c["revoked_at"] or "")[:19])
    console.print(table)


@clients_app.command("revoke")
def revoke(name: str = typer.Argument(..., help="Client name or id.")) -> None:
    """Revoke a client's key; its next request is refused."""
    from aios.kernel.errors import ReviewError
    from connectors.stores.audit import record_change
    from connectors.stores.clients import revoke_client

    engine = _engine()
    try:
        client_id = revoke_client(engine, name)
    except ReviewError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    record_change(engine, "client_change", _actor(), {"client_id": client_id, "change": "revoked"})
    console.print(f"client [bold]{name}[/] revoked")
