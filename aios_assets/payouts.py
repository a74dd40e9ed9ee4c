"""The payout dispatcher as an asset: delivers waiting payout intents to the payment rail and collects its
verdicts (e.g. a bank's pain.002 that arrived after the batch was sent), across all partitions.

Intents are written by the decisions and approvals that cause them (transactional outbox); the `payouts`
and `review_payouts` assets dispatch their own partition's right away. This asset, launched by
`sensors.payouts.payout_dispatch_sensor` whenever intents wait, is what finishes the job after a crash,
a rail outage or a slow bank. The dispatcher refuses intents of partitions whose gates did not pass,
whichever run asks.
"""

import dagster as dg

from aios_resources import PayoutResource, StoresResource

GROUP = "payouts"


@dg.asset(group_name=GROUP, kinds={"sqlalchemy"},
          description="Waiting payout intents delivered to the payment rail once each; the rail's verdicts "
                      "recorded and audited; intents of partitions whose gates did not pass refused.")
def payout_dispatch(context: dg.AssetExecutionContext, stores: StoresResource,
                    payout: PayoutResource) -> dg.MaterializeResult:
    """Deliver every waiting intent, collect late verdicts, audit each settlement."""
    from connectors.rails.outbox import unsettled
    from connectors.stores.audit import record_settlements

    engine = stores.engine()
    report = payout.connector().dispatch()
    record_settlements(engine, report.settled, trace_id=context.run_id)
    for part, reasons in sorted(report.refused.items()):
        context.log.warning(f"payouts of {part} refused: {'; '.join(reasons)}")
    return dg.MaterializeResult(metadata={
        "batches_sent": len(report.batches), "payments_sent": report.sent,
        "acknowledged": len(report.acknowledged), "rejected": len(report.rejected),
        "refused_partitions": dg.MetadataValue.json({k: list(v) for k, v in report.refused.items()}),
        "still_waiting": dg.MetadataValue.json(unsettled(engine)),
    })


payout_dispatch_job = dg.define_asset_job(
    "payout_dispatch_job", selection=dg.AssetSelection.assets(payout_dispatch),
    description="Deliver waiting payout intents and collect the rail's verdicts (launched by the dispatch sensor).",
)
