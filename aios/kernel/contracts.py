"""Typed records at every boundary: claims, routes, decisions and their rationale.

A wrong field is an error that names the field and the reason.
"""

from __future__ import annotations

from datetime import date, datetime
import re
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator


class Route(str, Enum):
    """Where a decision sends a claim: auto-approve, human review, SIU referral or reject."""

    auto_approve = "auto_approve"
    human_review = "human_review"
    refer_siu = "refer_siu"
    reject = "reject"


ROUTES: tuple[str, ...] = tuple(r.value for r in Route)

# Every event the audit ledger accepts (connectors.stores.ledger refuses any other name).
LEDGER_EVENTS: tuple[str, ...] = (
    "ingest_batch", "validated", "quarantined",  # landing and validation (pipeline)
    "score", "posterior", "decision",  # each decision, batch or API
    "module_landed",  # an async decision module answered after its claim was decided: the claim decided again
    "policy_in_force", "model_alias_set", "model_pinned",  # what decided: policy set, model alias, service pin
    "review_action", "payout", "user_change",  # people and money
    "sign_in", "sign_in_failed", "sign_in_refused", "sign_out",  # who signed in to the review UI, from where
    "client_change",  # API clients added or revoked
)

# Identifiers (claim, policy, customer, document reference): the one charset and length, checked wherever an
# id enters (the claim contract, hence batch validation and the API). Letters, digits and `. _ : -`,
# starting with a letter or digit: safe as a file name, a URL path segment and an HTML attribute, with no
# path separators, control, bidirectional or markup characters. 80 is the width of the stores' id columns.
ID_MAX_LENGTH = 80
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
ID_RULE = f"1-{ID_MAX_LENGTH} letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
Id = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
MAX_DOCUMENTS_PER_CLAIM = 20
MAX_DESCRIPTION_CHARS = 10_000

CLAIM_TYPES = ("auto", "home", "travel", "health")
# A document reference is a plain name: letters, digits, dot, underscore, dash; no path, no NUL.
DOC_REF_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CHANNELS = ("web", "app", "phone", "agent")
CURRENCIES = ("EUR", "USD", "GBP", "CHF")


