"""Fields read from a claim's documents (text layer): the invoice total and how many documents are readable."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

_TOTAL = re.compile(r"^Total:\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Z]{3})\s*$", re.MULTILINE)


def extract_invoice_total(text: str) -> tuple[float | None, str | None]:
    """The invoice total and currency stated in a document, or (None, None) when it states none."""
    m = _TOTAL.search(text or "")
    if not m:
        return None, None
    return float(m.group(1)), m.group(2)


def document_fields(documents: pd.DataFrame) -> pd.DataFrame:
    """Per claim: readable document count and the stated invoice total (NaN when no invoice was read).

    `documents` has columns claim_id, doc_ref, text (one row per document that could be read).
    """
    if documents.empty:
        return pd.DataFrame(columns=["docs_readable", "invoice_total"], index=pd.Index([], name="claim_id"))
    totals = [extract_invoice_total(t)[0] for t in documents["text"]]
    frame = pd.DataFrame({"claim_id": documents["claim_id"].to_numpy(),
                          "invoice_total": np.array([np.nan if t is None else t for t in totals], dtype=float)})
    grouped = frame.groupby("claim_id")
    return pd.DataFrame({"docs_readable": grouped.size(), "invoice_total": grouped["invoice_total"].max()})
