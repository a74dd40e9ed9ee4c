"""The one interface every payment rail implements, and the values that cross it.

A rail is told to pay a batch of orders and answers, per order, what it knows now: `sent`
(handed over, the outcome comes later: a bank file), `acknowledged` (the rail booked it: its
receipt is the proof) or `rejected` (the rail refused it, with the reason). `collect` returns
outcomes that arrived later (a bank's status reports). The rail's own ledger is the truth for
"paid exactly once": every order carries its idempotency key, and sending a batch again under
the same batch id, or an order again under the same key, must never pay twice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

SENT, ACKNOWLEDGED, REJECTED = "sent", "acknowledged", "rejected"


@dataclass(frozen=True)
class PaymentOrder:
    """One payment to make: amount in integer minor units (cents), never a float."""

    idempotency_key: str
    claim_id: str
    amount_cents: int
    currency: str
    creditor_name: str
    creditor_iban: str
    remittance: str


@dataclass(frozen=True)
class RailOutcome:
    """What the rail said about one order: status, its receipt (rail's reference) and a reason when rejected."""

    idempotency_key: str
    status: str
    receipt: str = ""
    detail: str = ""
    batch_id: str = ""
    source: str = ""  # where a collected outcome was read (a report file), so the rail can archive it

    @property
    def key_is_batch(self) -> bool:
        """True when the outcome is about every payment of `batch_id` (a file rejected outright)."""
        return self.idempotency_key == "*"


class RailUnavailable(RuntimeError):
    """The rail could not be reached or did not answer; the orders stay pending and are sent again later."""


class PaymentRail(ABC):
    """A way to move money; see the module docstring for the promises every rail keeps."""

    name: str

    @abstractmethod
    def send(self, batch_id: str, created_at: str, orders: list[PaymentOrder]) -> list[RailOutcome]:
        """Hand `orders` to the rail as batch `batch_id`; safe to call again with the same batch (pays once)."""

    def collect(self) -> list[RailOutcome]:
        """Outcomes that arrived since the last call (status reports); rails that answer at once return []."""
        return []

    def collected(self, outcomes: list[RailOutcome]) -> None:  # noqa: B027 - optional hook
        """Called once `outcomes` from `collect` are recorded, so the rail may archive what it read."""
