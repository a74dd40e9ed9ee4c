"""Typed records at every boundary: claims, decisions, quarantine records.

A wrong field is an error that names the field and the reason.
"""

from __future__ import annotations

from datetime import date, datetime
import re
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class Route(str, Enum):
    """Where a decision sends a claim: auto-approve, human review, SIU referral or reject."""

    auto_approve = "auto_approve"
    human_review = "human_review"
    refer_siu = "refer_siu"
    reject = "reject"


ROUTES: tuple[str, ...] = tuple(r.value for r in Route)

CLAIM_TYPES = ("auto", "home", "travel", "health")
# A document reference is a plain name: letters, digits, dot, underscore, dash; no path, no NUL.
DOC_REF_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CHANNELS = ("web", "app", "phone", "agent")
CURRENCIES = ("EUR", "USD", "GBP", "CHF")


class Claim(BaseModel):
    """A claim as submitted. Structural rules (types, presence, dates) live here;
    business rules (ranges, allowed values) live in the Great Expectations suite."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    claim_id: str = Field(min_length=1)
    policy_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    submitted_at: datetime
    incident_date: date
    claim_type: str
    amount: float
    currency: str
    channel: str
    customer_tenure_days: int
    prior_claims: int
    description: str = ""
    document_refs: list[str] = Field(default_factory=list)

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


class QuarantineRecord(BaseModel):
    """A row that failed validation, kept with every reason it failed."""

    claim_id: str | None
    partition: str
    source: str
    reasons: list[str]
    raw: dict[str, Any]


class Decision(BaseModel):
    """The decision contract (DESIGN.md): one per claim, from batch or sync path alike."""

    claim_id: str
    p_fraud: float = Field(ge=0.0, le=1.0)
    p_fraud_interval: tuple[float, float]
    route: Route
    rationale: list[str]
    uncertainty_drivers: list[dict[str, Any]]
    versions: dict[str, str]
    snapshot_hash: str


def describe_validation_error(err: ValidationError) -> list[str]:
    """Human-readable reasons, one per failing field: `field: reason`."""
    out = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "<row>"
        out.append(f"{field}: {e['msg']}")
    return out
