"""Claim records as a producer sends them (one JSON object per claim): the one generator the tests and the
benchmarks use for bus and landing traffic.

Each record is valid under the contract (`aios.kernel.contracts`), its allowed values taken from there,
and a pure function of its index, so a test can name the record it means (`claim_record(3)`). The
labelled history with fraud and documents is `models.generator`'s job, not this one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aios.kernel.contracts import CHANNELS, CLAIM_TYPES, CURRENCIES

START = datetime(2026, 11, 18, 8, 0, tzinfo=UTC)


def claim_record(i: int, claim_id: str | None = None, days: int = 3, start: datetime = START) -> dict[str, Any]:
    """Claim number `i`: a valid, realistic record (~400 bytes as JSON) submitted within `days` days from
    `start`; `claim_id` replaces the default `CLM-<i, 8 digits>`."""
    submitted = start + timedelta(days=i % days, minutes=(i * 7) % 600)
    return {
        "claim_id": claim_id or f"CLM-{i:08d}",
        "policy_id": f"POL-{(i * 31) % 50_000:06d}",
        "customer_id": f"CUS-{(i * 17) % 20_000:06d}",
        "submitted_at": submitted.isoformat(),
        "incident_date": (submitted - timedelta(days=1 + i % 20)).date().isoformat(),
        "claim_type": CLAIM_TYPES[i % len(CLAIM_TYPES)],
        "amount": round(250 + (i * 37.5) % 9_000, 2),
        "currency": CURRENCIES[i % len(CURRENCIES)],
        "channel": CHANNELS[i % len(CHANNELS)],
        "customer_tenure_days": 30 + (i * 13) % 3_000,
        "prior_claims": i % 5,
        "description": "Rear-ended at a junction; bumper and tail light damaged, photos attached.",
        "document_refs": [f"doc-{i}-photo.jpg", f"doc-{i}-form.pdf"],
    }


def claim_json(i: int, **kw: Any) -> bytes:
    """`claim_record(i, **kw)` as the UTF-8 JSON bytes of one bus message."""
    return json.dumps(claim_record(i, **kw)).encode()
