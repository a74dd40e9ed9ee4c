"""Synthetic claims whose fraud signals come from separate systems, with hidden causes and a known posterior.

The intake part follows models/generator.py (same fraud logit shape and intake signal distributions,
vectorised, no text or document store); on top of it each decision module is its own source:

* hidden causes: an organised ring behind a share of fraud (its signals agree even given fraud) and a
  legitimate delay (hospital stay, travel, catastrophe weeks with many delayed home/auto claims) that makes
  honest claims late too, and fraud as well: the late-report rule is explained away by it;
* document forensics: no document uploaded is informative (fraudsters withhold more); the service has
  outage days; tampering is detected more often in rings;
* watchlist / prior-claims registry: goes live at `go_live_day`, after the classifier was trained;
* device/identity check: web and app claims only, outage days;
* link analysis over the claims graph: asynchronous, latency in days (geometric), so some answers land
  after the decision's deadline (`pending`);
* late explanation: the claimant's documented reason for a late report, when there is one.

Labels arrive 30-120 days after submission, and only for investigated claims (see `fusion_study`).
Per seed the true parameters are drawn from the documented `RANGES`; the network's tables are the
experts' (config/modules.yaml), never these. `true_posterior` is the oracle: P(fraud | everything observed)
under the true parameters, marginalising ring and legitimate delay exactly.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, logsumexp

from models.generator import CHANNEL_P, CHANNELS, PRODUCTS

PRODUCT_P = [0.4, 0.3, 0.15, 0.15]
# Documented ranges the true parameters are drawn from, per seed (uniform).
RANGES: dict[str, tuple[float, float]] = {
    "fraud_base_logit": (-4.1, -3.7),
    "ring_share": (0.20, 0.45),
    "legit_rate": (0.04, 0.08),
    "legit_rate_catastrophe": (0.25, 0.40),     # home/auto claims in a catastrophe week
    "doc_upload_honest": (0.85, 0.95),
    "doc_upload_fraud": (0.65, 0.85),           # default: mildly informative missingness
    "doc_upload_fraud_mnar": (0.35, 0.50),      # the missing-not-at-random regime
    "tamper_honest": (0.01, 0.04),
    "tamper_lone": (0.20, 0.40),
    "tamper_ring": (0.40, 0.65),
    "watch_honest": (0.002, 0.010),
    "watch_lone": (0.08, 0.20),
    "watch_ring": (0.30, 0.60),
    "device_honest": (0.01, 0.04),
    "device_lone": (0.10, 0.30),
    "device_ring": (0.45, 0.75),
    "link_honest": (0.005, 0.02),
    "link_lone": (0.03, 0.10),
    "link_ring": (0.50, 0.85),
    "link_latency_mean": (1.5, 4.0),            # days, geometric
    "explain_delayed": (0.70, 0.90),
    "explain_not_delayed": (0.01, 0.03),
    "outage_day_rate": (0.01, 0.04),            # per service, share of days down
}
# Fixed intake parameters, as in models/generator.py.
AMOUNT_SHIFT, AMOUNT_SD = 0.55, 0.6
PRIOR_RATE = {True: 1.2, False: 0.4}
TEXT_P = {True: 0.30, False: 0.06}
DELAY_MEAN = {"honest": 4.0, "fraud_prompt": 5.0, "fraud_late": 20.0, "legit": 18.0}
FRAUD_LATE_SHARE = 0.45
CATASTROPHE_WEEKS_PER_YEAR = 3
INTAKE_COLUMNS = ["amount_log", "amount_ratio", "report_delay_days", "prior_claims", "customer_tenure_days",
                  "text_flags", "claim_type", "channel"]


@dataclass(frozen=True)
class World:
    """One seed's world: its true parameters and the module go-live day."""

    seed: int
    params: dict[str, float]
    go_live_day: int
    catastrophe_days: frozenset[int]