class Claim(BaseModel):
    """A claim as submitted. Structural rules (types, presence, dates) live here;
    business rules (ranges, allowed values) live in the Great Expectations suite."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    claim_id: Id
    policy_id: Id
    customer_id: Id
    submitted_at: datetime
    incident_date: date
    claim_type: str
    amount: float
    currency: str
    channel: str
    customer_tenure_days: int
    prior_claims: int
    description: str = Field(default="", max_length=MAX_DESCRIPTION_CHARS)
    document_refs: list[Id] = Field(default_factory=list, max_length=MAX_DOCUMENTS_PER_CLAIM)

    @field_validator("document_refs", mode="before")
    @classmethod
    def _split_refs(cls, v: Any) -> Any:
        if v is None or (isinstance(v, float) and v != v):
            return []
        if isinstance(v, str):
            return [r for r in v.split(";") if r]
        return v

    @field_validator("document_refs")
    @classmethod
    def _plain_refs(cls, refs: list[str]) -> list[str]:
        for ref in refs:
            if not DOC_REF_PATTERN.match(ref):
                raise ValueError(f"{ref[:80]!r} is not a plain document name (letters, digits, '.', '_', '-'; "
                                 "at most 128 characters)")
        return refs

    @field_validator("description", mode="before")
    @classmethod
    def _blank_description(cls, v: Any) -> Any:
        if v is None or (isinstance(v, float) and v != v):
            return ""
        return v


RATIONALE_KINDS = ("score", "feature", "evidence", "module")
# Module states that carry no evidence (models.modules.contract.SILENT_STATES; the kernel imports nothing above it).
SILENT_MODULE_STATES = ("unavailable", "not_applicable", "pending")


class RationaleItem(BaseModel):
    """One reason of a decision: the classifier's score (with its band), a feature's contribution to that
    score, a Bayesian-network signal's contribution to p_fraud, or a decision module's state (with its
    version) and how far it moved p_fraud; `text` is the same said in words."""

    kind: Literal["score", "feature", "evidence", "module"]
    name: str
    value: str | float | int | bool | None = Field(description="The score, the feature's value (None when "
                                                               "missing) or the signal's observed state.")
    effect: float | None = Field(default=None, description="How far it moved the score (feature) or p_fraud "
                                                          "(evidence); None for the score itself.")
    band: str | None = Field(default=None, description="The score's band (kind `score` only).")
    version: str | None = Field(default=None, description="The module's version (kind `module` only).")
    text: str


def format_value(value: Any) -> str:
    """A rationale value as people read it: 3 significant digits for numbers, `missing` for None/NaN."""
    if value is None or (isinstance(value, float) and value != value):
        return "missing"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def rationale_text(kind: str, name: str, value: Any, effect: float | None = None, band: str | None = None,
                   version: str | None = None) -> str:
    """The one wording of a rationale item (the API's, the ledger's and the review UI's `text`)."""
    if kind == "score":
        return f"classifier score {float(value):.3f} ({band} band)"
    if kind == "feature":
        return f"{name}={format_value(value)} moved the score {float(effect or 0.0):+.3f}"
    if kind == "evidence":
        return f"{name}={format_value(value)} moved p_fraud {float(effect or 0.0):+.3f}"
    if kind == "module":
        said = (f"could not say ({value}; marginalised)" if value in SILENT_MODULE_STATES
                else f"said {format_value(value)}" + ("" if effect is None else f", moved p_fraud {float(effect):+.3f}"))
        return f"module {name} {version or '?'} {said}"
    raise ValueError(f"rationale kind must be one of {RATIONALE_KINDS}; got {kind!r}")


def rationale_item(kind: str, name: str, value: Any, effect: float | None = None,
                   band: str | None = None, version: str | None = None) -> dict[str, Any]:
    """A rationale item as stored with the decision (the fields of `RationaleItem`, `text` derived here)."""
    if isinstance(value, float) and value != value:
        value = None
    item: dict[str, Any] = {"kind": kind, "name": name, "value": value, "effect": effect,
                            "text": rationale_text(kind, name, value, effect, band, version)}
    if band is not None:
        item["band"] = band
    if version is not None:
        item["version"] = version
    return item


class Decision(BaseModel):
    """The decision contract for one claim, as stored and served, from the batch or the sync path alike."""

    claim_id: str
    route: Route
    p_fraud: float
    p_fraud_interval: tuple[float, float]
    score: float
    amount: float
    currency: str
    rationale: list[RationaleItem]
    uncertainty_drivers: list[dict[str, Any]]
    versions: dict[str, Any] = Field(description="classifier, bayes_net, policy and features versions, and "
                                                 "`modules`: {name: {version, state}} for every decision module.")
    snapshot_hash: str
    partition: str
    decided_at: str
    trace_id: str = Field(description="The claim's trace id (OpenTelemetry and audit ledger).")
    review_status: str | None = None


def is_id(value: Any) -> bool:
    """Whether `value` is a well-formed identifier (ID_PATTERN, at most ID_MAX_LENGTH characters)."""
    import re

    return isinstance(value, str) and len(value) <= ID_MAX_LENGTH and re.fullmatch(ID_PATTERN, value) is not None


def error_reason(e: Any) -> str:
    """The reason of one pydantic error, with the id rule spelled out instead of the regular expression."""
    if e.get("type") == "string_pattern_mismatch" and (e.get("ctx") or {}).get("pattern") == ID_PATTERN:
        return f"must be an identifier: {ID_RULE}"
    return str(e.get("msg", ""))


def describe_validation_error(err: ValidationError) -> list[str]:
    """Human-readable reasons, one per failing field: `field: reason`."""
    out = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "<row>"
        out.append(f"{field}: {error_reason(e)}")
    return out


def claim_content_hash(claim: Claim) -> str:
    """sha256 of the claim's validated fields (pydantic's JSON, fields in declaration order): equal for
    the same claim from any ingress (CSV strings and JSON values validate to the same Claim), different
    when any field differs."""
    import hashlib

    return hashlib.sha256(claim.model_dump_json().encode()).hexdigest()
