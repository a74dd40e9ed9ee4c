"""Seeded synthetic claims with a known generative process, so ground truth is known.

Generative process (per claim):

1. A policy is drawn uniformly from the book. Each policy has a product (the claim
   type), a currency, a customer with a `customer_since` date, and a typical claim
   amount (lognormal around the product's mean): the policy's claim history.
2. The channel is drawn (web 45%, app 25%, phone 20%, agent 10%).
3. Fraud is latent: logit = -4.0 + 1.4·[tenure < 90 days] + 0.5·[web or app]
   + 0.4·[claim type is travel]; about 3–4% of claims are fraudulent.
4. Given fraud, the observable signals are noisy, none a giveaway:
   - amount = typical × lognormal(0.55 if fraud else 0, 0.6): inflated, overlapping;
   - report delay in days: honest geometric(mean 4); fraud 45% late (mean 20), else mean 5;
   - prior claims in the last 12 months: Poisson(1.2) fraud, Poisson(0.4) honest;
   - documents: 1 + Binomial(2, 0.35 fraud / 0.6 honest); 6% of documents are missing
     from the document store (so their evidence is unobserved);
   - the invoice in the documents states the claim amount, except for 35% of fraud
     (and 3% of honest, clerical errors) where it states a lower amount;
   - the description mentions cash / lost receipts / urgency with p=0.30 fraud, 0.06 honest.
5. The label `is_fraud` arrives 30–120 days after submission (`label_available_at`).

`inject_malformed` adds rows that break the claim contract in known ways, for quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from aios.kernel import contracts

# The allowed values come from the contract; the weights are in the contract's order.
PRODUCTS = dict(zip(contracts.CLAIM_TYPES, (3200.0, 5200.0, 900.0, 1600.0), strict=True))  # mean claim amount
CHANNELS = list(contracts.CHANNELS)
CHANNEL_P = [0.45, 0.25, 0.20, 0.10]  # web, app, phone, agent
CURRENCIES = list(contracts.CURRENCIES)
CURRENCY_P = [0.7, 0.12, 0.12, 0.06]  # EUR, USD, GBP, CHF

_HONEST_TEXT = {
    "auto": ["Rear-ended at a junction, bumper and tail light damaged.", "Windscreen cracked by a stone on the motorway.",
             "Scratched the side panel while parking in a garage.", "Collision with a deer on a country road."],
    "home": ["Water leak from the washing machine damaged the kitchen floor.", "Storm blew tiles off the roof.",
             "Burst pipe in the bathroom during frost.", "Power surge destroyed the fridge."],
    "travel": ["Flight cancelled, paid for a hotel night.", "Suitcase delayed three days, bought essentials.",
               "Fell ill abroad and saw a local doctor.", "Camera damaged on a boat trip."],
    "health": ["Physiotherapy sessions after a knee injury.", "Emergency dental treatment.",
               "Prescription glasses replaced.", "Outpatient surgery on the left hand."],
}
_SUSPICIOUS = ["Paid the repairer in cash.", "The receipt was lost.", "Need the payment urgently, please.",
               "There were no witnesses.", "Items were bought second hand without invoice."]


@dataclass(frozen=True)
class Book:
    """The insurer's book: policies with their customers and claim history."""

    policies: pd.DataFrame  # policy_id, customer_id, product, currency, customer_since, typical_amount


def make_book(n_policies: int = 20_000, seed: int = 7, as_of: date = date(2026, 11, 30)) -> Book:
    """A seeded book of policies; `customer_since` spreads customers from 15 years to 10 days before `as_of`."""
    rng = np.random.default_rng(seed)
    products = rng.choice(list(PRODUCTS), size=n_policies, p=[0.4, 0.3, 0.15, 0.15])
    base = np.array([PRODUCTS[p] for p in products])
    typical = np.round(base * rng.lognormal(0.0, 0.35, size=n_policies), 2)
    # 12% of customers joined within the last year: they are where tenure < 90 days comes from.
    tenure_years = np.where(rng.random(n_policies) < 0.12, rng.uniform(0.03, 1.0, n_policies),
                            rng.uniform(1.0, 15.0, n_policies))
    since = [as_of - timedelta(days=int(y * 365)) for y in tenure_years]
    policies = pd.DataFrame({
        "policy_id": [f"POL-{i:06d}" for i in range(n_policies)],
        "customer_id": [f"CUS-{i:06d}" for i in rng.permutation(n_policies)],
        "product": products,
        "currency": rng.choice(CURRENCIES, size=n_policies, p=CURRENCY_P),
        "customer_since": pd.to_datetime(since),
        "typical_amount": typical,
    })
    return Book(policies=policies)


