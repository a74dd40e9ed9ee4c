"""What the review UI works with: the stores' engine, the policy set, the audit ledger, the claim sources."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from aios.kernel.contracts import SILENT_MODULE_STATES, format_value
from aios.kernel.db import ensure_tables, get_engine
from aios.usecases.review_workflow import leaning_threshold
from connectors.stores.reviews import ensure_review_tables
from aios.kernel.settings import Settings
from connectors.documents import DocumentStore
from connectors.inbox import SUFFIXES, UnreadableFile, read_claims_file
from connectors.stores.audit import ledger, record_user_change
from connectors.stores.ledger import AuditLedger
from governance.policy import PolicySet, policy_set_in_force

CLAIM_FIELDS = ("claim_id", "policy_id", "customer_id", "submitted_at", "incident_date", "claim_type", "amount",
                "currency", "channel", "customer_tenure_days", "prior_claims", "description", "document_refs")


@dataclass
class ReviewContext:
    """The review UI's dependencies, built once when the UI is installed."""

    settings: Settings
    engine: sa.Engine
    policy: PolicySet
    ledger: AuditLedger
    documents: DocumentStore
    threshold: float
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> ReviewContext:
        """Connect to the settings' stores (creating missing tables) and load the policy set in force."""
        engine = get_engine(settings.db_url)
        ensure_tables(engine)
        ensure_review_tables(engine)
        policy = policy_set_in_force()  # the same object the decision service pinned
        return cls(settings=settings, engine=engine, policy=policy, ledger=ledger(engine),
                   documents=DocumentStore(settings.documents_dir), threshold=leaning_threshold(policy))

    def audit_user_change(self, actor: str, user: str, change: dict[str, Any]) -> None:
        """Record an account change in the audit ledger, with the policy version in force."""
        record_user_change(self.engine, actor, user, change, self.policy.label)

    def find_claim(self, partition: str, claim_id: str) -> dict[str, Any] | None:
        """The claim as submitted (inbox file in landing/<partition>/ or bus landing store), or None."""
        folder = self.settings.landing_dir / partition
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix in SUFFIXES:
                    hit = _claims_in_file(str(path), path.stat().st_mtime_ns).get(claim_id)
                    if hit is not None:
                        return dict(hit)
        return self._bus_claim(claim_id)

    def _bus_claim(self, claim_id: str) -> dict[str, Any] | None:
        try:
            from connectors.landing import landed_claims
        except ImportError:  # no bus landing store in this build
            return None
        if not sa.inspect(self.engine).has_table(landed_claims.name):
            return None
        with self.engine.connect() as conn:
            payload = conn.execute(sa.select(landed_claims.c.payload).where(landed_claims.c.claim_id == claim_id)
                                   .order_by(landed_claims.c.id).limit(1)).scalar()
        if payload is None:
            return None
        rec = json.loads(payload)
        refs = rec.get("document_refs")
        if isinstance(refs, list):
            rec["document_refs"] = ";".join(refs)
        return {k: rec.get(k) for k in CLAIM_FIELDS if k in rec}

    def documents_of(self, claim: dict[str, Any] | None, role: str) -> list[dict[str, Any]]:
        """The claim's documents (text redacted for roles that may not see personal data); missing ones say so."""
        if not claim:
            return []
        refs = [r for r in str(claim.get("document_refs") or "").split(";") if r]
        scrub = not self.policy.sees_all_pii(role)
        out = []
        for ref in refs:
            try:
                text = self.documents.read(ref)
            except ValueError:
                text = None
            if text is not None and scrub:
                text = self.policy.redact_text(text)
            out.append({"ref": ref, "text": text})
        return out


@lru_cache(maxsize=64)
def _claims_in_file(path: str, _mtime_ns: int) -> dict[str, dict[str, Any]]:
    try:
        frame = read_claims_file(Path(path))
    except UnreadableFile:
        return {}
    if "claim_id" not in frame.columns:
        return {}
    out = {}
    for rec in frame.to_dict("records"):
        cid = rec.get("claim_id")
        if isinstance(cid, str) and cid and cid not in out:
            out[cid] = {k: rec.get(k) for k in CLAIM_FIELDS if k in rec}
    return out


def rationale_view(text: str | None) -> dict[str, Any]:
    """The decision's structured rationale (`RationaleItem`s) grouped for display: the score's words, the top
    feature contributions to the score, the network evidence with how far each moved p_fraud, and the decision
    modules: which spoke (their state and how far each moved p_fraud) and which could not say.

    An item that is not structured (a decision stored before the rationale was) is shown as its words.
    """
    try:
        items = json.loads(text) if text else []
    except ValueError:
        items = [str(text)]
    out: dict[str, Any] = {"summary": [], "features": [], "evidence": [], "modules": []}
    for item in items if isinstance(items, list) else [items]:
        if not isinstance(item, dict):
            out["summary"].append(str(item))
            continue
        kind = item.get("kind")
        if kind == "module":
            state, effect = item.get("value"), item.get("effect")
            out["modules"].append({"name": str(item.get("name")), "version": str(item.get("version") or ""),
                                   "state": format_value(state),
                                   "spoke": state not in SILENT_MODULE_STATES and state is not None,
                                   "delta": float(effect) if isinstance(effect, (int, float)) else None})
        elif kind in ("feature", "evidence") and isinstance(item.get("effect"), (int, float)):
            out["features" if kind == "feature" else "evidence"].append(
                {"name": str(item.get("name")), "value": format_value(item.get("value")),
                 "delta": float(item["effect"])})
        else:
            out["summary"].append(str(item.get("text", "")))
    return out


def parse_drivers(text: str | None) -> list[dict[str, Any]]:
    """The uncertainty drivers: unobserved signals and the expected change in p_fraud were each observed."""
    try:
        items = json.loads(text) if text else []
    except ValueError:
        return []
    out = []
    for d in items if isinstance(items, list) else []:
        if isinstance(d, dict) and "signal" in d:
            try:
                change = float(d.get("expected_change", 0.0))
            except (TypeError, ValueError):
                change = 0.0
            out.append({"signal": str(d["signal"]), "expected_change": change})
    return out
