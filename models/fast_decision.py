"""The single-claim fast path: the same decision as `models.decision.decide`, bit for bit, without pandas.

`decide` is written for batches: a DataFrame per stage, sklearn's input validation and column
transformer per call. For one claim those fixed costs are nearly all of the 35-40 ms it takes. Here the
same arithmetic runs on plain Python values and small numpy arrays:

- features (`claim_features`): the row `models.features.build_features` gives, from one claim's fields,
  its readable documents and the policy's typical amount;
- score and contributions (`FastScorer`): the pinned classifier's own pieces, taken apart once at pin
  time: the ordinal encoder's category lists, the gradient-boosting trees (`TreePredictor.predict`, the
  Cython routine `predict_proba` itself runs, called without re-validating the input) summed in the same
  order from the same baseline, then the calibrator's own `predict`. Base row and the occlusion rows are
  scored in one pass, as `feature_contributions` does;
- evidence and fusion: a lookup in the same cached fusion table `models.fusion.fuse` reads;
- route, rationale and drivers: the same policy table and the same rounding and ordering as `route_claims`.

`tests/unit/test_fast_decision.py` holds it to `decide` on many claims (== on every field).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from aios.kernel.canonical import canonical_json
from aios.kernel.contracts import rationale_item
from models.bayes import (EVIDENCE, HIGH_VELOCITY_PRIOR_CLAIMS, LATE_REPORT_DAYS, NEW_CUSTOMER_DAYS,
                          SCORE_BAND_EDGES, SCORE_BANDS, TARGET)
from models.decision import RATIONALE_DIGITS, TOP_DRIVERS, TOP_FEATURES, DecisionModels, snapshot_hash
from models.documents import extract_invoice_total
from models.features import FEATURE_COLUMNS, MISMATCH_TOLERANCE
from models.fusion import YES, fusion_table
from models.modules.production import CLASSIFIER
from models.triage import SUSPICIOUS_PATTERNS


class FastPathUnsupported(ValueError):
    """The pinned classifier is not the shape the fast path takes apart (use `decide`)."""


# -------------------------------------------------------------------------------------------------
# features


def _naive_utc(ts: Any) -> datetime:
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if isinstance(ts, datetime):
        if ts.tzinfo is not None:
            ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
        return ts
    if isinstance(ts, date):
        return datetime(ts.year, ts.month, ts.day)
    raise TypeError(f"not a timestamp: {ts!r}")


def _day(d: Any) -> date:
    if isinstance(d, str):
        d = datetime.fromisoformat(d.replace("Z", "+00:00"))
    if isinstance(d, datetime):
        return d.date()
    return d


def text_flags(description: str | None) -> int:
    """How many suspicious markers the description holds (`models.triage.triage`'s `text_flags`)."""
    text = "" if description is None else str(description)
    return sum(1 for pattern in SUSPICIOUS_PATTERNS.values() if pattern.search(text))


def claim_features(claim: Mapping[str, Any], documents: Sequence[str], typical_amount: float | None) -> dict[str, Any]:
    """One claim's feature row, as `build_features` computes it: `FEATURE_COLUMNS` then `amount`.

    `claim` holds the `Claim` contract's fields; `documents` the texts of its readable documents;
    `typical_amount` the policy's typical amount (None when the policy is unknown).
    """
    amount = float(claim["amount"])
    submitted = _naive_utc(claim["submitted_at"])
    delay = (submitted.date() - _day(claim["incident_date"])).days
    refs = claim.get("document_refs") or []
    if isinstance(refs, str):
        refs = [x for x in refs.split(";") if x]
    totals = [t for t in (extract_invoice_total(text)[0] for text in documents) if t is not None]
    invoice = max(totals) if totals else math.nan
    mismatch = math.nan if invoice != invoice else float(abs(invoice - amount) / amount > MISMATCH_TOLERANCE)
    typical = math.nan if typical_amount is None else float(typical_amount)
    return {
        # one-element arrays: the ufunc loop build_features runs on a column, so the same last bit
        "amount_log": float(np.log1p(np.array([amount]))[0]),
        "amount_ratio": amount / typical if typical == typical else math.nan,
        "report_delay_days": float(delay),
        "prior_claims": float(claim["prior_claims"]),
        "customer_tenure_days": float(claim["customer_tenure_days"]),
        "n_documents": float(len(refs)),
        "docs_readable": float(len(documents)),
        "doc_amount_mismatch": mismatch,
        "text_flags": float(text_flags(claim.get("description"))),
        "claim_type": str(claim["claim_type"]),
        "channel": str(claim["channel"]),
        "amount": amount,
    }


def snapshot_record(claim_id: str, features: Mapping[str, Any]) -> dict[str, Any]:
    """The feature row as `models.decision.snapshot_records` stores it (claim id first, NaN → None)."""
    rec: dict[str, Any] = {"claim_id": claim_id}
    for c in [*FEATURE_COLUMNS, "amount"]:
        v = features[c]
        rec[c] = None if isinstance(v, float) and v != v else v
    return rec


# -------------------------------------------------------------------------------------------------
# the classifier, taken apart once


def _calibrate(calibrator: Any, raw: np.ndarray) -> np.ndarray:
    """`calibrator.predict(raw)`; for isotonic calibration its own steps (clip, then the fitted interpolation,
    as `IsotonicRegression._transform` does) without re-validating a float64 vector on every call."""
    if (type(calibrator).__name__ == "IsotonicRegression" and calibrator.out_of_bounds == "clip"
            and getattr(calibrator, "X_thresholds_", raw).dtype == raw.dtype):
        return calibrator.f_(np.clip(raw, calibrator.X_min_, calibrator.X_max_)).astype(raw.dtype)
    return calibrator.predict(raw)


class FastScorer:
    """The calibrated classifier's `predict_proba(...)[:, 1]` on encoded rows, without per-call validation."""

    def __init__(self, classifier: Any) -> None:
        """Take `classifier` (a `CalibratedClassifierCV` over the encode+boosting pipeline) apart; raises
        FastPathUnsupported for any other shape."""
        try:
            self.columns = list(classifier.feature_names_in_)
            self.reference = dict(classifier.aios_reference_)
            self._members = []
            for cc in classifier.calibrated_classifiers_:
                if cc.method not in ("isotonic", "sigmoid") or len(cc.calibrators) != 1:
                    raise FastPathUnsupported(f"calibration {cc.method!r} with {len(cc.calibrators)} calibrators")
                pipe = getattr(cc.estimator, "estimator", cc.estimator)  # FrozenEstimator wraps the pipeline
                encode, model = pipe.named_steps["encode"], pipe.named_steps["model"]
                if model.n_trees_per_iteration_ != 1:
                    raise FastPathUnsupported("multi-class boosting")
                known, f_idx_map = model._bin_mapper.make_known_categories_bitsets()
                trees = [p[0] for p in model._predictors]
                self._members.append((self._encoder_plan(encode), model._baseline_prediction, trees, known, f_idx_map,
                                      cc.calibrators[0]))
        except (AttributeError, KeyError, TypeError) as exc:
            raise FastPathUnsupported(f"classifier {type(classifier).__name__} is not the encode+boosting+"
                                      f"calibration shape the fast path knows: {exc}") from exc
        self.n_classes = len(classifier.classes_)
        if self.n_classes != 2:
            raise FastPathUnsupported("not a binary classifier")

    def _encoder_plan(self, encode: Any) -> list[tuple[int, dict[str, float] | None]]:
        """Output column → (input column index, category codes or None for passthrough)."""
        plan: list[tuple[int, dict[str, float] | None]] = []
        for name, trans, cols in encode.transformers_:
            if trans == "drop" or len(cols) == 0:
                continue
            idx = [self.columns.index(c) if isinstance(c, str) else int(c) for c in cols]
            if trans == "passthrough" or (type(trans).__name__ == "FunctionTransformer" and trans.func is None):
                plan.extend((i, None) for i in idx)
                continue
            if (trans.handle_unknown != "use_encoded_value" or trans.unknown_value != -1
                    or trans.encoded_missing_value != -1 or getattr(trans, "_infrequent_enabled", False)):
                raise FastPathUnsupported(f"encoder {name!r} is not the ordinal encoding the fast path knows")
            for i, cats in zip(idx, trans.categories_):
                plan.append((i, {c: float(k) for k, c in enumerate(cats.tolist()) if isinstance(c, str)}))
        return plan

    @staticmethod
    def _encode(plan: list[tuple[int, dict[str, float] | None]], rows: list[list[Any]]) -> np.ndarray:
        out = np.empty((len(rows), len(plan)), dtype=np.float64)
        for j, (i, codes) in enumerate(plan):
            if codes is None:
                out[:, j] = [math.nan if v is None else float(v) for v in (r[i] for r in rows)]
            else:
                out[:, j] = [codes.get(v, -1.0) if isinstance(v, str) else -1.0 for v in (r[i] for r in rows)]
        return out

    def score(self, rows: list[list[Any]]) -> np.ndarray:
        """Calibrated probability of the positive class per row (values in `self.columns` order)."""
        mean = np.zeros((len(rows), self.n_classes))
        for plan, baseline, trees, known, f_idx_map, calibrator in self._members:
            X = self._encode(plan, rows)
            raw = np.zeros((len(rows), 1), dtype=baseline.dtype, order="F")
            raw += baseline
            for tree in trees:  # the order _raw_predict adds them in
                raw[:, 0] += tree.predict(X, known, f_idx_map, 1)
            proba = np.zeros((len(rows), self.n_classes))
            proba[:, 1] = _calibrate(calibrator, raw[:, 0])
            proba[:, 0] = 1.0 - proba[:, 1]
            mean += proba
        mean /= len(self._members)
        return mean[:, 1]

    def score_and_contributions(self, features: Mapping[str, Any]) -> tuple[float, list[float]]:
        """The row's score and, per column, score minus the score with that column at its reference value
        (`models.classifier.feature_contributions`)."""
        base = [features[c] for c in self.columns]
        rows = [base]
        for j, c in enumerate(self.columns):
            occluded = list(base)
            occluded[j] = self.reference[c]
            rows.append(occluded)
        s = self.score(rows)
        return float(s[0]), (s[0] - s[1:]).tolist()


# -------------------------------------------------------------------------------------------------
# the decision


@dataclass
class FastModels:
    """The pinned `DecisionModels` plus what the fast path derives from them once (scorer, fusion table)."""

    models: DecisionModels

    def __post_init__(self) -> None:
        self.scorer = FastScorer(self.models.classifier)
        self.table = fusion_table(self.models.compiled)
        compiled = self.models.compiled
        self.states = {v: list(compiled.states[v]) for v in EVIDENCE}
        self.contrib_cols = list(self.table.contributions.columns)
        self.contrib = self.table.contributions.to_numpy()
        self.voi_cols = list(self.table.value_of_information.columns)
        self.voi = self.table.value_of_information.to_numpy()
        self.versions_json = canonical_json(self.models.versions)
        if compiled.states[TARGET].index(YES) < 0:  # pragma: no cover - fusion_table would have failed
            raise FastPathUnsupported("network has no fraud=yes state")


def _band(score: float) -> str | None:
    # pd.cut(right=False): edges[i] <= score < edges[i+1]
    for i in range(len(SCORE_BANDS)):
        if SCORE_BAND_EDGES[i] <= score < SCORE_BAND_EDGES[i + 1]:
            return SCORE_BANDS[i]
    return None


def _evidence(features: Mapping[str, Any], score: float) -> dict[str, str | None]:
    mismatch = features["doc_amount_mismatch"]
    return {
        "new_customer": "yes" if features["customer_tenure_days"] < NEW_CUSTOMER_DAYS else "no",
        "score_band": _band(score),
        "late_report": "yes" if features["report_delay_days"] > LATE_REPORT_DAYS else "no",
        "high_velocity": "yes" if features["prior_claims"] >= HIGH_VELOCITY_PRIOR_CLAIMS else "no",
        "doc_mismatch": None if mismatch != mismatch else ("yes" if mismatch == 1 else "no"),
    }


def _table_row(fast: FastModels, evidence: Mapping[str, str | None]) -> int:
    idx = 0
    for v in EVIDENCE:
        states = fast.states[v]
        value = evidence.get(v)
        if value is None:
            code = len(states)
        else:
            try:
                code = states.index(value)
            except ValueError as exc:
                raise ValueError(f"evidence column {v!r}: unknown state {value!r} (states: {states})") from exc
        idx = idx * (len(states) + 1) + code
    return idx


def _modules(fast: FastModels, claim_id: str, features: Mapping[str, Any], band: str | None,
             net: tuple[float, float, float], k: int) -> tuple[tuple[float, float, float], list[str], str]:
    """The decision-module step of `decide` for one claim (`models.modules.production`): the fused posterior
    and interval, the module rationale items (canonical JSON) and the versions text, with the same bits."""
    mods = fast.models.modules
    frame = pd.DataFrame([dict(features)], index=[claim_id])
    states = mods.states(frame, pd.Series([band], index=frame.index, dtype=object))
    fused = tuple(float(mods.fuse(np.array([v]), states)[0]) for v in net)
    moved = mods.contributions(np.array([net[0]]), states, np.array([fused[0]]))
    versions = fast.models.versions
    mv = mods.versions()
    if CLASSIFIER in mv:
        mv = {**mv, CLASSIFIER: versions.get(CLASSIFIER, mv[CLASSIFIER])}
    recs = {n: {"version": mv[n], "state": states[n].iloc[0]} for n in states.columns}
    effects = {n: float(moved[n].iloc[0]) for n in moved.columns if moved[n].iloc[0] == moved[n].iloc[0]}
    if CLASSIFIER in recs and "score_band" in fast.contrib_cols:
        band_moved = fast.contrib[k][fast.contrib_cols.index("score_band")]
        if band_moved == band_moved:
            effects[CLASSIFIER] = float(band_moved)
    fragments = []
    for name, rec in recs.items():
        effect = effects.get(name)
        fragments.append(canonical_json(rationale_item(
            "module", name, rec["state"], None if effect is None else round(effect, RATIONALE_DIGITS),
            version=rec["version"])))
    return fused, fragments, canonical_json({**versions, "modules": recs})


def decide_one(claim_id: str, features: Mapping[str, Any], fast: FastModels) -> dict[str, Any]:
    """One claim's decision row: the fields (`DECISION_COLUMNS`) `decide` gives for the same feature row."""
    scorer = fast.scorer
    score, contribs = scorer.score_and_contributions(features)
    evidence = _evidence(features, score)
    k = _table_row(fast, evidence)
    table = fast.table
    net = (float(table.p_fraud[k]), float(table.low[k]), float(table.high[k]))
    if fast.models.modules is not None:
        (p, low, high), fragments, versions_json = _modules(fast, str(claim_id), features, evidence["score_band"],
                                                            net, k)
    else:
        (p, low, high), fragments, versions_json = net, [], fast.versions_json
    amount = float(features["amount"])
    route = fast.models.policy.route(np.array([p]), np.array([amount]))[0]
    items = [rationale_item("score", "classifier", round(score, RATIONALE_DIGITS), band=evidence["score_band"])]
    top = np.argsort(-np.abs(np.array([contribs])), axis=1)[0, :TOP_FEATURES].tolist()
    for j in top:
        c = scorer.columns[j]
        v = features[c]
        items.append(rationale_item("feature", c, round(v, RATIONALE_DIGITS) if isinstance(v, float) else v,
                                    round(contribs[j], RATIONALE_DIGITS)))
    moved = fast.contrib[k].tolist()
    for j, v in enumerate(fast.contrib_cols):
        if v != "score_band" and moved[j] == moved[j]:
            items.append(rationale_item("evidence", v, evidence[v], round(moved[j], RATIONALE_DIGITS)))
    text = canonical_json(items)
    rationale = f"{text[:-1]},{','.join(fragments)}]" if fragments else text
    voi_row = fast.voi[k]
    voi_rank = -np.nan_to_num(fast.voi[k:k + 1], nan=-1.0)
    order = [j for j in np.argsort(voi_rank[0]) if not np.isnan(voi_row[j])][:TOP_DRIVERS]
    drivers = [{"signal": fast.voi_cols[j], "expected_change": round(float(voi_row[j]), 6)} for j in order]
    return {
        "claim_id": str(claim_id),
        "amount": amount,
        "score": score,
        "p_fraud": p,
        "p_fraud_low": low,
        "p_fraud_high": high,
        "route": str(route),
        "rationale": rationale,
        "uncertainty_drivers": canonical_json(drivers),
        "versions": versions_json,
        "snapshot_hash": snapshot_hash(snapshot_record(str(claim_id), features)),
    }
