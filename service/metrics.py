"""Prometheus metrics of the service: request latency, decisions by route, the posterior's distribution.

Each app owns its registry (several apps in one process, as in tests, never collide); `/metrics`
serves it in the Prometheus text format.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from fastapi import Depends, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0)
POSTERIOR_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
UNMATCHED = "<unmatched>"


class ServiceMetrics:
    """The service's collectors on one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_latency = Histogram(
            "aios_http_request_duration_seconds", "Time from request received to response sent.",
            ["method", "path", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.decisions = Counter(
            "aios_decisions", "Decisions made by the service, by route.", ["route"], registry=self.registry)
        self.posterior = Histogram(
            "aios_posterior_p_fraud", "Posterior p_fraud of the decisions made by the service.",
            buckets=POSTERIOR_BUCKETS, registry=self.registry)
        self.batch_claims = Histogram(
            "aios_decision_batch_claims", "Claims decided together in one decision call (micro-batching).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=self.registry)
        self.batch_seconds = Histogram(
            "aios_decision_batch_seconds", "Time of one decision call and its writes, for all its claims.",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.model_reloads = Counter(
            "aios_model_reloads", "Checks of the pinned models that swapped or failed.", ["outcome"],
            registry=self.registry)
        self.model_info = Gauge(
            "aios_model_pinned", "1 for the versions decisions are made with now.",
            ["classifier", "bayes_net", "policy", "features"], registry=self.registry)

    def observe_decisions(self, routes: Iterable[str], posteriors: Iterable[float]) -> None:
        """Count decisions by route and add their posteriors to the histogram."""
        for route in routes:
            self.decisions.labels(route=route).inc()
        for p in posteriors:
            self.posterior.observe(float(p))

    def set_pinned(self, versions: dict[str, str]) -> None:
        """Show `versions` as the pinned set (the previous set is cleared)."""
        self.model_info.clear()
        self.model_info.labels(**{k: versions.get(k, "") for k in ("classifier", "bayes_net", "policy",
                                                                   "features")}).set(1)

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)


class LatencyMiddleware:
    """Pure ASGI middleware timing every HTTP request, labelled by route template (bounded cardinality)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or UNMATCHED
            self.metrics.request_latency.labels(method=scope["method"], path=path,
                                                status=str(status[0])).observe(time.perf_counter() - start)


def install_metrics(app: FastAPI) -> ServiceMetrics:
    """Attach the metrics and their middleware to `app` and serve them at `/metrics`."""
    metrics = ServiceMetrics()
    app.state.metrics = metrics
    app.add_middleware(LatencyMiddleware, metrics=metrics)

    from service.auth import require_scope

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(require_scope("metrics:read"))])
    def prometheus_metrics() -> Response:
        """Prometheus exposition, for clients holding `metrics:read`."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return metrics
