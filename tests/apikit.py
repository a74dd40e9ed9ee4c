"""Shared helpers of the API tests: register a service client and call the app as it."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI
from fastapi.testclient import TestClient

from aios.kernel.db import ensure_tables, get_engine
from aios.kernel.settings import Settings
from connectors.stores.clients import SCOPES, TABLES, add_client

BASE_URL = "http://127.0.0.1"  # an allowed host (settings.allowed_hosts); TestClient's default is not


def register_client(settings: Settings, name: str, scopes: Iterable[str] = SCOPES,
                    rate_per_minute: int = 1_000_000) -> tuple[str, str]:
    """A client in the settings' stores: (client id, API key)."""
    engine = get_engine(settings.db_url)
    ensure_tables(engine, *TABLES)
    client, key = add_client(engine, name, scopes, created_by="test", rate_per_minute=rate_per_minute)
    return client.client_id, key


def as_client(app: FastAPI, key: str | None) -> TestClient:
    """A test client of `app` on an allowed host, sending `key` as its bearer token (None: anonymous)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return TestClient(app, base_url=BASE_URL, headers=headers)
