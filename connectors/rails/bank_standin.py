"""The bank the embedded profile and the tests pay through: `mock-bank` (pain.001 in, pain.002 out).

The file rail does not know about it: it writes into an outbound folder and reads an inbound one,
as it would on a bank's SFTP host. This module opens those two folders to `mock-bank`, either in
this process (`EmbeddedBank`, for `make run`) or as its own process (`bank_command`, for the
chaos tests), and registers the debtor accounts payouts are made from, one per currency.
"""

from __future__ import annotations

import sys
from pathlib import Path

from connectors.rails.iso20022 import Debtor

DEBTOR_NAME = "AIOS Insurance"
CURRENCIES = ("EUR", "USD", "GBP", "CHF")
OPENING_BALANCE_MINOR = 10**15  # deep enough that the demo's payouts never hit insufficient funds


def _iban(bban: str) -> str:
    numeric = "".join(str(int(ch, 36)) for ch in bban + "NL00")
    return f"NL{98 - int(numeric) % 97:02d}{bban}"


def debtor_accounts() -> dict[str, Debtor]:
    """The insurer's payout account per currency (the accounts the stand-in bank holds for it)."""
    return {c: Debtor(DEBTOR_NAME, _iban(f"MOCK{900 + i:010d}")) for i, c in enumerate(CURRENCIES)}


def account_specs() -> list[tuple[str, dict]]:
    """(account id, fields) to register at `mock-bank` for `debtor_accounts()`."""
    return [(f"AIOS-{c}", {"name": d.name, "iban": d.iban, "currency": c, "balance": OPENING_BALANCE_MINOR})
            for c, d in debtor_accounts().items()]


def bank_folders(root: Path) -> tuple[Path, Path]:
    """(outbound, inbound): where pain.001 files go to the bank and pain.002 reports come back."""
    return root / "outbound", root / "inbound"


class EmbeddedBank:
    """`mock-bank` in this process, reading `root/outbound` and writing `root/inbound`; `process()` runs it."""

    def __init__(self, root: Path | str) -> None:
        from mockbank import accounts
        from mockbank.server import Config
        from mockbank.state import State

        self.root = Path(root)
        outbound, inbound = bank_folders(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.state = State(Config(db_path=str(self.root / "bank.db"), drop_dir=str(outbound),
                                  pickup_dir=str(inbound), drop_settle_ms=0, quiet=True))
        for ident, fields in account_specs():
            if accounts.get(self.state.conn, ident) is None:
                accounts.create(self.state.conn, ident, dict(fields))
        self.state.conn.commit()

    def process(self) -> int:
        """Read every complete pain.001 in the outbound folder and write its pain.002; returns files read."""
        return len(self.state.dropbox.scan())

    def payments(self) -> list[dict]:
        """The bank's ledger: every payment it decided on (end_to_end_id, amount, currency, status)."""
        cur = self.state.conn.execute("SELECT end_to_end_id, amount, currency, status FROM payment ORDER BY id")
        return [dict(zip(("end_to_end_id", "amount", "currency", "status"), r)) for r in cur.fetchall()]

    def close(self) -> None:
        """Close the bank's database."""
        self.state.conn.close()


def bank_command(root: Path, port: int) -> list[str]:
    """The command line that runs `mock-bank` as its own process on `root`'s folders and `port`."""
    outbound, inbound = bank_folders(root)
    return [sys.executable, "-m", "mockbank", "--port", str(port), "--db", str(root / "bank.db"),
            "--drop-dir", str(outbound), "--pickup-dir", str(inbound), "--drop-settle-ms", "0",
            "--drop-interval-ms", "200", "--quiet"]