def _claims_for_day(book: Book, day: date, n: int, rng: np.random.Generator, id_prefix: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    pol = book.policies.iloc[rng.integers(0, len(book.policies), size=n)].reset_index(drop=True)
    submitted = pd.Timestamp(day) + pd.to_timedelta(rng.integers(6 * 3600, 22 * 3600, size=n), unit="s")
    # Tenure at the time of the claim; policies whose customer joined after this day are re-based
    # to a fresh customer so tenure stays non-negative in history.
    tenure = (submitted.normalize() - pol["customer_since"]).dt.days.to_numpy()
    tenure = np.where(tenure < 0, rng.integers(5, 80, size=n), tenure)
    channel = rng.choice(CHANNELS, size=n, p=CHANNEL_P)
    logit = (-4.0 + 1.4 * (tenure < 90) + 0.5 * np.isin(channel, ["web", "app"])
             + 0.4 * (pol["product"].to_numpy() == "travel"))
    fraud = rng.random(n) < 1 / (1 + np.exp(-logit))
    amount = np.round(pol["typical_amount"].to_numpy() * rng.lognormal(np.where(fraud, 0.55, 0.0), 0.6), 2)
    late = fraud & (rng.random(n) < 0.45)
    delay = np.where(late, rng.geometric(1 / 20, size=n), rng.geometric(1 / np.where(fraud, 5, 4), size=n)) - 1
    incident = (submitted.normalize() - pd.to_timedelta(delay, unit="D")).date
    prior = rng.poisson(np.where(fraud, 1.2, 0.4))
    n_docs = 1 + rng.binomial(2, np.where(fraud, 0.35, 0.6))
    mismatch = rng.random(n) < np.where(fraud, 0.35, 0.03)
    suspicious = rng.random(n) < np.where(fraud, 0.30, 0.06)
    ids = [f"{id_prefix}{day:%Y%m%d}-{i:05d}" for i in range(n)]
    descriptions, refs, doc_rows = [], [], []
    for i in range(n):
        product = pol.at[i, "product"]
        text = _HONEST_TEXT[product][rng.integers(0, 4)]
        if suspicious[i]:
            text += " " + _SUSPICIOUS[rng.integers(0, len(_SUSPICIOUS))]
        descriptions.append(text)
        claim_refs = [f"DOC-{ids[i]}-{k}" for k in range(n_docs[i])]
        refs.append(";".join(claim_refs))
        stated = amount[i] / rng.uniform(1.3, 2.2) if mismatch[i] else amount[i]
        for k, ref in enumerate(claim_refs):
            if rng.random() < 0.06:
                continue  # never reached the document store
            if k == 0:
                body = (f"INVOICE {ref}\nPolicy: {pol.at[i, 'policy_id']}\nDate: {incident[i]:%Y-%m-%d}\n"
                        f"Description: {product} claim\nTotal: {stated:.2f} {pol.at[i, 'currency']}\n")
            else:
                body = f"SUPPORTING DOCUMENT {ref}\nPhotos and statement attached for claim {ids[i]}.\n"
            doc_rows.append((ids[i], ref, body))
    label_at = submitted + pd.to_timedelta(rng.integers(30, 121, size=n), unit="D")
    claims = pd.DataFrame({
        "claim_id": ids,
        "policy_id": pol["policy_id"],
        "customer_id": pol["customer_id"],
        "submitted_at": submitted,
        "incident_date": pd.to_datetime(incident),
        "claim_type": pol["product"],
        "amount": amount,
        "currency": pol["currency"],
        "channel": channel,
        "customer_tenure_days": tenure.astype(int),
        "prior_claims": prior.astype(int),
        "description": descriptions,
        "document_refs": refs,
        "is_fraud": fraud,
        "label_available_at": label_at,
    })
    docs = pd.DataFrame(doc_rows, columns=["claim_id", "doc_ref", "text"])
    return claims, docs


def generate_claims(book: Book, start: date, days: int, per_day: int, seed: int = 7,
                    id_prefix: str = "CLM-") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Claims (with labels) and their documents for `days` consecutive days from `start`.

    The number of claims per day is Poisson(per_day); the same seed gives the same data.
    """
    claims, docs = [], []
    for d in range(days):
        day = start + timedelta(days=d)
        rng = np.random.default_rng([seed, day.toordinal()])
        n = int(rng.poisson(per_day))
        c, k = _claims_for_day(book, day, n, rng, id_prefix)
        claims.append(c)
        docs.append(k)
    return pd.concat(claims, ignore_index=True), pd.concat(docs, ignore_index=True)


def inject_malformed(claims: pd.DataFrame, n: int = 6, seed: int = 7) -> pd.DataFrame:
    """Append `n` rows that break the claim contract (cycling through the known defects), as raw strings.

    Defects: missing amount, negative amount, bad incident date, unknown currency,
    duplicate claim id, non-numeric amount, incident after submission.
    """
    rng = np.random.default_rng(seed)
    raw = claims.astype(object).copy()
    bad_rows = []
    defects = ["missing_amount", "negative_amount", "bad_date", "unknown_currency", "duplicate_id",
               "wrong_type", "incident_after_submission"]
    for i in range(n):
        row = raw.iloc[int(rng.integers(0, len(raw)))].to_dict()
        defect = defects[i % len(defects)]
        if defect != "duplicate_id":
            row["claim_id"] = f"{row['claim_id']}-X{i}"
        if defect == "missing_amount":
            row["amount"] = None
        elif defect == "negative_amount":
            row["amount"] = -abs(float(row["amount"]))
        elif defect == "bad_date":
            row["incident_date"] = "2026-13-45"
        elif defect == "unknown_currency":
            row["currency"] = "XYZ"
        elif defect == "wrong_type":
            row["amount"] = "twelve hundred"
        elif defect == "incident_after_submission":
            row["incident_date"] = (pd.Timestamp(row["submitted_at"]) + pd.Timedelta(days=3)).strftime("%Y-%m-%d")
        bad_rows.append(row)
    return pd.concat([raw, pd.DataFrame(bad_rows)], ignore_index=True)


def to_inbox_records(claims: pd.DataFrame) -> pd.DataFrame:
    """The claim columns a submitter sends (no label), with dates as ISO strings."""
    cols = ["claim_id", "policy_id", "customer_id", "submitted_at", "incident_date", "claim_type", "amount",
            "currency", "channel", "customer_tenure_days", "prior_claims", "description", "document_refs"]
    out = claims[cols].copy()
    for c in ("submitted_at", "incident_date"):
        out[c] = [v.isoformat() if isinstance(v, (pd.Timestamp, datetime, date)) else v for v in out[c]]
    out["incident_date"] = [v[:10] if isinstance(v, str) and "T" in v else v for v in out["incident_date"]]
    return out


def inject_drift(claims: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """A shifted batch: amounts tripled, most claims by phone, reported weeks late, long-tenure customers only.

    Used to prove the drift gate: the shift touches several feature columns at once.
    """
    rng = np.random.default_rng(seed)
    out = claims.copy()
    out["amount"] = np.round(out["amount"] * 3.0, 2)
    out["channel"] = np.where(rng.random(len(out)) < 0.8, "phone", out["channel"])
    out["incident_date"] = pd.to_datetime(out["incident_date"]) - pd.to_timedelta(rng.integers(20, 60, len(out)), unit="D")
    out["prior_claims"] = out["prior_claims"] + rng.poisson(2.0, len(out))
    return out
