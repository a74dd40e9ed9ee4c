"""The one FastAPI app that `aios serve` runs: the decision API, health, metrics, and routers others install."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

from aios.kernel.settings import Settings, get_settings
from service.auth import BodyLimit, install_auth
from service.decisions_api import ACTOR, install_decisions_api, service_version
from service.metrics import install_metrics
from service.model_pins import DEFAULT_CHECK_SECONDS, ModelPins, Pinned
from service.review import install as install_review

SWITCH_INTERVAL_S = 0.0005


def create_app(settings: Settings | None = None, *, pin_check_seconds: float = DEFAULT_CHECK_SECONDS,
               max_batch: int = 512) -> FastAPI:
    """The service app bound to `settings` (the process settings when omitted).

    Models are pinned when the app starts (its lifespan) and re-checked every `pin_check_seconds`;
    concurrent requests are decided together, up to `max_batch` claims per decision call.
    """
    settings = settings or get_settings()
    settings.ensure_dirs()
    pins = ModelPins(settings, check_seconds=pin_check_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The decision worker is CPU-bound Python; a short switch interval lets the event loop take the GIL
        # between its steps, so requests keep flowing into the batcher instead of queueing behind it.
        previous = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        pins.start()
        app.state.decision_service.batcher.start()
        try:
            yield
        finally:
            app.state.decision_service.batcher.stop()
            pins.stop()
            sys.setswitchinterval(previous)

    # No Swagger UI or ReDoc: both load scripts from a public CDN, on the same origin as /review. The OpenAPI
    # document itself is served on the embedded profile only (settings.api_docs overrides).
    app = FastAPI(title="aios decision service", version=service_version(), lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json" if settings.serve_api_docs else None,
                  description="Synchronous claims-fraud decisions: the batch path's decision function, one claim "
                              "or a small batch at a time. Authenticate with `Authorization: Bearer <API key>` "
                              "(`aios clients add`).")
    app.state.settings = settings
    metrics = install_metrics(app)
    install_decisions_api(app, settings, pins, metrics, max_batch=max_batch)
    install_auth(app, app.state.decision_service.engine)
    install_review(app, settings)
    # outermost last: the Host header and the body size are checked before anything else runs
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    ledger = app.state.decision_service.ledger

    def record_swap(new: Pinned, old: Pinned | None) -> None:
        metrics.set_pinned(new.versions)
        metrics.model_reloads.labels(outcome="pinned" if old is None else "swapped").inc()
        ledger.append("model_pinned", ACTOR, {"previous": old.versions if old else None,
                                              "mlflow_alias": settings.model_alias}, versions=new.versions)

    pins.on_swap(record_swap)

    @app.get("/healthz", tags=["health"], summary="Liveness")
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok", "actor": ACTOR}

    @app.get("/readyz", tags=["health"], summary="Readiness: models pinned")
    def readyz() -> JSONResponse:
        """200 with the pinned versions once models are pinned, else 503 with the reason."""
        if not pins.ready:
            return JSONResponse({"status": "not ready", "reason": pins.last_error or "loading"}, status_code=503)
        pinned: Pinned = pins.current()
        return JSONResponse({"status": "ready", "versions": pinned.versions, "last_check_error": pins.last_error})

    return app


SERVE_ENV = {"pin_check_seconds": "AIOS_SERVE_PIN_CHECK_SECONDS", "max_batch": "AIOS_SERVE_MAX_BATCH"}


def app_from_env() -> FastAPI:
    """`create_app` with the options `aios serve` passes its worker processes in `SERVE_ENV`
    (uvicorn starts each worker from an import string, so options travel in the environment)."""
    return create_app(pin_check_seconds=float(os.environ.get(SERVE_ENV["pin_check_seconds"], DEFAULT_CHECK_SECONDS)),
                      max_batch=int(os.environ.get(SERVE_ENV["max_batch"], "512")))
