"""`aios users ...`: reviewer accounts for the review UI (add, list, set a password, disable, enable).

Accounts made here are the operator's bootstrap path (whoever runs it can write the stores anyway):
they are active at once and record `cli:<login>` as their provisioner. Accounts of approving roles made
in the review UI need a second administrator's confirmation (rbac policy `needs_second_admin`).

Passwords come from a hidden prompt (asked twice) or, for scripts, from the first line of standard
input with `--password-stdin`; they are never taken as arguments (shell history, `ps`) and never
printed. Every change is written to the audit ledger as a `user_change` event.
"""

from __future__ import annotations

import getpass
import sys

import typer
from rich.console import Console
from rich.table import Table

users_app = typer.Typer(help="Reviewer accounts for the review UI.", no_args_is_help=True)
console = Console()


def _engine():
    from aios.kernel.db import get_engine
    from connectors.stores.reviews import ensure_review_tables
    from aios.kernel.settings import get_settings

    s = get_settings()
    s.ensure_dirs()
    engine = get_engine(s.db_url)
    ensure_review_tables(engine)
    return engine


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _audit(engine, name: str, payload: dict) -> None:
    from connectors.stores.audit import record_user_change
    from governance.policy import load_policy_set

    record_user_change(engine, _actor(), name, payload, load_policy_set().label)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = typer.prompt("password", hide_input=True)
    second = typer.prompt("repeat password", hide_input=True)
    if first != second:
        console.print("[red]the passwords differ[/]")
        raise typer.Exit(2)
    return first


@users_app.command("add")
def add(name: str = typer.Argument(..., help="User name (letters, digits, . _ -)."),
        role: str = typer.Option(..., "--role", help="reviewer, senior_reviewer, analyst, auditor or admin."),
        password_stdin: bool = typer.Option(False, "--password-stdin",
                                            help="Read the password from the first line of standard input.")
        ) -> None:
    """Create an account; the password is asked for (hidden) unless --password-stdin."""
    from aios.kernel.errors import ReviewError
    from aios.usecases.review_workflow import provision_account
    from connectors.stores.accounts import validate_new_account
    from governance.policy import load_policy_set

    policy = load_policy_set()
    try:
        validate_new_account(name, role, "x" * 64, policy.roles)
        engine = _engine()
        provision_account(engine, policy, name, role, _read_password(password_stdin), created_by=_actor(),
                          bootstrap=True)
    except ReviewError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    console.print(f"user [bold]{name}[/] created with role {role}")


@users_app.command("list")
def list_() -> None:
    """List accounts with role, state and last sign-in."""
    from connectors.stores.accounts import list_users

    table = Table(title="review accounts")
    for col in ("name", "role", "active", "created", "last sign-in"):
        table.add_column(col)
    for u in list_users(_engine()):
        table.add_row(u["name"], u["role"], "yes" if u["active"] else "no", u["created_at"][:19],
                      (u["last_login_at"] or "never")[:19])
    console.print(table)


@users_app.command("passwd")
def passwd(name: str = typer.Argument(..., help="User name."),
           password_stdin: bool = typer.Option(False, "--password-stdin",
                                               help="Read the password from the first line of standard input.")
           ) -> None:
    """Set a new password (ends the user's sessions)."""
    from aios.kernel.errors import ReviewError
    from aios.usecases.review_workflow import set_account_password

    engine = _engine()
    try:
        set_account_password(engine, name, _read_password(password_stdin))
    except ReviewError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    _audit(engine, name, {"change": "password_set"})
    console.print(f"password of [bold]{name}[/] changed")


@users_app.command("disable")
def disable(name: str = typer.Argument(..., help="User name.")) -> None:
    """Disable an account (ends its sessions)."""
    _set_active(name, False)


@users_app.command("enable")
def enable(name: str = typer.Argument(..., help="User name.")) -> None:
    """Enable a disabled account."""
    _set_active(name, True)


def _set_active(name: str, active: bool) -> None:
    from aios.kernel.errors import ReviewError
    from aios.usecases.review_workflow import set_account_active

    engine = _engine()
    try:
        set_account_active(engine, name, active)
    except ReviewError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    _audit(engine, name, {"change": "enabled" if active else "disabled"})
    console.print(f"user [bold]{name}[/] {'enabled' if active else 'disabled'}")
