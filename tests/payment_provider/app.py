"""A payment provider with `Idempotency-Key` semantics, run as its own process (tests, the demo).

It keeps its own ledger in its own SQLite file (`AIOS_PROVIDER_DB`): the truth for "paid once".
One key with the same body is one payment (a repeat answers 200 with the first payment and
`replayed: true`); one key with a different body is 422. Faults are injected through
`POST /admin/faults` (`{"mode": ..., "count": n, "delay_s": s}`), each for the next `count`
payment requests:
- `error_before`: answer 503 without paying;
- `error_after`: pay, then answer 500 (the client does not learn it paid);
- `slow_after`: pay, then sleep `delay_s` before answering (the client times out);
- `drop_after`: pay, then start the answer and drop the connection before finishing it.
Run: `AIOS_PROVIDER_DB=/tmp/p.db uvicorn --app-dir tests payment_provider.app:app --port N` (tests/paymentkit.py).
It lives with the tests, not in `connectors/`: it is the other side of the rail, and a web app.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

_lock = threading.Lock()
_faults: dict[str, Any] = {"mode": None, "count": 0, "delay_s": 0.0}
MODES = ("error_before", "error_after", "slow_after", "drop_after")


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(os.environ.get("AIOS_PROVIDER_DB", "provider.db"), timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("""CREATE TABLE IF NOT EXISTS payments (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, idempotency_key TEXT NOT NULL UNIQUE,
        body_hash TEXT NOT NULL, body TEXT NOT NULL, created_at REAL NOT NULL)""")
    return conn


def _take_fault() -> tuple[str | None, float]:
    with _lock:
        if _faults["mode"] and _faults["count"] > 0:
            _faults["count"] -= 1
            return _faults["mode"], float(_faults["delay_s"])
    return None, 0.0


class DropAfterStart:
    """ASGI wrapper: a response marked `x-drop-connection` is started (promising a body) and then cut off.

    Raising after the response started makes uvicorn close the connection: the client sees the
    connection drop before the answer is complete, after the payment was committed.
    """

    def __init__(self, inner: FastAPI) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):  # noqa: ANN001, ANN204
        dropping = False

        async def guarded(message):  # noqa: ANN001, ANN202
            nonlocal dropping
            if message["type"] == "http.response.start" and any(
                    k == b"x-drop-connection" for k, _ in message.get("headers", [])):
                dropping = True
                await send({"type": "http.response.start", "status": 201,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})
                await send({"type": "http.response.body", "body": b'{"id": ', "more_body": True})
                return
            if dropping:
                raise ConnectionAbortedError("injected: connection dropped after paying")
            await send(message)

        await self.inner(scope, receive, guarded)


api = FastAPI(title="payment provider (test stand-in)")


@api.post("/admin/faults")
def set_faults(spec: dict) -> dict:
    """Inject a fault for the next `count` payment requests (mode None clears)."""
    mode = spec.get("mode")
    if mode is not None and mode not in MODES:
        return JSONResponse({"detail": f"mode: one of {', '.join(MODES)} or null"}, status_code=422)
    with _lock:
        _faults.update(mode=mode, count=int(spec.get("count", 1)), delay_s=float(spec.get("delay_s", 0.0)))
    return dict(_faults)


@api.get("/admin/ledger")
def ledger() -> list[dict]:
    """Every payment the provider made, oldest first."""
    with _db() as conn:
        rows = conn.execute("SELECT id, idempotency_key, body FROM payments ORDER BY seq").fetchall()
    return [{"id": i, "idempotency_key": k, **json.loads(b)} for i, k, b in rows]


@api.get("/health")
def health() -> dict:
    """Liveness."""
    return {"ok": True}


@api.post("/payments")
async def create_payment(request: Request, idempotency_key: str | None = Header(default=None)) -> JSONResponse:
    """Pay once per key: same key and body → the same payment; same key, other body → 422."""
    if not idempotency_key or len(idempotency_key) > 120:
        return JSONResponse({"detail": "Idempotency-Key: header required, at most 120 characters"}, 400)
    body = await request.json()
    for name in ("amount_cents", "currency", "creditor_iban"):
        if name not in body:
            return JSONResponse({"detail": f"{name}: required"}, 422)
    if not isinstance(body["amount_cents"], int) or body["amount_cents"] <= 0:
        return JSONResponse({"detail": "amount_cents: positive integer required"}, 422)
    mode, delay = _take_fault()
    if mode == "error_before":
        return JSONResponse({"detail": "injected: unavailable"}, 503)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    conn = _db()
    try:
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute("SELECT id, body_hash FROM payments WHERE idempotency_key = ?",
                           (idempotency_key,)).fetchone()
        if row is None:
            pid = "pay_" + hashlib.sha256(f"{idempotency_key}:{time.time_ns()}".encode()).hexdigest()[:20]
            conn.execute("INSERT INTO payments (id, idempotency_key, body_hash, body, created_at) "
                         "VALUES (?, ?, ?, ?, ?)", (pid, idempotency_key, digest, canonical, time.time()))
            conn.execute("COMMIT")
            replayed = False
        else:
            conn.execute("ROLLBACK")
            if row[1] != digest:
                return JSONResponse({"detail": "Idempotency-Key: already used with a different request body"}, 422)
            pid, replayed = row[0], True
    finally:
        conn.close()
    if mode == "error_after":
        return JSONResponse({"detail": "injected: failed after paying"}, 500)
    if mode == "slow_after":
        import asyncio

        await asyncio.sleep(delay)
    if mode == "drop_after":
        return JSONResponse({}, 201, headers={"x-drop-connection": "1"})
    return JSONResponse({"id": pid, "status": "paid", "replayed": replayed}, 200 if replayed else 201)


app = DropAfterStart(api)
