"""Document verification signals per claim, from the fields read off its documents.

Each signal has named states (always a way to say `unavailable`; `not_applicable` where the check
does not apply) and the evidence that produced its state:

- ``doc_total``: the bill's total against the claimed amount (`TOTAL_TOLERANCE` relative);
- ``doc_date``: the bill's date against the incident date;
- ``doc_items``: the bill's total against the sum of its line items (an inflated total shows here);
- ``doc_duplicate_number``: the bill's number already on another claim's document (this batch or history);
- ``doc_duplicate_image``: a scan within `PHASH_MAX_DISTANCE` bits of another claim's scan that also states
  the same number or total (a copied page copies its fields; pages of one form, e.g. two police reports
  of one station, hash close together without being copies);
- ``doc_missing``: a referenced document not in the store, or no bill among those read;
- ``doc_ocr_quality``: how sure the reading is (unreadable documents, low field confidence).

The bill is the first readable invoice or medical bill of the claim. Pure: no files, no engine.
"""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd

from models.page_hash import hash_distance

SIGNAL_STATES: dict[str, tuple[str, ...]] = {
    "doc_total": ("match", "total_below_claim", "total_above_claim", "currency_mismatch", "unavailable"),
    "doc_date": ("consistent", "before_incident", "long_after_incident", "unavailable"),
    "doc_items": ("consistent", "total_above_items", "total_below_items", "unavailable"),
    "doc_duplicate_number": ("unique", "duplicate", "unavailable"),
    "doc_duplicate_image": ("unique", "near_duplicate", "not_applicable", "unavailable"),
    "doc_missing": ("complete", "missing_referenced", "missing_bill"),
    "doc_ocr_quality": ("high", "low", "unreadable", "unavailable"),
}
BILL_TYPES = ("invoice", "medical_bill")
TOTAL_TOLERANCE = 0.05  # the same gap the classifier's doc_amount_mismatch feature uses
ITEMS_TOLERANCE = 0.01
LATE_DOCUMENT_DAYS = 90
# models.page_hash: re-scans of one page measured 2–16 bits apart; different pages ≥ 18 on ~4,500 pairs,
# but in a day of ~300 scans (45,000 pairs) pages of one form came closer than 16 bits.
PHASH_MAX_DISTANCE = 16
LOW_FIELD_CONF = 0.80
DOC_COLUMNS = ["claim_id", "doc_ref", "status", "reason", "doc_type", "issuer", "number", "date", "total",
               "currency", "iban", "items_sum", "mean_conf", "phash", "source", "doc_type_conf", "number_conf",
               "date_conf", "total_conf"]


def _refs(value) -> list[str]:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value if v]
    return [r for r in str(value or "").split(";") if r]


def _is_set(v) -> bool:
    return v is not None and not (isinstance(v, float) and np.isnan(v))


