"""Who may call the decision API: API keys with scopes, a per-client rate limit, a body size limit.

`require_scope("decisions:write")` is a FastAPI dependency: it reads `Authorization: Bearer <key>`,
checks the key (`connectors.stores.clients`: one primary-key read and a SHA-256, no argon2 on the
request path), the scope, and the client's rate; it answers 401 (no or bad key), 403 (scope missing)
or 429 (over the rate, with Retry-After) and otherwise returns the `Client`, whom the ledger names.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.stores.clients import Client, authenticate_key

BEARER = "bearer "


class RateLimiter:
    """A token bucket per client: `rate_per_minute` requests a minute, bursts up to a minute's worth."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client id -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, client: Client) -> float:
        """0.0 if the request may go ahead (a token taken), else the seconds until the next token."""
        rate = max(1, client.rate_per_minute) / 60.0
        cap = float(max(1, client.rate_per_minute))
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(client.client_id, (cap, now))
            tokens = min(cap, tokens + (now - at) * rate)
            if tokens >= 1.0:
                self._buckets[client.client_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client.client_id] = (tokens, now)
            return (1.0 - tokens) / rate


def _client_of(request: Request) -> Client:
    header = request.headers.get("authorization", "")
    key = header[len(BEARER):].strip() if header.lower().startswith(BEARER) else None
    client = authenticate_key(request.app.state.api_engine, key)
    if client is None:
        raise HTTPException(401, "a valid API key is required: Authorization: Bearer <key> (aios clients add)",
                            headers={"WWW-Authenticate": 'Bearer realm="aios"'})
    return client


def require_scope(scope: str) -> Callable[[Request], Client]:
    """A dependency: the authenticated client, which must hold `scope` and be within its rate."""

    # async: the key check is one primary-key read (~0.1 ms on SQLite), cheaper inline than the thread-pool hop
    # a sync dependency costs under load
    async def dependency(request: Request) -> Client:
        client = _client_of(request)
        if scope not in client.scopes:
            raise HTTPException(403, f"this client lacks the scope {scope!r}")
        wait = request.app.state.rate_limiter.take(client)
        if wait > 0:
            raise HTTPException(429, f"rate limit of {client.rate_per_minute} requests a minute reached",
                                headers={"Retry-After": str(int(wait) + 1)})
        request.state.client = client
        return client

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 (by its Content-Length, or while it streams)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _refusal(self) -> JSONResponse:
        return JSONResponse({"detail": f"request body larger than {self.max_bytes} bytes"}, status_code=413)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse oversized bodies before the app reads them."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length")
        try:
            declared = int(length) if length is not None else None
        except ValueError:
            declared = None
        if declared is not None and declared > self.max_bytes:
            await self._refusal()(scope, receive, send)
            return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except _TooLarge:
            if not started:
                await self._refusal()(scope, receive, send)


class _TooLarge(Exception):
    pass


def install_auth(app: Any, engine: Any) -> None:
    """Give `app` the stores engine the key checks read and one rate limiter."""
    app.state.api_engine = engine
    app.state.rate_limiter = RateLimiter()
