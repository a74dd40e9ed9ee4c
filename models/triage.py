"""Triage of the free-text description: suspicious-language markers and a coarse topic."""

from __future__ import annotations

import re

import pandas as pd

# Phrases investigators flag: cash payment, missing receipts, pressure, no witnesses, no invoice.
SUSPICIOUS_PATTERNS = {
    "cash": re.compile(r"\bcash\b", re.I),
    "receipt_lost": re.compile(r"\breceipts?\b.*\blost\b|\blost\b.*\breceipts?\b", re.I),
    "urgency": re.compile(r"\burgent(?:ly)?\b|\bimmediately\b|\basap\b", re.I),
    "no_witness": re.compile(r"\bno witness(?:es)?\b", re.I),
    "no_invoice": re.compile(r"\bwithout invoice\b|\bno invoice\b", re.I),
}


def triage(descriptions: pd.Series) -> pd.DataFrame:
    """Per description: one boolean column per suspicious marker, their count, and the text length."""
    text = descriptions.fillna("").astype(str)
    out = pd.DataFrame(index=descriptions.index)
    for name, pattern in SUSPICIOUS_PATTERNS.items():
        out[f"text_{name}"] = text.str.contains(pattern)
    out["text_flags"] = out.sum(axis=1).astype(int)
    out["text_length"] = text.str.len()
    return out
