"""Pytest fixtures for the real servers the ingress tests run against (no mocks).

Import the fixtures into a test module (`from tests.servers import nats_url, ...`).

- `pubsub_emulator`: "host:port" of the Google Cloud Pub/Sub emulator on
  127.0.0.1:8085, started (java, ~10 s) when nothing listens there and stopped at
  the end of the session if it was started here.
- `nats_url`: NATS with JetStream on 127.0.0.1:4222 (started with
  `nats-server -js -sd <tmp>` when nothing listens there).
- `nats_restartable`: a private nats-server on a free port with its own store dir,
  which a test may stop and start (`.restart()`) without touching the shared server.
- `postgres_url`: a fresh database `aios_test_<random>` on 127.0.0.1:5432 (user
  postgres, trust auth), dropped at the end; a `postgresql+psycopg2://` URL.

A server that is missing and cannot be started skips the test with the reason,
except when AIOS_REQUIRE_SERVERS=1 (CI): then the test fails, so CI never passes by
skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from connectors.bus.local_servers import (
    LocalServer,
    ServerUnavailable,
    check_jetstream,
    create_postgres_database,
    drop_postgres_database,
    ensure_nats_server,
    ensure_pubsub_emulator,
    start_nats_server,
)

PUBSUB_HOST, PUBSUB_PORT = "127.0.0.1", int(os.environ.get("AIOS_TEST_PUBSUB_PORT", "8085"))
NATS_HOST, NATS_PORT = "127.0.0.1", int(os.environ.get("AIOS_TEST_NATS_PORT", "4222"))


def require_servers() -> bool:
    return os.environ.get("AIOS_REQUIRE_SERVERS", "").strip().lower() in ("1", "true", "yes")


def server_unavailable(reason: str) -> None:
    """Skip (default) or fail (AIOS_REQUIRE_SERVERS=1) with the reason."""
    if require_servers():
        pytest.fail(f"required server unavailable (AIOS_REQUIRE_SERVERS=1): {reason}", pytrace=False)
    pytest.skip(f"server unavailable: {reason}")


def unique_name(prefix: str) -> str:
    """A fresh topic/subscription/stream name (valid for Pub/Sub and NATS)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[str]:
    try:
        server = ensure_pubsub_emulator(PUBSUB_HOST, PUBSUB_PORT, timeout_s=60)
    except ServerUnavailable as exc:
        server_unavailable(str(exc))
        return
    try:
        yield server.address
    finally:
        server.close()  # only stops it if started here


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    try:
        server = ensure_nats_server(NATS_HOST, NATS_PORT)
        url = f"nats://{server.address}"
        check_jetstream(url)
    except ServerUnavailable as exc:
        server_unavailable(str(exc))
        return
    try:
        yield url
    finally:
        server.close()


@pytest.fixture
def nats_restartable(tmp_path) -> Iterator[LocalServer]:
    """Our own nats-server (free port, own -sd dir) that the test may restart; `.address`, `.restart()`."""
    try:
        server = start_nats_server("127.0.0.1", None, tmp_path / "nats")
    except ServerUnavailable as exc:
        server_unavailable(str(exc))
        return
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    try:
        name, url = create_postgres_database()
    except ServerUnavailable as exc:
        server_unavailable(str(exc))
        return
    try:
        yield url
    finally:
        drop_postgres_database(name)


def land_until(bus, engine, expected: int, max_ticks: int = 60, budget_s: float = 30.0,
               max_messages: int = 1000, timeout_s: float = 1.0) -> list:
    """pull_and_land ticks until `expected` claims are landed (bounded in ticks and time)."""
    import time

    from connectors.landing import landed_count, pull_and_land

    results, deadline = [], time.monotonic() + budget_s
    for _ in range(max_ticks):
        if landed_count(engine) >= expected or time.monotonic() > deadline:
            break
        results.append(pull_and_land(bus, engine, bus.source, max_messages, timeout_s))
    return results
