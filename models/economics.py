"""Threshold economics: what a routing band costs, which bands cost least, and fusion against the classifier.

Costs are label-based: over a backtest window whose fraud labels have arrived, every claim
costs what its route costs given whether it was fraud (`route_costs`). The routing rule
mirrors governance/policies/routing.yaml (refer at or above `refer_siu_min_p`, approve below
`auto_approve_max_p` up to the amount limit, else review); `route_with_bands` at the policy's
own constants must equal `PolicySet.route`, which callers check (`check_bands_match_policy`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field

from models.routes import AUTO, REVIEW, SIU, routing_rates

COSTS_PATH = Path(__file__).resolve().parents[1] / "config" / "costs.yaml"
ROUTE_ORDER = (AUTO, REVIEW, SIU)
# Default grid of routing bands: approve-below on a fine low scale, refer-at-or-above coarser.
AUTO_GRID = tuple(round(x, 4) for x in (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.05, 0.06, 0.07,
                                        0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3))
SIU_GRID = tuple(round(x, 4) for x in (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01))


class CostModel(BaseModel):
    """Unit costs of routing (config/costs.yaml); a wrong or missing field is an error that names it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = "1"
    currency: str = "EUR"
    cost_per_minute: float = Field(ge=0)
    review_minutes: float = Field(ge=0)
    siu_minutes: float = Field(ge=0)
    review_catch_rate: float = Field(ge=0, le=1)
    siu_catch_rate: float = Field(ge=0, le=1)
    fraud_loss_share: float = Field(ge=0, le=1)
    honest_review_cost: float = Field(ge=0)
    honest_siu_cost: float = Field(ge=0)
    compute_per_decision: float = Field(ge=0)


def load_costs(path: Path | None = None) -> CostModel:
    """The cost model from YAML (default config/costs.yaml)."""
    path = Path(path) if path is not None else COSTS_PATH
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of cost fields")
    return CostModel(**raw)


@dataclass(frozen=True)
class Bands:
    """Routing bands on p_fraud, and the amount above which a person always looks."""

    auto_approve_max_p: float
    refer_siu_min_p: float
    auto_approve_max_amount: float

    def __post_init__(self) -> None:
        if not self.auto_approve_max_p <= self.refer_siu_min_p:
            raise ValueError(f"bands overlap: auto below {self.auto_approve_max_p} "
                             f"but refer from {self.refer_siu_min_p}")

    def as_dict(self) -> dict[str, float]:
        """The bands as a plain dict (for metadata and reports)."""
        return asdict(self)


def bands_from_policy(policy: Any) -> Bands:
    """The bands in force: the routing policy's constants (a `governance.policy.PolicySet`)."""
    c = policy.policies["routing"].constants
    return Bands(float(c["AUTO_APPROVE_MAX_P"]), float(c["REFER_SIU_MIN_P"]), float(c["AUTO_APPROVE_MAX_AMOUNT"]))


def route_with_bands(p_fraud: np.ndarray, amount: np.ndarray, bands: Bands) -> np.ndarray:
    """Routes under `bands` with routing.yaml's rule (missing p or amount: human review)."""
    p = np.asarray(p_fraud, dtype=float)
    a = np.asarray(amount, dtype=float)
    out = np.full(p.shape, REVIEW, dtype=object)
    with np.errstate(invalid="ignore"):
        auto = (p < bands.auto_approve_max_p) & (a <= bands.auto_approve_max_amount)
        siu = p >= bands.refer_siu_min_p
    out[auto & ~siu] = AUTO
    out[siu] = SIU
    out[np.isnan(p) | np.isnan(a)] = REVIEW  # routing.yaml's MISSING_ROUTE
    return out


def check_bands_match_policy(p_fraud: np.ndarray, amount: np.ndarray, policy: Any) -> Bands:
    """The policy's bands, after proving `route_with_bands` routes these claims exactly as the policy does."""
    bands = bands_from_policy(policy)
    ours = route_with_bands(p_fraud, amount, bands)
    theirs = np.asarray(policy.route(np.asarray(p_fraud, dtype=float), np.asarray(amount, dtype=float)), dtype=object)
    differ = int((ours != theirs).sum())
    if differ:
        raise ValueError(f"routing policy {policy.label} is not the band rule economics models "
                         f"({differ} claims routed differently); update models/economics.py")
    return bands


def route_costs(amount: np.ndarray, is_fraud: np.ndarray, costs: CostModel) -> np.ndarray:
    """Per claim, the cost of each route given its label: an (n, 3) array in `ROUTE_ORDER`."""
    amt = np.asarray(amount, dtype=float)
    y = np.asarray(is_fraud, dtype=float)
    loss = amt * costs.fraud_loss_share
    auto = costs.compute_per_decision + y * loss
    review = (costs.compute_per_decision + costs.review_minutes * costs.cost_per_minute
              + y * (1 - costs.review_catch_rate) * loss + (1 - y) * costs.honest_review_cost)
    siu = (costs.compute_per_decision + costs.siu_minutes * costs.cost_per_minute
           + y * (1 - costs.siu_catch_rate) * loss + (1 - y) * costs.honest_siu_cost)
    return np.stack([auto, review, siu], axis=1)


