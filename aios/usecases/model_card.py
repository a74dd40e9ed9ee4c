"""The model card and risk-classification notes, written from live metadata (MLflow, network, policy, ledger)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from aios.kernel.settings import Settings

RISK_NOTES = """\
## Risk classification notes

- **Use**: scoring insurance claims for fraud to route them to automatic payment, human review or
  investigators. The system never rejects a claim on its own: a claim that is not auto-approved goes to people.
- **EU AI Act**: AI used for risk assessment and pricing in life and health insurance, and for
  creditworthiness, is high-risk (Annex III, 5(b)–(c)); claims-fraud triage for other lines is not listed
  there, but touches natural persons' access to an essential service. We run it under the high-risk
  obligations by design: risk management, data governance (validated, quarantined inputs), logging
  (hash-chained audit ledger, `aios audit verify`), transparency to reviewers (rationale and uncertainty
  drivers on every case), human oversight (review band, four eyes above the threshold), accuracy and
  robustness monitoring (calibration, drift checks that block payouts).
- **Human oversight**: the routing bands and the four-eyes threshold are policy-as-code
  (`governance/policies/`); every decision records the policy version it ran under.
- **Known limits**: trained on generated data with a known generative process; fraud patterns absent
  from the training window are not learned; the Bayesian network's rule signals are coarse (yes/no);
  calibration is checked on a later holdout, not guaranteed on shifted populations (the drift check
  gates payouts for that reason).
"""


def model_card(settings: Settings) -> str:
    """The model card as Markdown, from the champion's MLflow run, the network in force and the policy set."""
    from mlflow import MlflowClient

    from governance.policy import load_policy_set
    from models.bayes import FraudNetwork
    from connectors.registry import resolve_alias

    ref = resolve_alias(settings.mlflow_uri, settings.model_name, "champion")
    run = MlflowClient(tracking_uri=settings.mlflow_uri).get_run(ref.run_id)
    metrics, params = run.data.metrics, run.data.params
    net_path = settings.network_path()
    net = FraudNetwork.load(net_path) if net_path.exists() else None
    policy = load_policy_set()
    lines = [
        f"# Model card: {ref.name} version {ref.version} (@champion)",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from the MLflow registry "
        f"(`{settings.mlflow_uri}`), run `{ref.run_id}`.",
        "",
        "## Intended use",
        "Calibrated probability that an insurance claim is fraudulent, fused with rule signals in a Bayesian "
        "network into `p_fraud` with a credible interval; the policy routes on it. Not for pricing, "
        "underwriting or any decision about a person outside claims handling.",
        "",
        "## Training data",
        f"- Window: {params.get('window_start', '?')} to {params.get('window_end', '?')} "
        f"(labels known as of {params.get('as_of', '?')}), time split: the latest 30% is the holdout.",
        f"- Rows: {metrics.get('train_rows', 0):,.0f} train, {metrics.get('holdout_rows', 0):,.0f} holdout; "
        f"fraud rate {metrics.get('fraud_rate', float('nan')):.2%}.",
        f"- Estimator: {params.get('estimator', '?')}.",
        "",
        "## Metrics (holdout, later than the training part)",
        "| metric | value |", "|---|---|",
        f"| AUC | {metrics.get('holdout_auc', float('nan')):.4f} |",
        f"| Brier score | {metrics.get('holdout_brier', float('nan')):.5f} |",
        f"| Expected calibration error (10 quantile bins) | {metrics.get('holdout_ece', float('nan')):.5f} |",
        "",
        "## Versions in force",
        f"- Classifier: `{ref.name}/{ref.version}`",
        f"- Bayesian network: `{net.version if net else 'none'}`"
        + (f" (fitted on {net.meta.get('rows', '?')} holdout claims)" if net else ""),
        f"- Policy set: `{policy.label}` — files: "
        + ", ".join(f"`{k}` {v}" for k, v in sorted(policy.versions.items())),
        "",
        RISK_NOTES,
    ]
    return "\n".join(lines)


def write_model_card(settings: Settings, out: Path | None = None) -> Path:
    """Write the model card to `out` (default `.aios/reports/model_card.md`)."""
    path = out or settings.home / "reports" / "model_card.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model_card(settings))
    return path
