"""The modular-fusion study as an asset: the same table as `aios evaluate fusion`, with plots, in the UI.

The work is in models/fusion_study.py (pure); this asset runs it with the routing policy in force
(PolicyResource) and attaches the headline table per regime, the check of the seed's -18% claim and two
plots: the false-positive change at a 5% budget per method and regime, and fraud caught by review budget.
"""


import io

import dagster as dg
import numpy as np
import pandas as pd

from aios_assets.metadata import image
from aios_resources import PolicyResource

GROUP = "evaluation"


class FusionStudyConfig(dg.Config):
    """Seeds (worlds) to run; `quick` runs small worlds and N up to 200 (about a minute)."""

    seeds: int = 10
    quick: bool = False


def _png(fig) -> bytes:  # noqa: ANN001 (a matplotlib Figure)
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def fp_change_plot(summary: pd.DataFrame, key: str = "fp_change@5%") -> bytes:
    """Per regime, each method's FP change against B0 with its 95% interval over seeds (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = list(dict.fromkeys(summary["regime"]))
    methods = [m for m in dict.fromkeys(summary["method"]) if m != "B0"]
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(regimes)), 4.5))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        g = summary[summary["method"] == m].set_index("regime").reindex(regimes)
        x = np.arange(len(regimes)) + (i - len(methods) / 2) * width
        err = np.vstack([g[key] - g[f"{key}_lo"], g[f"{key}_hi"] - g[key]]).clip(min=0)
        ax.bar(x, 100 * g[key], width, yerr=100 * err, label=m, capsize=2)
    ax.axhline(-18, color="red", linestyle="--", linewidth=1, label="seed's claim (-18%)")
    ax.set_xticks(np.arange(len(regimes)), regimes, rotation=20)
    ax.set_ylabel("false positives vs B0 (%)")
    ax.set_title(f"{key}: change against the classifier alone (95% interval over seeds)")
    ax.legend(ncol=5, fontsize=7)
    return _png(fig)


def caught_by_budget_plot(summary: pd.DataFrame, regime: str, budgets: tuple[float, ...]) -> bytes:
    """Fraud caught at each review budget in one regime, one line per method (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    g = summary[summary["regime"] == regime]
    for _, r in g.iterrows():
        ax.plot([100 * b for b in budgets], [100 * r[f"caught@{b:.0%}"] for b in budgets], "o-", label=r["method"])
    ax.set_xlabel("review budget (% of claims)")
    ax.set_ylabel("fraud caught (%)")
    ax.set_title(f"fraud caught by budget, {regime}")
    ax.legend(fontsize=7)
    return _png(fig)


@dg.asset(group_name=GROUP, kinds={"pandas"},
          description="B0-B6, the Bayesian network and the oracle on synthetic worlds with separate signal "
                      "systems: false positives and fraud caught at 2/5/10/12% budgets and at the policy's "
                      "bands, cost, log-loss, ECE, per regime (N labels after go-live, outage, MNAR documents).")
def fusion_study(context: dg.AssetExecutionContext, config: FusionStudyConfig,
                 policy: PolicyResource) -> dg.MaterializeResult:
    """Run the fusion study and attach its tables and plots."""
    from models.economics import bands_from_policy
    from models.fusion_study import (PRIMARY, StudyConfig, headline, markdown, quick_config, run_study,
                                     seed_claim_check, study_inputs)

    cfg = quick_config(config.seeds) if config.quick else StudyConfig(seeds=tuple(range(config.seeds)))
    specs, fusion, _, costs = study_inputs()
    bands = bands_from_policy(policy.load())
    result = run_study(cfg, specs, fusion, bands, costs,
                       progress=lambda s, r: context.log.info(f"fusion study: seed {s}, {r}"))
    head = headline(result.summary)
    meta: dict = {"primary_metric": PRIMARY, "seeds": len(cfg.seeds), "bands": dg.MetadataValue.json(result.bands),
                  "seed_claim": dg.MetadataValue.md(markdown(seed_claim_check(result.summary, cfg.budgets))),
                  "fp_change_at_5pct": image(fp_change_plot(result.summary), "FP change at 5%"),
                  "fp_change_at_policy": image(fp_change_plot(result.summary, "fp_change@policy"), "FP change at bands")}
    for regime in head["regime"].unique():
        meta[f"table {regime}"] = dg.MetadataValue.md(markdown(head[head["regime"] == regime].drop(columns=["regime"])))
    first_labelled = next((r.name for r in cfg.regimes if r.labelled_frauds and not r.outage and not r.mnar),
                          cfg.regimes[0].name)
    meta["caught_by_budget"] = image(caught_by_budget_plot(result.summary, first_labelled, cfg.budgets),
                                     "fraud caught by budget")
    return dg.MaterializeResult(metadata=meta)