def operating_cost(routes: np.ndarray, costs: CostModel) -> np.ndarray:
    """Per claim, the cost of deciding it: compute plus the people's minutes its route takes."""
    r = np.asarray(routes, dtype=object)
    minutes = np.where(r == REVIEW, costs.review_minutes, np.where(r == SIU, costs.siu_minutes, 0.0))
    return costs.compute_per_decision + minutes * costs.cost_per_minute


def _route_index(routes: np.ndarray) -> np.ndarray:
    r = np.asarray(routes, dtype=object)
    return np.where(r == AUTO, 0, np.where(r == SIU, 2, 1))


def evaluate_routes(routes: np.ndarray, amount: np.ndarray, is_fraud: np.ndarray, costs: CostModel) -> dict[str, float]:
    """Rates, fraud caught, false-positive escalations and costs (total and per 1,000) of given routes."""
    r = np.asarray(routes, dtype=object)
    y = np.asarray(is_fraud, dtype=bool)
    n = len(r)
    per_claim = route_costs(amount, y, costs)[np.arange(n), _route_index(r)]
    ops = operating_cost(r, costs)
    escalated = r != AUTO
    frauds = int(y.sum())
    return {
        **routing_rates(r),
        "fraud_caught": float((escalated & y).sum() / frauds) if frauds else float("nan"),
        "false_positive_escalations": float((escalated & ~y).sum()),
        "expected_cost": float(per_claim.sum()),
        "cost_per_1k": float(1000 * per_claim.mean()) if n else float("nan"),
        "operating_cost_per_1k": float(1000 * ops.mean()) if n else float("nan"),
        "human_cost_per_1k": float(1000 * (ops - costs.compute_per_decision).mean()) if n else float("nan"),
        "compute_cost_per_1k": 1000 * costs.compute_per_decision,
    }


def threshold_curve(p_fraud: np.ndarray, amount: np.ndarray, is_fraud: np.ndarray, costs: CostModel,
                    auto_grid: tuple[float, ...] = AUTO_GRID, siu_grid: tuple[float, ...] = SIU_GRID,
                    max_amount: float = 15000.0) -> pd.DataFrame:
    """Automation rate, review/refer rates and expected cost for every pair of bands on the grid (auto ≤ refer).

    Rows come in grid order (auto band outer, refer band inner). Exact: each pair's cost is
    the sum of its claims' route costs, computed with prefix sums over claims sorted by p_fraud.
    """
    p = np.asarray(p_fraud, dtype=float)
    amt = np.asarray(amount, dtype=float)
    if np.isnan(p).any():
        raise ValueError("p_fraud has missing values; the curve needs a posterior for every claim")
    c = route_costs(amt, is_fraud, costs)
    eligible = amt <= max_amount
    order = np.argsort(p, kind="stable")
    ps = p[order]
    zero = np.zeros(1)
    # prefix sums over claims in p order: cost change when a claim moves from review to auto / to refer
    d_auto = np.concatenate([zero, np.cumsum(((c[:, 0] - c[:, 1]) * eligible)[order])])
    n_auto = np.concatenate([zero, np.cumsum(eligible[order].astype(float))])
    d_siu = np.concatenate([zero, np.cumsum((c[:, 2] - c[:, 1])[order])])
    base = float(c[:, 1].sum())
    n = len(p)
    rows = []
    for a in auto_grid:
        ia = int(np.searchsorted(ps, a, side="left"))  # claims with p < a
        for s in siu_grid:
            if a > s:
                continue
            js = int(np.searchsorted(ps, s, side="left"))  # claims with p < s; p >= s are referred
            cost = base + d_auto[ia] + (d_siu[n] - d_siu[js])
            auto_n = n_auto[ia]
            siu_n = n - js
            rows.append({"auto_approve_max_p": a, "refer_siu_min_p": s, "automation_rate": auto_n / n,
                         "review_rate": (n - auto_n - siu_n) / n, "siu_rate": siu_n / n,
                         "expected_cost": cost, "cost_per_1k": 1000 * cost / n})
    return pd.DataFrame(rows)


def recommend_bands(curve: pd.DataFrame, max_amount: float = 15000.0) -> Bands:
    """The bands of least expected cost on the curve (the first such pair in grid order)."""
    best = curve.iloc[int(np.argmin(curve["expected_cost"].to_numpy()))]
    return Bands(float(best["auto_approve_max_p"]), float(best["refer_siu_min_p"]), max_amount)


