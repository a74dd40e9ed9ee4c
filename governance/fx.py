"""Versioned exchange rates for the policies: amounts in any claim currency compared with limits in one.

`config/fx_rates.yaml` holds `version`, `base` and `rates` (units of base per unit of currency). The
policies' limits are in `base`; a claim's amount is converted before any limit is compared, and the
rates' version is recorded with the decision that used them. An unknown currency is an error, never
a silent 1:1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aios.kernel.settings import PROJECT_ROOT

FX_PATH = PROJECT_ROOT / "config" / "fx_rates.yaml"


class FxError(ValueError):
    """The rates file is malformed, or a currency has no rate."""


@dataclass(frozen=True)
class FxRates:
    """Rates to one base currency, under a version."""

    version: str
    base: str
    rates: dict[str, float]

    def to_base(self, amount: float, currency: str) -> float:
        """`amount` of `currency` in the base currency; FxError for a currency without a rate."""
        try:
            rate = self.rates[str(currency)]
        except KeyError:
            raise FxError(f"currency: no exchange rate for {currency!r} in fx rates {self.version} "
                          f"(known: {', '.join(sorted(self.rates))})") from None
        return float(amount) * rate

    def record(self, amount: float, currency: str) -> dict[str, Any]:
        """What a decision records about a conversion: the rates' version, the rate and both amounts."""
        return {"fx_version": self.version, "currency": str(currency), "amount": float(amount),
                "rate": self.rates.get(str(currency)), "base": self.base,
                "amount_in_base": self.to_base(amount, currency)}


def load_fx_rates(path: Path | None = None) -> FxRates:
    """Read and check a rates file (default `config/fx_rates.yaml`)."""
    path = Path(path or FX_PATH)
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict) or not {"version", "base", "rates"} <= set(raw):
        raise FxError(f"{path}: needs version, base and rates")
    rates = raw["rates"]
    if not isinstance(rates, dict) or not rates:
        raise FxError(f"{path}: rates must map currencies to positive numbers")
    out: dict[str, float] = {}
    for cur, rate in rates.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise FxError(f"{path}: rates.{cur}: must be a positive number, got {rate!r}")
        out[str(cur)] = float(rate)
    base = str(raw["base"])
    if out.get(base) != 1.0:
        raise FxError(f"{path}: rates.{base}: the base currency's rate must be 1.0")
    return FxRates(version=str(raw["version"]), base=base, rates=out)
