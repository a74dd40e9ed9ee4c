"""HTTP payment-API rail: one `POST /payments` per order, with the claim's key as `Idempotency-Key`.

The provider promises: the same key with the same body returns the payment it made the first
time (never a second one); the same key with a different body is refused (409/422). So the
client may retry anything it did not get an answer to — a timeout, a 5xx, a dropped connection —
with the same key and body, bounded, with exponential back-off. Orders still unanswered after the
last attempt stay pending; the next dispatch sends them again under the same key.
"""

from __future__ import annotations

import time

import httpx

from connectors.rails.base import ACKNOWLEDGED, REJECTED, PaymentOrder, PaymentRail, RailOutcome
from connectors.rails.crash import crash_point

RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


def order_body(o: PaymentOrder) -> dict:
    """The JSON body of one payment request (what the provider compares under one key)."""
    return {"claim_id": o.claim_id, "amount_cents": int(o.amount_cents), "currency": o.currency,
            "creditor_name": o.creditor_name, "creditor_iban": o.creditor_iban, "remittance": o.remittance}


class HttpPaymentRail(PaymentRail):
    """Pays through a payment provider's HTTP API."""

    name = "http"

    def __init__(self, base_url: str, timeout_s: float = 2.0, attempts: int = 4, backoff_s: float = 0.05,
                 token: str | None = None, client: httpx.Client | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = client or httpx.Client(base_url=base_url, timeout=timeout_s, headers=headers)
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s

    def pay_one(self, o: PaymentOrder) -> RailOutcome | None:
        """POST one order, retrying what went unanswered; None when the provider never answered."""
        last = ""
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(min(self.backoff_s * 2 ** (attempt - 1), 1.0))
            try:
                resp = self.client.post("/payments", json=order_body(o),
                                        headers={"Idempotency-Key": o.idempotency_key})
            except httpx.TransportError as exc:  # timeout, refused, dropped mid-answer: retry, same key
                last = f"{type(exc).__name__}: {exc}"
                continue
            if resp.status_code in RETRYABLE_STATUS:
                last = f"HTTP {resp.status_code}"
                continue
            if resp.status_code in (200, 201):
                body = resp.json()
                return RailOutcome(o.idempotency_key, ACKNOWLEDGED, receipt=str(body["id"]),
                                   detail="replayed" if body.get("replayed") else "created")
            return RailOutcome(o.idempotency_key, REJECTED, detail=f"HTTP {resp.status_code}: {resp.text[:300]}")
        self.last_error = last
        return None

    def send(self, batch_id: str, created_at: str, orders: list[PaymentOrder]) -> list[RailOutcome]:
        """Pay each order (one request each); orders the provider never answered are left out (stay pending)."""
        out = []
        for o in orders:
            outcome = self.pay_one(o)
            crash_point("http_between_orders")
            if outcome is not None:
                out.append(RailOutcome(outcome.idempotency_key, outcome.status, outcome.receipt, outcome.detail,
                                       batch_id))
        return out

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()