def make_world(seed: int, go_live_day: int, mnar: bool = False, horizon_days: int = 800) -> World:
    """True parameters drawn from `RANGES` (the MNAR regime uses `doc_upload_fraud_mnar`)."""
    rng = np.random.default_rng([seed, 0])
    params = {k: float(rng.uniform(*r)) for k, r in RANGES.items()}
    if mnar:
        params["doc_upload_fraud"] = params["doc_upload_fraud_mnar"]
    n_weeks = horizon_days // 7
    weeks = rng.choice(n_weeks, size=max(1, n_weeks * CATASTROPHE_WEEKS_PER_YEAR // 52), replace=False)
    days = frozenset(int(w * 7 + d) for w in weeks for d in range(7))
    return World(seed, params, go_live_day, days)


def _geom(rng: np.random.Generator, mean: np.ndarray | float, n: int) -> np.ndarray:
    return rng.geometric(1 / np.asarray(mean, dtype=float), size=n) - 1


def _log_geom(k: np.ndarray, mean: float) -> np.ndarray:
    p = 1 / mean
    return k * np.log1p(-p) + np.log(p)


def generate(world: World, first_day: int, days: int, per_day: int, *, outage: dict[str, tuple[int, int]] | None = None,
             stream: int = 1) -> pd.DataFrame:
    """Claims for days [first_day, first_day+days): intake features, hidden causes, raw module inputs, labels.

    `outage` forces a service down for a day range (module name -> (first, last) day inclusive).
    `stream` separates random streams (history, labelled stream, test) of the same world.
    """
    P = world.params
    rng = np.random.default_rng([world.seed, stream, first_day])
    day = np.repeat(np.arange(first_day, first_day + days), per_day)
    n = len(day)
    product = rng.choice(list(PRODUCTS), size=n, p=PRODUCT_P)
    typical = np.array([PRODUCTS[p] for p in product]) * rng.lognormal(0.0, 0.35, n)
    tenure = np.where(rng.random(n) < 0.12, rng.integers(5, 365, n), rng.integers(365, 15 * 365, n))
    channel = rng.choice(CHANNELS, size=n, p=CHANNEL_P)
    prior_logit = _prior_logit(P, tenure, channel, product)
    fraud = rng.random(n) < expit(prior_logit)
    ring = fraud & (rng.random(n) < P["ring_share"])
    legit_rate = _legit_rate(P, world, day, product)
    legit = rng.random(n) < legit_rate
    ratio = np.exp(rng.normal(np.where(fraud, AMOUNT_SHIFT, 0.0), AMOUNT_SD))
    amount = np.round(typical * ratio, 2)
    late_fraud = fraud & (rng.random(n) < FRAUD_LATE_SHARE)
    delay_mean = np.where(legit, DELAY_MEAN["legit"], np.where(
        fraud, np.where(late_fraud, DELAY_MEAN["fraud_late"], DELAY_MEAN["fraud_prompt"]), DELAY_MEAN["honest"]))
    delay = _geom(rng, delay_mean, n)
    prior = rng.poisson(np.where(fraud, PRIOR_RATE[True], PRIOR_RATE[False]))
    text = rng.random(n) < np.where(fraud, TEXT_P[True], TEXT_P[False])

    def by_class(key: str) -> np.ndarray:
        return np.where(ring, P[f"{key}_ring"], np.where(fraud, P[f"{key}_lone"], P[f"{key}_honest"]))

    def service_up(name: str) -> np.ndarray:
        # crc32, not hash(): str hashes change between processes, and the same seed must give the same days
        down_days = np.random.default_rng([world.seed, 99, zlib.crc32(name.encode())]).random(first_day + days + 1)
        up = down_days[day] >= P["outage_day_rate"]
        if outage and name in outage:
            lo, hi = outage[name]
            up &= ~((day >= lo) & (day <= hi))
        return up

    uploaded = rng.random(n) < np.where(fraud, P["doc_upload_fraud"], P["doc_upload_honest"])
    tampered = rng.random(n) < by_class("tamper")
    forensic = np.where(tampered, rng.uniform(TAMPER_LO, 1.0, n), rng.uniform(0.0, TAMPER_LO, n))
    live = day >= world.go_live_day
    explained = rng.random(n) < np.where(legit, P["explain_delayed"], P["explain_not_delayed"])
    reasons = np.array(["hospital stay", "travelling abroad", "catastrophe week"], dtype=object)
    return pd.DataFrame({
        "claim_id": [f"MOD-{world.seed}-{stream}-{d}-{i}" for i, d in enumerate(day)],
        "day": day,
        "is_fraud": fraud, "ring": ring, "legit_delay": legit,
        "amount": amount,
        "amount_log": np.log1p(amount),
        "amount_ratio": ratio,
        "report_delay_days": delay.astype(float),
        "prior_claims": prior.astype(float),
        "customer_tenure_days": tenure.astype(float),
        "text_flags": text.astype(float),
        "claim_type": product.astype(object),
        "channel": channel.astype(object),
        "doc_uploaded": uploaded & live,
        "doc_forensic_score": np.where(uploaded & live, forensic, 0.0),
        "doc_service_up": service_up("doc_forensics") & live,
        "watchlist_hit": live & (rng.random(n) < by_class("watch")),
        "watchlist_live": live & service_up("watchlist"),
        "device_risk": np.where(rng.random(n) < by_class("device"), 0.9, 0.1),
        "device_service_up": service_up("device_check") & live,
        "linked_to_confirmed_fraud": rng.random(n) < by_class("link"),
        "link_latency_days": _geom(rng, P["link_latency_mean"], n).astype(float),
        "link_service_up": service_up("link_analysis") & live,
        "explanation": np.where(explained, reasons[rng.integers(0, 3, n)], ""),
        "label_delay_days": rng.integers(30, 121, n),
        "prior_logit": prior_logit,
    })


TAMPER_LO = 0.5  # forensic scores of untampered documents lie below it, tampered above


def _prior_logit(P: dict[str, float], tenure: np.ndarray, channel: np.ndarray, product: np.ndarray) -> np.ndarray:
    return (P["fraud_base_logit"] + 1.4 * (np.asarray(tenure) < 90) + 0.5 * np.isin(channel, ["web", "app"])
            + 0.4 * (np.asarray(product) == "travel"))


def _legit_rate(P: dict[str, float], world: World, day: np.ndarray, product: np.ndarray) -> np.ndarray:
    cat = np.isin(day, list(world.catastrophe_days)) & np.isin(product, ["home", "auto"])
    return np.where(cat, P["legit_rate_catastrophe"], P["legit_rate"])


def true_posterior(world: World, claims: pd.DataFrame, states: pd.DataFrame) -> np.ndarray:
    """The oracle: P(fraud | intake features, module states) under the world's true parameters.

    Sums exactly over the hidden ring and legitimate-delay causes. Silent states (unavailable,
    not_applicable, pending) carry no likelihood: outages, go-live and async latency are independent of fraud.
    """
    P = world.params
    n = len(claims)
    prior = _prior_logit(P, claims["customer_tenure_days"].to_numpy(), claims["channel"].to_numpy(),
                         claims["claim_type"].to_numpy())
    lam = _legit_rate(P, world, claims["day"].to_numpy(), claims["claim_type"].to_numpy())
    logr = np.log(claims["amount_ratio"].to_numpy())
    k = claims["report_delay_days"].to_numpy()
    m = claims["prior_claims"].to_numpy()
    t = claims["text_flags"].to_numpy() > 0

    def intake(f: bool) -> np.ndarray:
        mu = AMOUNT_SHIFT if f else 0.0
        ll = -0.5 * ((logr - mu) / AMOUNT_SD) ** 2
        rate = PRIOR_RATE[f]
        ll = ll + m * np.log(rate) - rate
        ll = ll + np.log(np.where(t, TEXT_P[f], 1 - TEXT_P[f]))
        return ll

    def delay_ll(f: bool, legit: bool) -> np.ndarray:
        if legit:
            return _log_geom(k, DELAY_MEAN["legit"])
        if f:
            return np.logaddexp(np.log(FRAUD_LATE_SHARE) + _log_geom(k, DELAY_MEAN["fraud_late"]),
                                np.log(1 - FRAUD_LATE_SHARE) + _log_geom(k, DELAY_MEAN["fraud_prompt"]))
        return _log_geom(k, DELAY_MEAN["honest"])

    def module_ll(cls: str) -> np.ndarray:
        ll = np.zeros(n)
        upload = P["doc_upload_fraud"] if cls != "honest" else P["doc_upload_honest"]
        doc = states["doc_forensics"].to_numpy()
        tam = P[f"tamper_{cls}"]
        ll += np.log(np.select([doc == "no_document", doc == "tampered", doc == "clean"],
                               [1 - upload, upload * tam, upload * (1 - tam)], 1.0))
        for mod, key, yes, no in (("watchlist", "watch", "hit", "no_hit"), ("device_check", "device", "risky", "ok"),
                                  ("link_analysis", "link", "linked", "unlinked")):
            s = states[mod].to_numpy()
            q = P[f"{key}_{cls}"]
            ll += np.log(np.select([s == yes, s == no], [q, 1 - q], 1.0))
        return ll

    expl = states["late_explanation"].to_numpy()

    def explain_ll(legit: bool) -> np.ndarray:
        q = P["explain_delayed"] if legit else P["explain_not_delayed"]
        return np.log(np.select([expl == "explained", expl == "none"], [q, 1 - q], 1.0))

    def legit_mix(f: bool) -> np.ndarray:
        return np.logaddexp(np.log(lam) + delay_ll(f, True) + explain_ll(True),
                            np.log1p(-lam) + delay_ll(f, False) + explain_ll(False))

    log_f = (np.log(expit(prior)) + intake(True) + legit_mix(True)
             + logsumexp([np.log(P["ring_share"]) + module_ll("ring"),
                          np.log1p(-P["ring_share"]) + module_ll("lone")], axis=0))
    log_h = np.log(expit(-prior)) + intake(False) + legit_mix(False) + module_ll("honest")
    return expit(log_f - log_h)
