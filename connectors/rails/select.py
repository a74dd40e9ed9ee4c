"""Build the configured rail (and, in the embedded profile, the in-process bank that answers it)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from connectors.rails.base import PaymentRail

RAILS = ("iso20022", "http")


_BANKS: dict[str, object] = {}
_BANKS_LOCK = threading.Lock()


def embedded_bank(root: str):  # -> EmbeddedBank
    """One in-process stand-in bank per folder and process (two payers starting at once share it: opening
    it twice would create its accounts twice)."""
    from connectors.rails.bank_standin import EmbeddedBank

    with _BANKS_LOCK:
        bank = _BANKS.get(root)
        if bank is None:
            bank = _BANKS[root] = EmbeddedBank(root)
        return bank


def build_rail(kind: str, bank_dir: str | Path = "", api_url: str = "",
               bank_standin: bool = False) -> tuple[PaymentRail, Callable[[], object] | None]:
    """(rail, settle): the rail named `kind`; `settle` runs the in-process bank when `bank_standin`."""
    if kind == "iso20022":
        from connectors.rails.bank_standin import bank_folders, debtor_accounts
        from connectors.rails.iso20022 import Pain001FileRail

        if not bank_dir:
            raise ValueError("payout_bank_dir: required for the iso20022 rail")
        outbound, inbound = bank_folders(Path(bank_dir))
        settle = embedded_bank(str(bank_dir)).process if bank_standin else None
        return Pain001FileRail(outbound, inbound, debtor_accounts()), settle
    if kind == "http":
        from connectors.rails.http_api import HttpPaymentRail

        if not api_url:
            raise ValueError("payout_api_url: required for the http rail")
        return HttpPaymentRail(api_url), None
    raise ValueError(f"payout_rail: must be one of {', '.join(RAILS)}, got {kind!r}")
