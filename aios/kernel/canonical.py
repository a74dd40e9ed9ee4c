"""Canonical JSON and the one timestamp convention: the bytes that hashes, snapshots and the ledger agree on.

Canonical JSON: sorted keys, no spaces, UTF-8; NaN and infinities as strings, datetimes as UTC text,
numpy values as Python numbers, sets sorted. Timestamps: UTC text `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so
text order is time order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"



def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    try:
        return json.dumps(k)  # the same text json.dumps gives int/float/bool/None keys
    except TypeError:
        return str(k)


def _canon(obj: Any) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "NaN" if obj != obj else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, Mapping):
        return {_key(k): _canon(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canon(v) for v in obj]
    return _default(obj)


def _default(obj: Any) -> Any:
    """JSON form of values json cannot encode itself (json's `default=` hook)."""
    if isinstance(obj, (set, frozenset)):
        return sorted((_canon(v) for v in obj), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, datetime):
        if obj.tzinfo is not None:
            obj = obj.astimezone(timezone.utc).replace(tzinfo=None)
        return obj.strftime(TS_FORMAT)
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, Enum):
        return _canon(obj.value)
    if isinstance(obj, (Decimal, Path)):
        return str(obj)
    if isinstance(obj, bytes):
        return obj.hex()
    if hasattr(obj, "model_dump"):  # pydantic
        return _canon(obj.model_dump(mode="json"))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _canon(dataclasses.asdict(obj))
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return _canon(obj.tolist())
    if hasattr(obj, "item"):
        return _canon(obj.item())
    raise TypeError(f"cannot put {type(obj).__name__} into the audit ledger: {obj!r}")


_DUMPS = {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": False, "allow_nan": False}
_FAST = json.JSONEncoder(default=_default, **_DUMPS)  # built once: json.dumps(**kw) builds one per call
_PLAIN = json.JSONEncoder(**_DUMPS)


def canonical_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 text; NaN/inf as strings, datetimes as UTC text,
    numpy values as Python numbers, sets sorted."""
    try:  # fast path: json's C encoder; NaN or non-string keys fall back to the full walk
        return _FAST.encode(obj)
    except (ValueError, TypeError):
        return _PLAIN.encode(_canon(obj))


def sha256_text(text: str) -> str:
    """The sha256 hex digest of `text` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def format_ts(ts: datetime | date | str) -> str:
    """A time as the ledger's UTC text; naive datetimes are taken as UTC, dates as midnight UTC."""
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.strip().replace("Z", "+00:00"))
    if not isinstance(ts, datetime):
        ts = datetime(ts.year, ts.month, ts.day)
    if ts.tzinfo is not None:
        ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
    return ts.strftime(TS_FORMAT)


def utc_now() -> str:
    """The current UTC time in the ledger's timestamp format."""
    return datetime.now(timezone.utc).strftime(TS_FORMAT)
