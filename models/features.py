"""Claim features: one row per claim, from the validated claim, its documents and the policy's history."""

from __future__ import annotations

import hashlib
import inspect
import sys
from functools import lru_cache

import numpy as np
import pandas as pd

from models import documents as _documents
from models import triage as _triage
from models.documents import document_fields
from models.triage import triage

FEATURE_COLUMNS = [
    "amount_log", "amount_ratio", "report_delay_days", "prior_claims", "customer_tenure_days",
    "n_documents", "docs_readable", "doc_amount_mismatch", "text_flags", "claim_type", "channel",
]
CATEGORICAL = ["claim_type", "channel"]
# Relative gap between invoice total and claimed amount that counts as a mismatch.
MISMATCH_TOLERANCE = 0.05


@lru_cache(maxsize=1)
def feature_version() -> str:
    """Version of the feature code: a hash of the source of the modules that compute features."""
    src = "".join(inspect.getsource(m) for m in (sys.modules[__name__], _documents, _triage))
    return "feat-" + hashlib.sha256(src.encode()).hexdigest()[:12]


def build_features(claims: pd.DataFrame, documents: pd.DataFrame, policies: pd.DataFrame) -> pd.DataFrame:
    """Features indexed by claim_id: `FEATURE_COLUMNS` (numeric float64, categorical str) and the raw `amount`.

    `claims` are validated claims; `documents` the readable documents (claim_id, doc_ref, text);
    `policies` the book (policy_id, typical_amount). Unknown policies give NaN `amount_ratio`;
    claims without a readable invoice give NaN `doc_amount_mismatch` (unobserved, not "no").
    """
    c = claims.set_index("claim_id")
    submitted = pd.to_datetime(c["submitted_at"], utc=False, format="mixed")
    if getattr(submitted.dt, "tz", None) is not None:
        submitted = submitted.dt.tz_localize(None)
    incident = pd.to_datetime(c["incident_date"], format="mixed")
    typical = c["policy_id"].map(policies.set_index("policy_id")["typical_amount"])
    docs = document_fields(documents).reindex(c.index)
    amount = c["amount"].astype(float)
    refs = c["document_refs"].apply(lambda r: len(r) if isinstance(r, (list, tuple, np.ndarray))
                                    else len([x for x in str(r or "").split(";") if x]))
    invoice = docs["invoice_total"].astype(float)
    mismatch = np.where(invoice.isna(), np.nan, (np.abs(invoice - amount) / amount > MISMATCH_TOLERANCE).astype(float))
    text = triage(c["description"])
    out = pd.DataFrame({
        "amount_log": np.log1p(amount),
        "amount_ratio": amount / typical.astype(float),
        "report_delay_days": (submitted.dt.normalize() - incident).dt.days.astype(float),
        "prior_claims": c["prior_claims"].astype(float),
        "customer_tenure_days": c["customer_tenure_days"].astype(float),
        "n_documents": refs.astype(float),
        "docs_readable": pd.to_numeric(docs["docs_readable"], errors="coerce").astype(float).fillna(0.0),
        "doc_amount_mismatch": mismatch,
        "text_flags": text["text_flags"].astype(float),
        "claim_type": c["claim_type"].astype(str),
        "channel": c["channel"].astype(str),
        "amount": amount,
    }, index=c.index)
    out.index.name = "claim_id"
    return out[[*FEATURE_COLUMNS, "amount"]]
