"""Service-level objectives (config/slo.yaml) and the alarms they raise: pure evaluation, no I/O but the config.

Three objectives per daily partition: p95 latency of one decision, the change of the human
override rate against its recent baseline, and the share of drifted feature columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field

from models.routes import overridden

SLO_PATH = Path(__file__).resolve().parents[1] / "config" / "slo.yaml"
_SHARE = re.compile(r"share ([0-9]*\.?[0-9]+)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LatencySlo(_Strict):
    """The p95 latency bound of one decision, measured on a probe of claims."""

    p95_ms_max: float = Field(gt=0)
    probe_claims: int = Field(ge=1)


class OverrideSlo(_Strict):
    """The allowed change of the human override rate against its baseline of recent partitions."""

    max_change: float = Field(gt=0, le=1)
    baseline_partitions: int = Field(ge=1)
    min_reviews: int = Field(ge=1)


class DriftSlo(_Strict):
    """The largest share of drifted feature columns a partition may have."""

    share_max: float = Field(gt=0, le=1)


class SloConfig(_Strict):
    """All objectives; a wrong or missing field is an error that names it."""

    version: str
    latency: LatencySlo
    override_rate: OverrideSlo
    drift: DriftSlo


def load_slo(path: Path | None = None) -> SloConfig:
    """The objectives from YAML (default config/slo.yaml)."""
    path = Path(path) if path is not None else SLO_PATH
    return SloConfig(**yaml.safe_load(path.read_text()))


@dataclass(frozen=True)
class SloVerdict:
    """One objective judged on one partition; `value` NaN means there was nothing to judge (passes)."""

    name: str
    passed: bool
    value: float
    limit: float
    detail: str


@dataclass(frozen=True)
class Alarm:
    """A breached objective on a partition, with a human-readable reason."""

    kind: str
    partition: str
    value: float
    threshold: float
    reason: str

    @property
    def key(self) -> str:
        """Identity of the alarm: one per objective and partition, so a breach whose value keeps moving
        (an override rate with every new review) is still one alarm and one run."""
        return f"{self.kind}:{self.partition}"


# --------------------------------------------------------------------------------------------- latency


def p95_ms(latencies_s: np.ndarray) -> float:
    """95th percentile of latencies given in seconds, in milliseconds (NaN when empty)."""
    lat = np.asarray(latencies_s, dtype=float)
    return float(np.percentile(lat, 95) * 1000) if len(lat) else float("nan")


def evaluate_latency(latencies_s: np.ndarray, slo: SloConfig) -> SloVerdict:
    """p95 latency of one decision against its ceiling."""
    v = p95_ms(latencies_s)
    limit = slo.latency.p95_ms_max
    passed = bool(np.isnan(v) or v <= limit)
    return SloVerdict("latency_p95", passed, v, limit,
                      f"p95 {v:.1f} ms over {len(latencies_s)} decisions (ceiling {limit:.0f} ms)")


# --------------------------------------------------------------------------------------------- overrides


def override_counts(reviews: pd.DataFrame) -> pd.DataFrame:
    """Per partition: final review decisions, overrides, and the override rate.

    `reviews` has partition, decision and leaning, both `approve` or `reject`: the reviewer's final
    decision and the model's leaning when it was made (connectors.stores.reviews records both). A decision
    against the leaning is an override.
    """
    r = reviews[reviews["decision"].isin(["approve", "reject"])]
    frame = pd.DataFrame({"partition": r["partition"].to_numpy(),
                          "override": overridden(r["decision"] == "approve", r["leaning"] == "approve")})
    g = frame.groupby("partition", sort=True)["override"]
    out = pd.DataFrame({"reviewed": g.size(), "overrides": g.sum().astype(int)})
    out["rate"] = out["overrides"] / out["reviewed"]
    return out.reset_index()


@dataclass(frozen=True)
class OverrideChange:
    """A partition's override rate against the mean rate of its preceding judged partitions."""

    partition: str
    reviewed: int
    rate: float
    baseline: float
    baseline_partitions: int

    @property
    def change(self) -> float:
        """Absolute change of the override share (NaN without a baseline)."""
        return self.rate - self.baseline


def override_change(counts: pd.DataFrame, partition: str, slo: SloConfig) -> OverrideChange:
    """The override change of `partition`: its rate and the pooled rate of up to `baseline_partitions`
    earlier partitions with at least `min_reviews` reviews."""
    o = slo.override_rate
    counts = counts.sort_values("partition")
    row = counts[counts["partition"] == partition]
    reviewed = int(row["reviewed"].sum())
    rate = float(row["rate"].iat[0]) if len(row) else float("nan")
    earlier = counts[(counts["partition"] < partition) & (counts["reviewed"] >= o.min_reviews)]
    prior = earlier.tail(o.baseline_partitions)
    baseline = float(prior["overrides"].sum() / prior["reviewed"].sum()) if len(prior) else float("nan")
    return OverrideChange(partition, reviewed, rate, baseline, len(prior))


def evaluate_override(change: OverrideChange, slo: SloConfig) -> SloVerdict:
    """The override rate's move against the configured share (passes when there is too little to judge)."""
    o = slo.override_rate
    judged = change.reviewed >= o.min_reviews and change.baseline_partitions > 0
    if not judged:
        return SloVerdict("override_rate_change", True, float("nan"), o.max_change,
                          f"{change.reviewed} reviewed claims, {change.baseline_partitions} baseline partitions: "
                          f"too few to judge (need {o.min_reviews} and 1)")
    moved = abs(change.change)
    return SloVerdict("override_rate_change", moved <= o.max_change, change.change, o.max_change,
                      f"override rate {change.rate:.1%} of {change.reviewed} reviews against {change.baseline:.1%} "
                      f"over the previous {change.baseline_partitions} partition(s): moved {change.change:+.1%} "
                      f"(limit ±{o.max_change:.0%})")


def override_alarm(change: OverrideChange, slo: SloConfig) -> Alarm | None:
    """An alarm when the override rate moved more than the configured share, else None."""
    v = evaluate_override(change, slo)
    if v.passed:
        return None
    return Alarm("override_rate", change.partition, change.change, slo.override_rate.max_change, v.detail)


# --------------------------------------------------------------------------------------------- drift


def drift_share_of(detail: str) -> float | None:
    """The drifted-column share a drift gate's detail reports ("... (share 0.27, ...)"), or None."""
    m = _SHARE.search(detail or "")
    return float(m.group(1)) if m else None


def evaluate_drift(share: float | None, gate_passed: bool, slo: SloConfig) -> SloVerdict:
    """The partition's drifted share against its ceiling; a failed gate without a share fails too."""
    limit = slo.drift.share_max
    if share is None:
        return SloVerdict("drift_share", gate_passed, float("nan"), limit,
                          "drift gate " + ("passed" if gate_passed else "failed") + " without a share")
    return SloVerdict("drift_share", share < limit and gate_passed, share, limit,
                      f"drifted share {share:.2f} (ceiling {limit:.2f}); gate {'passed' if gate_passed else 'failed'}")


def drift_alarm(partition: str, gate_passed: bool, detail: str, slo: SloConfig) -> Alarm | None:
    """An alarm when a partition's drift gate failed or its drifted share reached the ceiling, else None."""
    share = drift_share_of(detail)
    v = evaluate_drift(share, gate_passed, slo)
    if v.passed:
        return None
    return Alarm("drift", partition, float("nan") if share is None else share, slo.drift.share_max,
                 f"partition {partition} drifted: {detail}")
