"""OpenTelemetry tracing: one trace per claim, from ingest to payout, across processes and runs.

A claim's trace id is derived from its claim id, so the spans written by the sensor's run, a
later review, and the payout run all join one trace without passing context between processes.
Spans go to JSON lines under `<home>/traces/` by default, and also over OTLP/HTTP when
`OTEL_EXPORTER_OTLP_ENDPOINT` (or `AIOS_OTLP_ENDPOINT`) is set.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from aios.kernel.settings import get_settings

SERVICE = "aios"
_lock = threading.Lock()
_provider: TracerProvider | None = None


def claim_trace_id(claim_id: str) -> int:
    """The 128-bit trace id of a claim (stable: the same claim always gets the same trace)."""
    return int.from_bytes(hashlib.sha256(f"trace:{claim_id}".encode()).digest()[:16], "big") or 1


def claim_trace_hex(claim_id: str) -> str:
    """The claim's trace id as the 32-hex-digit string OpenTelemetry prints (and the ledger stores)."""
    return f"{claim_trace_id(claim_id):032x}"


def _root_span_id(claim_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"root:{claim_id}".encode()).digest()[:8], "big") or 1


def spans_path() -> Path:
    """Where the file exporter writes (one JSON span per line)."""
    return get_settings().home / "traces" / "spans.jsonl"


def _provider_once() -> TracerProvider:
    global _provider
    with _lock:
        if _provider is None:
            provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
            path = spans_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the provider
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(
                out=out, formatter=lambda span: span.to_json(indent=None) + "\n")))
            endpoint = os.environ.get("AIOS_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            if endpoint:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
                    endpoint=endpoint.rstrip("/") + "/v1/traces")))
            _provider = provider
    return _provider


def _claim_context(claim_id: str):  # -> opentelemetry Context
    parent = SpanContext(trace_id=claim_trace_id(claim_id), span_id=_root_span_id(claim_id), is_remote=True,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(parent))


def record_claim_spans(stage: str, claim_ids: Iterable[str], started_ns: int, attributes: Mapping[str, Any] | None = None,
                       per_claim: Mapping[str, Mapping[str, Any]] | None = None) -> int:
    """One span named `stage` per claim, in the claim's trace, covering [started_ns, now]; returns the count."""
    tracer = _provider_once().get_tracer("aios.pipeline")
    end = time.time_ns()
    n = 0
    for cid in claim_ids:
        cid = str(cid)
        attrs = {"claim.id": cid, **(attributes or {}), **((per_claim or {}).get(cid, {}))}
        span = tracer.start_span(stage, context=_claim_context(cid), start_time=started_ns,
                                 attributes={k: v for k, v in attrs.items() if v is not None})
        span.end(end_time=end)
        n += 1
    return n


def flush() -> None:
    """Write out buffered spans (call before a short-lived process exits)."""
    if _provider is not None:
        _provider.force_flush()


def read_spans(path: Path | None = None) -> list[dict[str, Any]]:
    """The spans written so far (for tests and `aios trace`)."""
    p = path or spans_path()
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