def escalate_top(rank: np.ndarray, forced: np.ndarray, budget: float) -> np.ndarray:
    """Escalation weight per claim when `budget` claims may go to people: `forced` ones first, then the
    highest `rank`; claims tied at the margin share the remaining places (fractional weights)."""
    rank = np.asarray(rank, dtype=float)
    forced = np.asarray(forced, dtype=bool)
    w = forced.astype(float)
    left = budget - w.sum()
    if left <= 0:
        return w
    idx = np.flatnonzero(~forced)
    vals = rank[idx]
    for v in np.unique(vals)[::-1]:
        group = idx[vals == v]
        take = min(1.0, left / len(group))
        w[group] = take
        left -= take * len(group)
        if left <= 1e-12:
            break
    return w


@dataclass(frozen=True)
class FusionComparison:
    """Bayesian fusion against classifier-only routing at the same review budget (escalations to people)."""

    bands: Bands
    budget: int                      # claims escalated (review or refer) by fusion under `bands`
    claims: int
    frauds: int
    fusion_fraud_caught: float       # frauds escalated
    fusion_false_positives: float    # honest claims escalated
    classifier_fraud_caught: float   # expected, ties at the margin shared
    classifier_false_positives: float

    @property
    def false_positive_change(self) -> float:
        """Relative change of false-positive escalations, fusion against classifier-only (−0.18 = 18% fewer)."""
        if self.classifier_false_positives == 0:
            return float("nan")
        return self.fusion_false_positives / self.classifier_false_positives - 1


def fusion_vs_classifier(p_fraud: np.ndarray, score: np.ndarray, amount: np.ndarray, is_fraud: np.ndarray,
                         bands: Bands) -> FusionComparison:
    """Escalate what fusion escalates under `bands`; let the classifier's score escalate as many claims
    (same amount rule), and count fraud caught and honest claims escalated by each."""
    y = np.asarray(is_fraud, dtype=bool)
    routes = route_with_bands(p_fraud, amount, bands)
    escalated = routes != AUTO
    budget = int(escalated.sum())
    forced = np.asarray(amount, dtype=float) > bands.auto_approve_max_amount
    w = escalate_top(score, forced, budget)
    return FusionComparison(
        bands=bands, budget=budget, claims=len(y), frauds=int(y.sum()),
        fusion_fraud_caught=float((escalated & y).sum()), fusion_false_positives=float((escalated & ~y).sum()),
        classifier_fraud_caught=float(w[y].sum()), classifier_false_positives=float(w[~y].sum()),
    )


def budget_curve(p_fraud: np.ndarray, score: np.ndarray, amount: np.ndarray, is_fraud: np.ndarray,
                 max_amount: float, shares: tuple[float, ...] = tuple(np.round(np.arange(0.02, 0.62, 0.02), 2))
                 ) -> pd.DataFrame:
    """Fraud caught and false positives for fusion and classifier-only ranking at each review budget share."""
    y = np.asarray(is_fraud, dtype=bool)
    forced = np.asarray(amount, dtype=float) > max_amount
    rows = []
    for share in shares:
        budget = share * len(y)
        wf = escalate_top(p_fraud, forced, budget)
        wc = escalate_top(score, forced, budget)
        rows.append({"budget_share": float(share), "fusion_fraud_caught": float(wf[y].sum() / max(y.sum(), 1)),
                     "classifier_fraud_caught": float(wc[y].sum() / max(y.sum(), 1)),
                     "fusion_false_positives": float(wf[~y].sum()), "classifier_false_positives": float(wc[~y].sum())})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ThresholdStudy:
    """The trade-off over a window: the cost curve, the bands in force and the recommended ones,
    and fusion against classifier-only routing at each of their review budgets."""

    curve: pd.DataFrame
    current: Bands
    current_eval: dict[str, float]
    recommended: Bands
    recommended_eval: dict[str, float]
    fusion_current: FusionComparison
    fusion_recommended: FusionComparison
    budget: pd.DataFrame
    costs: CostModel


def threshold_study(p_fraud: np.ndarray, score: np.ndarray, amount: np.ndarray, is_fraud: np.ndarray,
                    current: Bands, costs: CostModel, auto_grid: tuple[float, ...] = AUTO_GRID,
                    siu_grid: tuple[float, ...] = SIU_GRID) -> ThresholdStudy:
    """Curve, recommended bands (least expected cost on the grid) and the fusion comparison for labelled claims."""
    y = np.asarray(is_fraud, dtype=float)
    if np.isnan(y).any():
        raise ValueError("threshold economics needs labelled claims only (drop claims whose label has not arrived)")
    cap = current.auto_approve_max_amount
    curve = threshold_curve(p_fraud, amount, y, costs, auto_grid, siu_grid, cap)
    best = recommend_bands(curve, cap)
    return ThresholdStudy(
        curve=curve, current=current,
        current_eval=evaluate_routes(route_with_bands(p_fraud, amount, current), amount, y, costs),
        recommended=best, recommended_eval=evaluate_routes(route_with_bands(p_fraud, amount, best), amount, y, costs),
        fusion_current=fusion_vs_classifier(p_fraud, score, amount, y, current),
        fusion_recommended=fusion_vs_classifier(p_fraud, score, amount, y, best),
        budget=budget_curve(p_fraud, score, amount, y, cap), costs=costs,
    )