def document_signals(claims: pd.DataFrame, documents: pd.DataFrame,
                     reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per claim (index claim_id): each signal's state, plus `evidence` (JSON: signal → facts).

    `claims`: claim_id, amount, currency, incident_date, document_refs. `documents`: one row per referenced
    document (columns `DOC_COLUMNS`; status "read", "unreadable" or "missing"). `reference`: documents of
    earlier claims (claim_id, number, phash) for the duplicate checks; None means this batch only.
    """
    docs = documents if not documents.empty else pd.DataFrame(columns=DOC_COLUMNS)
    cols = ["claim_id", "number", "phash", "total"]
    pool = pd.concat([docs[cols], reference.reindex(columns=cols) if reference is not None else None],
                     ignore_index=True)
    numbers: dict[str, set[str]] = {}
    for cid, num in zip(pool["claim_id"], pool["number"]):
        if _is_set(num):
            numbers.setdefault(str(num), set()).add(str(cid))
    hashes = [(str(cid), str(h), num if _is_set(num) else None, tot if _is_set(tot) else None)
              for cid, h, num, tot in zip(pool["claim_id"], pool["phash"], pool["number"], pool["total"]) if _is_set(h)]
    by_claim = {cid: g for cid, g in docs.groupby("claim_id")}
    rows = []
    for c in claims.itertuples(index=False):
        g = by_claim.get(c.claim_id, pd.DataFrame(columns=DOC_COLUMNS))
        states, evidence = {}, {}
        read = g[g["status"] == "read"]
        bills = read[read["doc_type"].isin(BILL_TYPES)]
        bill = bills.iloc[0] if len(bills) else None
        amount = float(c.amount)
        incident = date.fromisoformat(str(c.incident_date)[:10])

        # total vs claimed amount
        if bill is None or not _is_set(bill["total"]):
            states["doc_total"], evidence["doc_total"] = "unavailable", {"reason": "no bill total read"}
        else:
            total = float(bill["total"])
            ev = {"doc_ref": bill["doc_ref"], "total": total, "currency": bill["currency"], "claimed": amount,
                  "claim_currency": c.currency}
            if _is_set(bill["currency"]) and bill["currency"] != c.currency:
                states["doc_total"] = "currency_mismatch"
            elif abs(total - amount) / amount <= TOTAL_TOLERANCE:
                states["doc_total"] = "match"
            else:
                states["doc_total"] = "total_below_claim" if total < amount else "total_above_claim"
            evidence["doc_total"] = ev

        # date vs incident
        if bill is None or not _is_set(bill["date"]):
            states["doc_date"], evidence["doc_date"] = "unavailable", {"reason": "no bill date read"}
        else:
            days = (date.fromisoformat(str(bill["date"])) - incident).days
            states["doc_date"] = ("before_incident" if days < 0 else "long_after_incident"
                                  if days > LATE_DOCUMENT_DAYS else "consistent")
            evidence["doc_date"] = {"doc_ref": bill["doc_ref"], "date": bill["date"],
                                    "incident_date": incident.isoformat(), "days_after_incident": days}

        # total vs line items
        if bill is None or not _is_set(bill["total"]) or not _is_set(bill["items_sum"]):
            states["doc_items"], evidence["doc_items"] = "unavailable", {"reason": "no bill total or line items"}
        else:
            total, items = float(bill["total"]), float(bill["items_sum"])
            gap = total - items
            states["doc_items"] = ("consistent" if abs(gap) <= ITEMS_TOLERANCE * max(total, 1.0) + 0.02
                                   else "total_above_items" if gap > 0 else "total_below_items")
            evidence["doc_items"] = {"doc_ref": bill["doc_ref"], "total": total, "items_sum": items,
                                     "gap": round(gap, 2)}

        # duplicate number across claims
        nums = [str(n) for n in read["number"] if _is_set(n)]
        if not nums:
            states["doc_duplicate_number"] = "unavailable"
            evidence["doc_duplicate_number"] = {"reason": "no document number read"}
        else:
            others = {n: sorted(numbers.get(n, set()) - {c.claim_id}) for n in nums}
            others = {n: o[:5] for n, o in others.items() if o}
            states["doc_duplicate_number"] = "duplicate" if others else "unique"
            evidence["doc_duplicate_number"] = {"numbers": nums, "also_on_claims": others}

        # near-duplicate scan across claims
        mine = [(str(h), r.number if _is_set(r.number) else None, r.total if _is_set(r.total) else None)
                for h, r in zip(g["phash"], g.itertuples(index=False)) if _is_set(h)]
        if len(g) and not mine:
            applicable = (g["status"] == "read").all() and (g["source"] == "text_layer").all()
            states["doc_duplicate_image"] = "not_applicable" if applicable else "unavailable"
            evidence["doc_duplicate_image"] = {"reason": "no scanned page" if applicable else "no page image"}
        elif not mine:
            states["doc_duplicate_image"], evidence["doc_duplicate_image"] = "unavailable", {"reason": "no documents"}
        else:
            near = {}
            for h, num, tot in mine:
                for cid, other, onum, otot in hashes:
                    if cid == c.claim_id:
                        continue
                    bits = hash_distance(h, other)
                    same_field = (num is not None and num == onum) or (tot is not None and tot == otot)
                    if bits <= PHASH_MAX_DISTANCE and same_field:
                        near[cid] = min(bits, near.get(cid, bits))
            states["doc_duplicate_image"] = "near_duplicate" if near else "unique"
            evidence["doc_duplicate_image"] = {
                "matches": [{"claim_id": cid, "bits": int(b)} for cid, b in sorted(near.items(), key=lambda t: t[1])[:5]],
                "max_bits_with_same_field": PHASH_MAX_DISTANCE}

        # missing documents
        refs = _refs(c.document_refs)
        missing = sorted(set(refs) - set(g.loc[g["status"] != "missing", "doc_ref"]))
        if missing:
            states["doc_missing"] = "missing_referenced"
        elif bill is None:
            states["doc_missing"] = "missing_bill"
        else:
            states["doc_missing"] = "complete"
        evidence["doc_missing"] = {"referenced": len(refs), "missing": missing,
                                   "bill": None if bill is None else bill["doc_ref"]}

        # reading quality
        present = g[g["status"] != "missing"]
        unreadable = present[present["status"] == "unreadable"]
        if present.empty:
            states["doc_ocr_quality"], evidence["doc_ocr_quality"] = "unavailable", {"reason": "no documents"}
        elif len(unreadable):
            states["doc_ocr_quality"] = "unreadable"
            evidence["doc_ocr_quality"] = {"unreadable": dict(zip(unreadable["doc_ref"], unreadable["reason"]))}
        else:
            conf_cols = [k for k in ("doc_type_conf", "number_conf", "date_conf", "total_conf") if k in read]
            confs = pd.to_numeric(read[conf_cols].stack(), errors="coerce").dropna() if conf_cols else pd.Series()
            lowest = float(confs.min()) if len(confs) else float(read["mean_conf"].min())
            states["doc_ocr_quality"] = "low" if lowest < LOW_FIELD_CONF else "high"
            evidence["doc_ocr_quality"] = {"lowest_field_conf": round(lowest, 3),
                                           "mean_conf": round(float(read["mean_conf"].mean()), 3)}
        rows.append({"claim_id": c.claim_id, **states, "evidence": json.dumps(evidence, default=str, sort_keys=True)})
    out = pd.DataFrame(rows, columns=["claim_id", *SIGNAL_STATES, "evidence"]).set_index("claim_id")
    return out
