"""The text triage model: a claim description → topic, suspicious-language score, urgency score.

Each head is TF-IDF over word 1–2-grams and character 2–5-grams (inside word boundaries, so
``windshield`` shares pieces with ``windscreen``) into a LogisticRegression, calibrated by
sigmoid on cross-validation folds. Heads:

- ``topic``: which product the description is about; `consistency` is the probability of the
  claim's own type, and its state is ``consistent``/``inconsistent``/``unavailable`` (empty text);
- ``suspicious``: probability that the text carries suspicious language;
- ``urgent``: probability that the text presses for urgency.

Registered in MLflow as its own model (`MODEL_NAME`, alias ``champion``); versioned by a hash of
its training data and parameters (`TriageModel.version`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import FeatureUnion, make_pipeline
from sklearn.feature_extraction.text import TfidfVectorizer

from models.calibration import expected_calibration_error
from models.triage_text import TOPICS, generate_texts

MODEL_NAME = "aios-triage"
HEADS = ("topic", "suspicious", "urgent")
INCONSISTENT_BELOW = 0.25  # probability of the claimed type under which the text is about something else
PARAMS = {"word_ngrams": (1, 2), "char_ngrams": (2, 5), "C": 4.0, "calibration": "sigmoid", "cv": 3}


def _pipeline(params: dict):
    features = FeatureUnion([
        ("word", TfidfVectorizer(analyzer="word", ngram_range=params["word_ngrams"], sublinear_tf=True, min_df=1)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=params["char_ngrams"], sublinear_tf=True, min_df=2)),
    ])
    clf = CalibratedClassifierCV(LogisticRegression(C=params["C"], max_iter=2000),
                                 method=params["calibration"], cv=params["cv"])
    return make_pipeline(features, clf)


@dataclass
class TriageModel:
    """Three fitted heads and the facts that identify them."""

    heads: dict
    version: str
    params: dict = field(default_factory=lambda: dict(PARAMS))

    def predict(self, descriptions: pd.Series, claim_types: pd.Series | None = None) -> pd.DataFrame:
        """Per description (same index): topic, topic_p, suspicious_score, urgency_score, and when
        `claim_types` is given, type_consistency (probability of the claimed type) and type_state."""
        text = descriptions.fillna("").astype(str)
        empty = text.str.strip() == ""
        out = pd.DataFrame(index=descriptions.index)
        topic = self.heads["topic"]
        p_topic = topic.predict_proba(text.tolist())
        classes = list(topic.classes_)
        out["topic"] = np.where(empty, None, np.array(classes, dtype=object)[p_topic.argmax(axis=1)])
        out["topic_p"] = np.where(empty, np.nan, p_topic.max(axis=1))
        out["suspicious_score"] = np.where(empty, np.nan, self.heads["suspicious"].predict_proba(text.tolist())[:, 1])
        out["urgency_score"] = np.where(empty, np.nan, self.heads["urgent"].predict_proba(text.tolist())[:, 1])
        if claim_types is not None:
            col = [classes.index(t) if t in classes else -1 for t in claim_types.astype(str)]
            p_claimed = np.array([p_topic[i, c] if c >= 0 else np.nan for i, c in enumerate(col)])
            out["type_consistency"] = np.where(empty, np.nan, p_claimed)
            out["type_state"] = np.where(empty | np.isnan(p_claimed), "unavailable",
                                         np.where(p_claimed < INCONSISTENT_BELOW, "inconsistent", "consistent"))
        out["triage_version"] = self.version
        return out


def train_triage(train: pd.DataFrame, params: dict | None = None) -> TriageModel:
    """Fit the three heads on `train` (columns text, topic, suspicious, urgent)."""
    params = {**PARAMS, **(params or {})}
    text = train["text"].astype(str).tolist()
    heads = {
        "topic": _pipeline(params).fit(text, train["topic"].astype(str)),
        "suspicious": _pipeline(params).fit(text, train["suspicious"].astype(int)),
        "urgent": _pipeline(params).fit(text, train["urgent"].astype(int)),
    }
    digest = hashlib.sha256(pd.util.hash_pandas_object(train, index=False).values.tobytes()
                            + repr(sorted(params.items())).encode()).hexdigest()[:12]
    return TriageModel(heads=heads, version=f"triage-{digest}", params=params)


def evaluate_triage(model: TriageModel, heldout: pd.DataFrame) -> dict[str, float]:
    """Per head on `heldout`: macro-F1, ECE (of the top class probability for topic), and the macro-F1
    of the trivial baseline (always the most frequent class of `heldout`)."""
    pred = model.predict(heldout["text"])
    out: dict[str, float] = {}
    y_topic = heldout["topic"].astype(str).to_numpy()
    out["topic_macro_f1"] = float(f1_score(y_topic, pred["topic"].astype(str), average="macro"))
    out["topic_ece"] = expected_calibration_error(pred["topic_p"].to_numpy(),
                                                  (pred["topic"].astype(str).to_numpy() == y_topic).astype(int))
    majority = pd.Series(y_topic).mode()[0]
    out["topic_baseline_macro_f1"] = float(f1_score(y_topic, [majority] * len(y_topic), average="macro"))
    for head, col in (("suspicious", "suspicious_score"), ("urgent", "urgency_score")):
        y = heldout[head].astype(int).to_numpy()
        p = pred[col].to_numpy()
        out[f"{head}_macro_f1"] = float(f1_score(y, (p >= 0.5).astype(int), average="macro"))
        out[f"{head}_ece"] = expected_calibration_error(p, y)
        out[f"{head}_baseline_macro_f1"] = float(f1_score(y, np.full(len(y), int(y.mean() >= 0.5)), average="macro"))
    return out


def train_and_evaluate(n_train: int = 4000, n_heldout: int = 1000, seed: int = 7) -> tuple[TriageModel, dict]:
    """Train on the ``train`` wording and evaluate on the ``heldout`` wording; returns the model and metrics."""
    model = train_triage(generate_texts(n_train, "train", seed))
    metrics = evaluate_triage(model, generate_texts(n_heldout, "heldout", seed))
    metrics["n_train"], metrics["n_heldout"] = float(n_train), float(n_heldout)
    return model, metrics


__all__ = ["MODEL_NAME", "TOPICS", "TriageModel", "train_triage", "evaluate_triage", "train_and_evaluate"]
