"""The daily claims pipeline: raw → validated (+ quarantined) → documents → features → scores →
posteriors → decisions → review queue and payouts."""


import time

import dagster as dg
import pandas as pd

from aios_assets.executors import HEAVY
from aios_assets.checks import DATA_QUALITY, DRIFT, data_quality_result, drift_result
from aios_assets.metadata import counts_table, image
from aios_assets.partitions import daily_partitions
from aios_resources import (
    DocumentStoreResource,
    InboxResource,
    ModelRegistryResource,
    PayoutResource,
    PolicyResource,
    StoresResource,
)

GROUP = "claims"


def _spans(context: dg.AssetExecutionContext, stage: str, claim_ids, started_ns: int,
           per_claim: dict | None = None) -> None:
    from aios.kernel.tracing import record_claim_spans

    record_claim_spans(stage, [c for c in claim_ids if isinstance(c, str) and c], started_ns,
                       {"aios.partition": context.partition_key, "dagster.run_id": context.run_id}, per_claim)


def _gate_condition() -> dg.AutomationCondition:
    # A late pass of the gates (e.g. after a re-run) must still trigger payouts; eager() alone would not.
    gate = dg.AutomationCondition.all_deps_blocking_checks_passed()
    return (dg.AutomationCondition.eager() | gate.newly_true()) & gate & ~dg.AutomationCondition.in_progress()


@dg.asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"pandas"},
          description="Every claim row landed for the day, values as submitted: inbox files (inbox sensor) "
                      "and bus messages (bus sensors, landing store).")
def raw_claims(context: dg.AssetExecutionContext, inbox: InboxResource,
               stores: StoresResource) -> dg.Output[pd.DataFrame]:
    """The day's landed claim rows as submitted (inbox files and bus messages)."""
    from connectors.stores.audit import record_ingest
    from connectors.inbox import read_landed_day
    from connectors.landing import read_partition

    t0 = time.time_ns()
    frames, files, refused = read_landed_day(inbox.landing_dir(context.partition_key), inbox.settings.rejected_dir)
    for name, reason in refused.items():
        context.log.warning(f"landed file {name} cannot be read and was moved to the rejected folder: {reason}")
    engine = stores.engine()
    bus = read_partition(engine, context.partition_key, with_meta=True)
    if len(bus):
        bus["_source"] = "bus:" + bus["source"] + ":" + bus["batch_id"]
        frames.append(bus.drop(columns=["message_id", "source", "batch_id", "partition", "landed_at"]))
    raw = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"_source": []})
    n_files = sum(len(f) for f in frames[:len(files)])
    if n_files:  # bus rows were registered when they landed; file rows register here (idempotent)
        from connectors.landing import dedupe_across_ingress

        file_rows, duplicates = dedupe_across_ingress(engine, raw.iloc[:n_files].reset_index(drop=True),
                                                      context.partition_key)
        raw = pd.concat([file_rows, raw.iloc[n_files:]], ignore_index=True)
    else:
        duplicates = 0
    sources = files + sorted(set(bus["_source"])) if len(bus) else list(files)
    record_ingest(engine, context.partition_key, "inbox+bus", len(raw), sources, trace_id=context.run_id)
    _spans(context, "ingest", raw["claim_id"] if "claim_id" in raw else [], t0)
    return dg.Output(raw, metadata={"rows": len(raw), "bus_rows": len(bus), "files": dg.MetadataValue.json(files),
                                    "duplicates_across_ingress": duplicates,
                                    "files_rejected": dg.MetadataValue.json(refused)})


@dg.multi_asset(
    partitions_def=daily_partitions, group_name=GROUP,
    outs={
        "validated_claims": dg.AssetOut(kinds={"great_expectations"},
                                        description="Claims that pass the claim contract and the business rules."),
        "quarantined_claims": dg.AssetOut(kinds={"pandas"},
                                          description="Rows that failed, each with every reason; never dropped."),
    },
    check_specs=[DATA_QUALITY],
)
def validate(context: dg.AssetExecutionContext, raw_claims: pd.DataFrame, stores: StoresResource):
    """Validated and quarantined claims, and the data-quality check."""
    import sqlalchemy as sa

    from connectors.stores.audit import record_validation
    from connectors.stores.decisions import decisions_table, save_quarantine
    from models.validation import validate_claims

    t0 = time.time_ns()
    engine = stores.engine()
    with engine.connect() as conn:
        seen = set(conn.execute(sa.select(decisions_table.c.claim_id).where(
            decisions_table.c.partition != context.partition_key)).scalars())
    result = validate_claims(raw_claims, source=context.partition_key, seen_claim_ids=seen)
    save_quarantine(engine, context.partition_key, result.quarantined)
    record_validation(engine, context.partition_key, result.valid["claim_id"], result.quarantined,
                      trace_id=context.run_id)
    _spans(context, "validate", result.valid["claim_id"], t0)
    _spans(context, "quarantine", result.quarantined["claim_id"], t0,
           {c: {"aios.reasons": "; ".join(r)} for c, r in zip(result.quarantined["claim_id"], result.quarantined["reasons"])
            if isinstance(c, str)})
    reasons = pd.Series([r.split(":")[0] for rs in result.quarantined["reasons"] for r in rs]).value_counts()
    yield dg.Output(result.valid, output_name="validated_claims", metadata={"rows": len(result.valid)})
    yield dg.Output(result.quarantined, output_name="quarantined_claims", metadata={
        "rows": len(result.quarantined),
        "share": dg.MetadataValue.float(len(result.quarantined) / max(len(raw_claims), 1)),
        "reasons_by_field": counts_table({k: int(v) for k, v in reasons.items()}),
    })
    yield data_quality_result(context.partition_key, len(result.valid), len(result.quarantined), stores)


