"""The sync decision API: `POST /v1/decisions` and `GET /v1/claims/{claim_id}`.

A request goes through the batch path's own functions: the claim contract (`aios.kernel.contracts.Claim`
plus the business rules of `models/validation.py`, as field constraints so a 422 names the field),
the documents (sent inline, else read from the document store by `document_refs`, as the batch
path reads them), `models.features.build_features`, and the use case `aios.usecases.decide_and_record`
with the pinned models. The same claim with the same pinned versions gets the same decision as in a
batch. The response body is the decision contract, `aios.kernel.contracts.Decision`.

Documents. A claim sent without `documents` is decided with the documents of its `document_refs` that
the document store holds when the request is decided; a document not there yet counts as unread (it
lowers `docs_readable`, and without a readable invoice `doc_amount_mismatch` is unobserved, so the network
decides without that signal and its value of information shows in `uncertainty_drivers`). The service does
not wait for documents and does not re-decide by itself: submit the claim again once its documents landed
and the new decision replaces the old one (see Storage).

Paths. By default a claim is decided on the fast path (`models.fast_decision`, the same bits as `decide`)
and the claims decided together are kept in one transaction, committed before any response is sent
(group commit). `AIOS_API_FAST_PATH=0` selects the previous batch-shaped path (the benchmark's baseline).

Storage. Each decision is upserted by claim id into the decision store under the partition
`api-YYYY-MM-DD` (the UTC day the service received it). The daily batch partitions are named
`YYYY-MM-DD` and a batch run replaces its whole partition, so the API never writes into one.
A claim id belongs to the client that first submitted it. Re-submitting a claim the same client decided
before replaces that decision (the latest computation wins, as when a batch partition is re-run), unless
its review case is open (a reviewer is looking at that decision) - then, as for a claim already decided by
a batch or owned by another client, the request gets a 409 and nothing is written. The use
case keeps a decision as the batch does: feature snapshot, decision row, review case for claims routed
to human review, the policy set in force, then its score, posterior and decision in the audit ledger
(actor `client:<client id>`, with the versions, snapshot hash and the claim's trace id).

Who may call: service clients with API keys (`aios clients add`), scopes `decisions:write` (POST) and
`claims:read` (GET, own claims and batch claims only), a rate per client (service/auth.py). Inline
documents go to the claim's own namespace of the document store, never over another claim's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import datetime, timezone
from importlib import metadata as _metadata
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import pandas as pd
import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, FastAPI, Header, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationInfo, conlist, field_validator

from aios.kernel.contracts import CHANNELS, CLAIM_TYPES, CURRENCIES, Claim, Decision
from aios.kernel.db import ensure_tables, get_engine
from aios.kernel.contracts import ID_MAX_LENGTH, ID_PATTERN, MAX_DOCUMENTS_PER_CLAIM, Id, error_reason
from connectors.stores.clients import TABLES as CLIENT_TABLES
from connectors.stores.clients import Client, claim_owners, own_claims
from connectors.stores.reviews import open_review_claims
from aios.kernel.settings import Settings
from aios.kernel.tracing import claim_trace_hex, record_claim_spans
from aios.usecases.decide_and_record import (RecordFailed, decide_and_record, decision_body, needs_review,
                                             record_group)
from connectors.documents import DocumentStore
from connectors.stores.audit import ledger as audit_ledger
from connectors.stores.decisions import decisions_table, review_cases
from models.fast_decision import FastModels, FastPathUnsupported, claim_features, decide_one, snapshot_record
from models.features import build_features
from models.validation import MAX_AMOUNT, MAX_PRIOR_CLAIMS, MAX_REPORT_DELAY_DAYS, MAX_TENURE_DAYS
from service.auth import require_scope
from service.batcher import Job, MicroBatcher
from service.metrics import ServiceMetrics
from service.model_pins import ModelPins, NoModelPinned, Pinned

MAX_BATCH = 100
MAX_DOCUMENT_BYTES = 64_000
EARLIEST, LATEST = datetime(1990, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc)
# "0" selects the batch-shaped path (build_features + decide on DataFrames, one transaction per store) that
# the fast path replaced: the benchmark measures both in one run.
FAST_PATH_ENV = "AIOS_API_FAST_PATH"
log = logging.getLogger("aios.service.decisions")
API_PARTITION_PREFIX = "api-"
_SINGLE, _BATCH = "<claim>", "<batch>"


def service_version() -> str:
    """The installed aios package version (what the service's ledger actor records)."""
    try:
        return _metadata.version("aios")
    except _metadata.PackageNotFoundError:
        return "0"


ACTOR = f"service.api@{service_version()}"


# -------------------------------------------------------------------------------------------------
# request and response bodies


class DocumentIn(BaseModel):
    """A document of the claim, as text (its text layer or OCR output)."""

    model_config = ConfigDict(extra="forbid")

    doc_ref: Id = Field(description="One of the claim's document_refs.")
    text: str = Field(max_length=MAX_DOCUMENT_BYTES, description=f"At most {MAX_DOCUMENT_BYTES} bytes of UTF-8.")

    @field_validator("text")
    @classmethod
    def _bytes(cls, v: str) -> str:
        n = len(v.encode("utf-8", "surrogatepass"))
        if n > MAX_DOCUMENT_BYTES:
            raise ValueError(f"at most {MAX_DOCUMENT_BYTES} bytes of UTF-8 (got {n})")
        return v


class ClaimIn(Claim):
    """A claim submitted for a decision: the claim contract plus the batch path's business rules.

    `documents` is optional: when given, exactly these are the claim's readable documents;
    when absent, the documents named in `document_refs` are read from the document store.
    """

    claim_type: Literal[CLAIM_TYPES]  # type: ignore[valid-type]
    amount: float = Field(gt=0, le=MAX_AMOUNT)
    currency: Literal[CURRENCIES]  # type: ignore[valid-type]
    channel: Literal[CHANNELS]  # type: ignore[valid-type]
    customer_tenure_days: int = Field(ge=0, le=MAX_TENURE_DAYS)
    prior_claims: int = Field(ge=0, le=MAX_PRIOR_CLAIMS)
    documents: list[DocumentIn] | None = Field(default=None, max_length=MAX_DOCUMENTS_PER_CLAIM)

    @field_validator("submitted_at")
    @classmethod
    def _submitted_in_range(cls, v: datetime) -> datetime:
        at = v if v.tzinfo else v.replace(tzinfo=timezone.utc)
        if not EARLIEST <= at < LATEST:
            raise ValueError(f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
        return v

    @field_validator("incident_date")
    @classmethod
    def _report_delay(cls, v: Any, info: ValidationInfo) -> Any:
        submitted = info.data.get("submitted_at")
        if submitted is None:
            return v
        day = pd.Timestamp(submitted)
        day = (day.tz_convert("UTC").tz_localize(None) if day.tzinfo else day).normalize()
        delay = (day - pd.Timestamp(v)).days
        if delay < 0:
            raise ValueError(f"must not be after submitted_at (reported {-delay} day(s) before the incident)")
        if delay > MAX_REPORT_DELAY_DAYS:
            raise ValueError(f"must be at most {MAX_REPORT_DELAY_DAYS} days before submitted_at (got {delay})")
        return v

    @field_validator("documents")
    @classmethod
    def _documents_are_referenced(cls, v: list[DocumentIn] | None, info: ValidationInfo) -> Any:
        if v is None:
            return v
        refs = set(info.data.get("document_refs") or [])
        for doc in v:
            if doc.doc_ref not in refs:
                raise ValueError(f"document {doc.doc_ref!r} is not listed in document_refs")
        return v


def _shape(v: Any) -> str | None:
    if isinstance(v, list):
        return _BATCH
    if isinstance(v, (dict, BaseModel)):
        return _SINGLE
    return None


DecisionRequest = Annotated[
    Union[
        Annotated[ClaimIn, Tag(_SINGLE)],
        Annotated[conlist(ClaimIn, min_length=1, max_length=MAX_BATCH), Tag(_BATCH)],
    ],
    Discriminator(_shape, custom_error_type="request_shape",
                  custom_error_message=f"must be a claim object or a list of 1 to {MAX_BATCH} claims"),
]


class DecisionsOut(BaseModel):
    """The decisions of one request, in the order the claims were sent."""

    request_id: str
    decisions: list[Decision]


class FieldError(BaseModel):
    """One reason a request was refused: the field (e.g. `amount`, `[3].currency`) and why."""

    field: str
    reason: str
    loc: list[str | int]
    type: str


class ValidationErrorOut(BaseModel):
    """A 422: every field that is wrong and why."""

    detail: list[FieldError]


# -------------------------------------------------------------------------------------------------
# 422s that name the field


def field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """`('body', '<batch>', 3, 'amount')` → `[3].amount`; `('body', '<claim>', 'amount')` → `amount`."""
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
        if parts and parts[0] in (_SINGLE, _BATCH):
            parts = parts[1:]
        if not parts:
            return "body"
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 with one entry per failing field: `field`, `reason`, and FastAPI's own `loc` and `type`."""
    assert isinstance(exc, RequestValidationError)
    detail = [{"field": field_name(e.get("loc", ())), "reason": error_reason(e),
               "loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())], "type": str(e.get("type", ""))}
              for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": detail})


# -------------------------------------------------------------------------------------------------
# the decision service


def claims_frame(claims: list[ClaimIn]) -> pd.DataFrame:
    """The claims as the batch path's validated frame (columns of `Claim`, times in naive UTC)."""
    fields = list(Claim.model_fields)
    typed = pd.DataFrame([c.model_dump(include=set(fields)) for c in claims], columns=fields)
    typed["submitted_at"] = pd.to_datetime(typed["submitted_at"], utc=True).dt.tz_convert(None)
    typed["incident_date"] = pd.to_datetime(typed["incident_date"])
    return typed


def decision_dict(row: dict[str, Any], review_status: str | None = None) -> dict[str, Any]:
    """A stored (or just computed) decision row as the API's decision body (the fields of `Decision`)."""
    return decision_body(row, claim_trace_hex(row["claim_id"]), review_status)


BATCH_DECIDED = "already decided by a batch run; see GET /v1/claims/{claim_id}"
UNDER_REVIEW = "its review case is open: a reviewer is working the stored decision"
OTHER_OWNER = "the claim id belongs to another client"


class AlreadyDecided(HTTPException):
    """409: claims that cannot be (re)decided: decided by a batch run, under open review, or another
    client's. Nothing of the request is written."""

    def __init__(self, reasons: dict[str, str]) -> None:
        ids = sorted(reasons)
        first = reasons[ids[0]]
        super().__init__(409, {"reason": first if len(set(reasons.values())) == 1 else "claims cannot be decided",
                               "claim_ids": ids, "reasons": {c: reasons[c] for c in ids}})


def fast_path_default() -> bool:
    """Whether the service takes the single-claim fast path (`AIOS_API_FAST_PATH`, on unless "0"/"false")."""
    return os.environ.get(FAST_PATH_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class AlreadyReceived(HTTPException):
    """409: claims another ingress (bus, inbox) delivered first; their day's batch run decides them."""

    def __init__(self, reasons: dict[str, str]) -> None:
        super().__init__(409, {"reason": "already received by another ingress (one claim id, one claim); "
                                         "its day's batch run decides it, see GET /v1/claims/{claim_id}",
                               "claim_ids": sorted(reasons), "details": reasons})


class DecisionService:
    """Decides submitted claims with the pinned models and records every decision.

    Requests are queued to one worker that decides whatever is waiting in one call (service/batcher.py).
    On the fast path (the default) each claim is decided by `models.fast_decision.decide_one` (the same
    bits as `decide`, without pandas) and the claims decided together are kept in one transaction
    (`record_group`: snapshots, decision rows, review cases and ledger rows, one commit) before any
    of their responses is sent.
    """

    def __init__(self, settings: Settings, pins: ModelPins, metrics: ServiceMetrics | None = None, *,
                 max_batch: int = 512, fast_path: bool | None = None) -> None:
        """`max_batch`: most claims decided in one call when concurrent requests are batched together;
        `fast_path`: None reads `AIOS_API_FAST_PATH`."""
        self.fast_path = fast_path_default() if fast_path is None else fast_path
        self._fast: tuple[Pinned, FastModels | None] | None = None
        self._fast_lock = threading.Lock()
        self._typical: tuple[int, dict[str, float]] | None = None
        self.settings = settings
        self.pins = pins
        self.metrics = metrics
        self.engine = get_engine(settings.db_url)
        ensure_tables(self.engine)
        ensure_tables(self.engine, *CLIENT_TABLES)
        self.ledger = audit_ledger(self.engine)
        self.documents = DocumentStore(settings.documents_dir)
        process = self._decide_jobs_fast if self.fast_path else self._decide_jobs
        self.batcher: MicroBatcher[ClaimIn, list[dict[str, Any]]] = MicroBatcher(process, max_items=max_batch)
        self._policies: tuple[tuple[int, int], pd.DataFrame] | None = None
        if self.fast_path:
            pins.on_swap(lambda new, _old: self.fast_models(new))  # derived at pin time, not on a request

    def fast_models(self, pinned: Pinned) -> FastModels | None:
        """What the fast path derives from a pinned set (once per set); None when it cannot take the
        classifier apart (that set is then decided by `decide`)."""
        cached = self._fast
        if cached is not None and cached[0] is pinned:
            return cached[1]
        with self._fast_lock:
            cached = self._fast
            if cached is None or cached[0] is not pinned:
                try:
                    fast: FastModels | None = FastModels(pinned.models)
                except FastPathUnsupported as exc:
                    log.warning("fast path off for %s: %s", pinned.versions, exc)
                    fast = None
                cached = self._fast = (pinned, fast)
        return cached[1]

    def typical_amounts(self) -> dict[str, float]:
        """policy_id → typical amount, from the book of policies (re-read when the file changes)."""
        book = self.policies()
        cached = self._typical
        if cached is None or cached[0] != id(book):
            cached = self._typical = (id(book), dict(zip(book["policy_id"].astype(str),
                                                         book["typical_amount"].astype(float).tolist())))
        return cached[1]

    def document_texts(self, claim: ClaimIn) -> list[str]:
        """The texts of the claim's readable documents (as `_documents`): those sent inline, else those of
        its `document_refs` the store holds now in the claim's namespace."""
        if claim.documents is not None:
            return [d.text for d in claim.documents]
        texts = []
        for ref in claim.document_refs:
            text = self.documents.read_for_claim(claim.claim_id, ref)
            if text is not None:
                texts.append(text)
        return texts

    def policies(self) -> pd.DataFrame:
        """The book of policies (re-read when the file changes)."""
        path: Path = self.settings.policies_path
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise HTTPException(503, f"reference data {path} is missing: run `aios generate` first") from exc
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._policies
        if cached is None or cached[0] != stamp:
            cached = (stamp, pd.read_parquet(path, columns=["policy_id", "typical_amount"]))
            self._policies = cached
        return cached[1]

    def _documents(self, claims: list[ClaimIn]) -> pd.DataFrame:
        rows = []
        for c in claims:
            if c.documents is None:
                for ref in c.document_refs:
                    text = self.documents.read_for_claim(c.claim_id, ref)
                    if text is not None:
                        rows.append((c.claim_id, ref, text))
            else:
                for d in c.documents:
                    rows.append((c.claim_id, d.doc_ref, d.text))
        return pd.DataFrame(rows, columns=["claim_id", "doc_ref", "text"])

    def _keep_documents(self, claims: list[ClaimIn]) -> None:
        """Inline documents into each claim's own namespace (kept for reviewers; never another claim's)."""
        for c in claims:
            for d in c.documents or ():
                self.documents.write_for_claim(c.claim_id, d.doc_ref, d.text)

    def _refusals(self, claim_ids: list[str], client_ids: dict[str, str]) -> dict[str, str]:
        """claim id → why it cannot be decided now: decided by a batch, under open review, another client's."""
        with self.engine.connect() as conn:
            stored = conn.execute(sa.select(decisions_table.c.claim_id, decisions_table.c.partition).where(
                decisions_table.c.claim_id.in_(claim_ids))).all()
        out = {c: BATCH_DECIDED for c, p in stored if not str(p).startswith(API_PARTITION_PREFIX)}
        for c in open_review_claims(self.engine, [c for c, p in stored if c not in out]):
            out[c] = UNDER_REVIEW
        for c, owner in claim_owners(self.engine, claim_ids).items():
            if c not in out and owner != client_ids.get(c):
                out[c] = OTHER_OWNER
        return out

    def submit(self, claims: list[ClaimIn], request_id: str, client: Client) -> Future:
        """Check the request and queue its claims for `client`; the future gets their decision bodies (or the
        HTTP error)."""
        ids = [c.claim_id for c in claims]
        seen: set[str] = set()
        for i, claim_id in enumerate(ids):
            if claim_id in seen:
                raise RequestValidationError([{"loc": ("body", _BATCH, i, "claim_id"),
                                               "msg": f"duplicate claim_id {claim_id!r} in the batch",
                                               "type": "value_error"}])
            seen.add(claim_id)
        if not self.pins.ready:
            raise HTTPException(503, f"no model pinned yet: {self.pins.last_error or 'loading'}")
        return self.batcher.submit_future(claims, frozenset(ids), {"request_id": request_id, "client": client,
                                                                   "started_ns": time.time_ns()})

    def _admit(self, jobs: Sequence[Job[ClaimIn, list[dict[str, Any]]]]) -> tuple[list[Any], list[int]]:
        """(results, live): a job with a claim that cannot be decided now (decided by a batch, under review,
        another client's, received by another ingress) gets its 409 in `results`; the others are `live`."""
        owners = {c.claim_id: job.meta["client"].client_id for job in jobs for c in job.items}
        taken = self._refusals(list(owners), owners)
        results: list[Any] = [None] * len(jobs)
        live = []
        for k, job in enumerate(jobs):
            refused = {c.claim_id: taken[c.claim_id] for c in job.items if c.claim_id in taken}
            if refused:
                results[k] = AlreadyDecided(refused)
            else:
                live.append(k)
        return results, self._register(jobs, live, results)

    def _decide_jobs(self, jobs: Sequence[Job[ClaimIn, list[dict[str, Any]]]]) -> list[Any]:
        """One decision call and one round of writes for all the jobs' claims; results split back per job."""
        t0 = time.perf_counter()
        try:
            pinned = self.pins.current()  # one pinned set for the whole batch
        except NoModelPinned as exc:
            raise HTTPException(503, f"no model pinned yet: {exc}") from exc
        results, live = self._admit(jobs)
        claims = [c for k in live for c in jobs[k].items]
        if not claims:
            return results
        ids = [c.claim_id for c in claims]
        features = build_features(claims_frame(claims), self._documents(claims), self.policies())
        now = datetime.now(timezone.utc)
        partition = f"{API_PARTITION_PREFIX}{now:%Y-%m-%d}"
        decided_at = now.isoformat()
        own_claims(self.engine, {c.claim_id: jobs[k].meta["client"].client_id for k in live for c in jobs[k].items})
        self._keep_documents(claims)
        # every ledger row attributed to the client that asked for the decision
        actor_of = {c.claim_id: jobs[k].meta["client"].actor for k in live for c in jobs[k].items}
        try:
            decisions, _ = decide_and_record(self.engine, features, pinned.models, [c.currency for c in claims],
                                             partition, ACTOR, decided_at=decided_at, actor_of=actor_of)
        except RecordFailed as exc:
            # A failed write fails the whole batch as it is: retrying job by job (what the batcher does
            # with an exception raised here) would append the ledger rows of the batch a second time.
            self._unregister(ids)
            return [exc if r is None else r for r in results]
        routes = dict(zip(decisions["claim_id"], decisions["route"]))
        for k in live:
            job = jobs[k]
            record_claim_spans("service.api.decide", [c.claim_id for c in job.items], int(job.meta["started_ns"]),
                               {"aios.partition": partition, "aios.request_id": str(job.meta["request_id"]),
                                "aios.actor": job.meta["client"].actor}, {c.claim_id: {"aios.route": routes[c.claim_id]} for c in job.items})
        statuses = self._review_statuses(ids) if needs_review(decisions) else {}
        out = [decision_dict({**r, "partition": partition, "decided_at": decided_at}, statuses.get(r["claim_id"]))
               for r in decisions.to_dict("records")]
        i = 0
        for k in live:
            n = len(jobs[k].items)
            results[k] = out[i:i + n]
            i += n
        if self.metrics is not None:
            self.metrics.observe_decisions(decisions["route"], decisions["p_fraud"])
            self.metrics.batch_claims.observe(len(claims))
            self.metrics.batch_seconds.observe(time.perf_counter() - t0)
        return results

    def _decide_jobs_fast(self, jobs: Sequence[Job[ClaimIn, list[dict[str, Any]]]]) -> list[Any]:
        """The fast path of `_decide_jobs` (same refusals, ownership, documents and actors): each claim by
        `decide_one`, then the decisions of all the jobs kept in one transaction (`record_group`)."""
        t0 = time.perf_counter()
        try:
            pinned = self.pins.current()  # one pinned set for the whole batch
        except NoModelPinned as exc:
            raise HTTPException(503, f"no model pinned yet: {exc}") from exc
        fast = self.fast_models(pinned)
        if fast is None:
            return self._decide_jobs(jobs)
        results, live = self._admit(jobs)
        claims = [c for k in live for c in jobs[k].items]
        if not claims:
            return results
        typical = self.typical_amounts()
        rows, snapshots = [], []
        for c in claims:
            features = claim_features(vars(c), self.document_texts(c), typical.get(c.policy_id))
            row = decide_one(c.claim_id, features, fast)
            row["currency"] = c.currency
            rows.append(row)
            snapshots.append(snapshot_record(c.claim_id, features))
        now = datetime.now(timezone.utc)
        partition = f"{API_PARTITION_PREFIX}{now:%Y-%m-%d}"
        decided_at = now.isoformat()
        own_claims(self.engine, {c.claim_id: jobs[k].meta["client"].client_id for k in live for c in jobs[k].items})
        self._keep_documents(claims)
        # every ledger row attributed to the client that asked for the decision
        actor_of = {c.claim_id: jobs[k].meta["client"].actor for k in live for c in jobs[k].items}
        try:
            statuses = record_group(self.engine, partition, rows, snapshots, pinned.models.policy, ACTOR, decided_at,
                                    actor_of=actor_of)
        except RecordFailed as exc:
            self._unregister([c.claim_id for c in claims])
            return [exc if r is None else r for r in results]
        out = [decision_dict({**r, "partition": partition, "decided_at": decided_at}, statuses.get(r["claim_id"]))
               for r in rows]
        i = 0
        for k in live:
            job = jobs[k]
            n = len(job.items)
            results[k] = out[i:i + n]
            record_claim_spans("service.api.decide", [c.claim_id for c in job.items], int(job.meta["started_ns"]),
                               {"aios.partition": partition, "aios.request_id": str(job.meta["request_id"]),
                                "aios.actor": job.meta["client"].actor},
                               {d["claim_id"]: {"aios.route": d["route"]} for d in out[i:i + n]})
            i += n
        if self.metrics is not None:
            self.metrics.observe_decisions([r["route"] for r in rows], [r["p_fraud"] for r in rows])
            self.metrics.batch_claims.observe(len(claims))
            self.metrics.batch_seconds.observe(time.perf_counter() - t0)
        return results

    def _register(self, jobs: Sequence[Job[ClaimIn, list[dict[str, Any]]]], live: list[int],
                  results: list[Any]) -> list[int]:
        """Register the live jobs' claims under "api" (one identity per claim id across ingress paths); a job
        with a claim another ingress delivered first is refused (409) and its new registrations withdrawn."""
        from connectors.landing import register_claims

        partition = f"{API_PARTITION_PREFIX}{datetime.now(timezone.utc):%Y-%m-%d}"
        claims = [(Claim.model_validate(c.model_dump(exclude={"documents"})), partition)
                  for k in live for c in jobs[k].items]
        reg = register_claims(self.engine, "api", claims)
        kept = []
        for k in live:
            ids = [c.claim_id for c in jobs[k].items]
            reasons = {i: reg.conflicts.get(i, "already received with the same content") for i in ids
                       if i not in reg.owned}
            if reasons:
                results[k] = AlreadyReceived(reasons)
                self._unregister([i for i in ids if i in reg.owned])
            else:
                kept.append(k)
        return kept

    def _unregister(self, claim_ids: list[str]) -> None:
        """Withdraw the API's identities of claims it did not decide (refused, or the write failed)."""
        from connectors.landing import claim_identities

        if claim_ids:
            with self.engine.begin() as conn:
                conn.execute(claim_identities.delete().where(claim_identities.c.claim_id.in_(claim_ids)
                                                             & (claim_identities.c.source == "api")))

    def _review_statuses(self, claim_ids: list[str]) -> dict[str, str]:
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(review_cases.c.claim_id, review_cases.c.status).where(
                review_cases.c.claim_id.in_(claim_ids))).all())

    def stored(self, claim_id: str, client: Client | None = None) -> dict[str, Any] | None:
        """The stored decision of a claim (from a batch or from the API) as a decision body, or None; with a
        `client`, None also for a claim another client submitted."""
        if client is not None:
            owner = claim_owners(self.engine, [claim_id]).get(claim_id)
            if owner is not None and owner != client.client_id:
                return None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(decisions_table).where(decisions_table.c.claim_id == claim_id)).mappings().first()
        if row is None:
            return None
        return decision_dict(dict(row), self._review_statuses([claim_id]).get(claim_id))


# -------------------------------------------------------------------------------------------------
# routes

router = APIRouter(prefix="/v1", tags=["decisions"])
_ERRORS = {422: {"model": ValidationErrorOut, "description": "A field is missing or wrong; each entry names it."},
           401: {"description": "No valid API key."}, 403: {"description": "The client lacks the scope."},
           413: {"description": "The request body is too large."},
           429: {"description": "The client's rate limit is reached (Retry-After)."},
           409: {"description": "A claim was decided by a batch run, is under open review, or is another "
                                "client's; nothing was written."},
           503: {"description": "No model pinned yet (nothing trained) or reference data missing."}}


def _service(request: Request) -> DecisionService:
    return request.app.state.decision_service


@router.post("/decisions", response_model=DecisionsOut, responses=_ERRORS,
             summary="Decide one claim or a batch of up to 100")
async def post_decisions(request: Request,
                         payload: Annotated[DecisionRequest, Body(description="A claim, or a list of 1 to 100 claims.")],
                         client: Annotated[Client, Depends(require_scope("decisions:write"))],
                         x_request_id: Annotated[str | None, Header(max_length=64, pattern=ID_PATTERN)] = None
                         ) -> JSONResponse:
    """Decide the claims with the pinned models and store each decision; the same function as the batch path.

    Every decision is stored, snapshotted and in the audit ledger before the response. Documents named in
    `document_refs` that the document store does not hold yet count as unread (their signals unavailable);
    submit the claim again when they land to have it re-decided.
    """
    claims = payload if isinstance(payload, list) else [payload]
    request_id = x_request_id or uuid.uuid4().hex
    # awaited, not run in the thread pool: the request holds no thread while its batch is decided
    decisions = await asyncio.wrap_future(_service(request).submit(claims, request_id, client))
    return JSONResponse({"request_id": request_id, "decisions": decisions}, headers={"X-Request-Id": request_id})


@router.get("/claims/{claim_id}", response_model=Decision, responses={404: {"description": "No decision stored."}},
            summary="The stored decision of a claim")
def get_claim(request: Request,
              claim_id: Annotated[str, PathParam(max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)],
              client: Annotated[Client, Depends(require_scope("claims:read"))]) -> JSONResponse:
    """The decision stored for `claim_id`, from the API (this client's claims only) or from a batch run."""
    found = _service(request).stored(claim_id, client)
    if found is None:
        raise HTTPException(404, f"no decision stored for claim {claim_id!r}")
    return JSONResponse(found)


def install_decisions_api(app: FastAPI, settings: Settings, pins: ModelPins, metrics: ServiceMetrics | None,
                          max_batch: int = 512) -> None:
    """Mount the decision API on `app` with its service and the field-naming 422 handler."""
    app.state.decision_service = DecisionService(settings, pins, metrics, max_batch=max_batch)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.include_router(router)


__all__ = ["ACTOR", "ClaimIn", "DecisionService", "DecisionsOut", "install_decisions_api",
           "router"]