@dg.asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"pandas"}, op_tags=HEAVY,
          description="The readable documents of each validated claim (text layer), from the document store.")
def claim_documents(validated_claims: pd.DataFrame, documents: DocumentStoreResource) -> dg.Output[pd.DataFrame]:
    """The readable documents of the day's validated claims."""
    docs = documents.store().fetch(validated_claims)
    refs = int(validated_claims["document_refs"].apply(len).sum()) if len(validated_claims) else 0
    return dg.Output(docs, metadata={"documents_read": len(docs), "documents_referenced": refs})


@dg.asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"pandas"}, check_specs=[DRIFT],
          description="Model features per claim (amount vs policy history, delay, velocity, documents, text); "
                      "checked for drift against the training reference.")
def claim_features(context: dg.AssetExecutionContext, validated_claims: pd.DataFrame,
                   claim_documents: pd.DataFrame, drift_reference: pd.DataFrame, inbox: InboxResource,
                   stores: StoresResource):
    """Model features per claim, and the drift check."""
    from aios.usecases.decide_and_record import freeze_features
    from models.features import build_features, feature_version

    t0 = time.time_ns()
    features = build_features(validated_claims, claim_documents, inbox.policies())
    freeze_features(stores.engine(), features)
    _spans(context, "features", features.index, t0)
    yield dg.Output(features, metadata={
        "rows": len(features), "feature_version": feature_version(),
        "doc_mismatch_unobserved": int(features["doc_amount_mismatch"].isna().sum()),
        "preview": dg.MetadataValue.md(features.head(5).to_markdown()),
    })
    yield drift_result(context.partition_key, features, drift_reference, stores)


@dg.asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"sklearn", "mlflow"},
          deps=["fraud_model"],
          description="Calibrated fraud score per claim from the MLflow @champion, with the version used.")
def fraud_scores(context: dg.AssetExecutionContext, claim_features: pd.DataFrame,
                 registry: ModelRegistryResource) -> dg.Output[pd.DataFrame]:
    """Calibrated fraud score per claim from the MLflow @champion."""
    from models.decision import score_claims

    t0 = time.time_ns()
    model, version = registry.load_champion()
    scores = score_claims(claim_features, model)
    scores["classifier_version"] = f"{registry.model_name}/{version}"
    _spans(context, "score", scores.index, t0,
           {c: {"aios.score": float(v), "aios.model": f"{registry.model_name}/{version}"}
            for c, v in scores["score"].items()})
    return dg.Output(scores, metadata={"model": f"{registry.model_name}/{version}",
                                       "mean_score": dg.MetadataValue.float(float(scores["score"].mean()))
                                       if len(scores) else 0.0})


@dg.asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"pgmpy"}, deps=["bayes_network"],
          description="Exact posterior p_fraud with credible interval and value of information per claim.")
def fraud_posteriors(context: dg.AssetExecutionContext, claim_features: pd.DataFrame, fraud_scores: pd.DataFrame,
                     registry: ModelRegistryResource) -> dg.Output[pd.DataFrame]:
    """Posterior p_fraud per claim with credible interval and value of information."""
    from aios.usecases.plots import histogram_plot
    from models.decision import posterior_claims
    from models.fusion import compile_network

    t0 = time.time_ns()
    net = registry.current_network()
    post = posterior_claims(claim_features, fraud_scores, compile_network(net))
    post["bayes_net_version"] = net.version
    _spans(context, "posterior", post.index, t0, {c: {"aios.p_fraud": float(v)} for c, v in post["p_fraud"].items()})
    meta = {"bayes_net": net.version}
    if len(post):
        meta["posterior_histogram"] = image(histogram_plot(post["p_fraud"].to_numpy(), "p_fraud", "posterior"))
    return dg.Output(post, metadata=meta)


@dg.asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"python"},
          description="Routed decisions with the full decision contract, stored in the decision store.")
def decisions(context: dg.AssetExecutionContext, claim_features: pd.DataFrame, fraud_scores: pd.DataFrame,
              fraud_posteriors: pd.DataFrame, validated_claims: pd.DataFrame, policy: PolicyResource,
              stores: StoresResource) -> dg.Output[pd.DataFrame]:
    """The day's routed decisions, stored in the decision store."""
    from aios.usecases.decide_and_record import record_decisions, route_scored
    from connectors.stores.audit import PIPELINE_ACTOR
    from models.routes import AUTO, REVIEW, SIU, route_counts, routing_rates

    t0 = time.time_ns()
    pol = policy.load()
    out, versions = route_scored(claim_features, fraud_scores, fraud_posteriors, pol,
                                 validated_claims.set_index("claim_id")["currency"])
    record_decisions(stores.engine(), context.partition_key, out, pol, PIPELINE_ACTOR, replace_partition=True,
                     trace_id=context.run_id)
    if len(out):
        _spans(context, "decision", out["claim_id"], t0,
               {c: {"aios.route": r, "aios.policy": pol.label} for c, r in zip(out["claim_id"], out["route"])})
    counts = route_counts(out["route"])
    return dg.Output(out, metadata={**{k: dg.MetadataValue.int(counts[k]) for k in (AUTO, REVIEW, SIU)},
                                    "automation_rate": dg.MetadataValue.float(
                                        routing_rates(out["route"], empty=0.0)["automation_rate"]),
                                    "versions": dg.MetadataValue.json(versions)})


@dg.asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"sqlalchemy"},
          description="Claims in the ambiguous band, opened as review cases with an SLA.")
def review_queue(context: dg.AssetExecutionContext, decisions: pd.DataFrame,
                 stores: StoresResource) -> dg.MaterializeResult:
    """Review cases opened for the day's ambiguous claims."""
    import sqlalchemy as sa

    from aios.usecases.decide_and_record import open_review_cases
    from connectors.stores.decisions import review_cases

    engine = stores.engine()
    new = open_review_cases(engine, context.partition_key, decisions)
    with engine.connect() as conn:
        waiting = conn.execute(sa.select(sa.func.count()).select_from(review_cases).where(
            (review_cases.c.partition == context.partition_key) & (review_cases.c.status == "open"))).scalar_one()
    return dg.MaterializeResult(metadata={"new_cases": new, "waiting_for_people": dg.MetadataValue.int(waiting)})


@dg.asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"sqlalchemy"},
          deps=["validated_claims", "claim_features"], automation_condition=_gate_condition(),
          description="Auto-approved claims paid once each through the idempotent payout connector; "
                      "refused when the partition's data-quality or drift gate did not pass.")
def payouts(context: dg.AssetExecutionContext, decisions: pd.DataFrame, payout: PayoutResource,
            stores: StoresResource) -> dg.MaterializeResult:
    """The day's auto-approved claims, paid once each; refused when a gate did not pass."""
    from connectors.stores.audit import record_settlements
    from connectors.payout import PayoutInstruction, PayoutRefused

    from aios.kernel.tracing import flush

    import sqlalchemy as sa

    from aios.kernel.contracts import Route
    from connectors.stores.decisions import review_cases

    t0 = time.time_ns()
    # A claim that was ever put before people is paid only through review (a re-run that now
    # routes it to auto_approve must not overrule a reviewer's rejection).
    with stores.engine().connect() as conn:
        reviewed = set(conn.execute(sa.select(review_cases.c.claim_id).where(
            review_cases.c.claim_id.in_(list(decisions["claim_id"])))).scalars()) if len(decisions) else set()
    approved = decisions[(decisions["route"] == Route.auto_approve.value) & ~decisions["claim_id"].isin(reviewed)]
    instructions = [PayoutInstruction(r["claim_id"], context.partition_key, float(r["amount"]), str(r["currency"]))
                    for r in approved.to_dict("records")]
    try:
        report = payout.connector().pay(context.partition_key, instructions)
    except PayoutRefused as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    record_settlements(stores.engine(), report.settled, trace_id=context.run_id)
    _spans(context, "payout", report.receipts, t0, {c: {"aios.receipt": r} for c, r in report.receipts.items()})
    flush()
    return dg.MaterializeResult(metadata={
        "paid": report.paid, "already_paid": report.already_paid, "pending": report.pending,
        "rejected": report.rejected, "amount_paid": dg.MetadataValue.float(round(report.amount_paid, 2)),
        "receipts": dg.MetadataValue.json(dict(list(report.receipts.items())[:20])),
    })

