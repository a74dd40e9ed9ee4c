"""The human pause's far side: claims approved by reviewers are paid, once, per partition.

Dagster has no native human pause (DESIGN.md). Reviewers work the queue in the review UI, which
records their decisions in the review store; `sensors.review.review_sensor` turns approvals into
runs of `review_payouts_job` for their partitions. The asset pays every approved, unpaid case of
its partition through the idempotent payout connector (which refuses partitions whose gates did
not pass), checks each against the payout policy once more (four eyes included), and closes the
cases it paid.
"""

import dagster as dg

from aios_assets.partitions import daily_partitions
from aios_resources import PayoutResource, PolicyResource, StoresResource

GROUP = "review"
REVIEW_PAYOUT_REASON = "review_approved"


@dg.asset(partitions_def=daily_partitions, group_name=GROUP, kinds={"sqlalchemy"}, deps=["review_queue"],
          description="Claims approved by reviewers (four eyes above the policy's amount) paid once each through "
                      "the idempotent payout connector; refused when the partition's gates did not pass.")
def review_payouts(context: dg.AssetExecutionContext, stores: StoresResource, payout: PayoutResource,
                   policy: PolicyResource) -> dg.MaterializeResult:
    """Pay the partition's approved, unpaid review cases once each and close them."""
    from connectors.stores.audit import record_settlements
    from connectors.stores.reviews import PAID, PAYOUT_REFUSED, approved_cases, close_approved, ensure_review_tables, waiting_counts
    from connectors.payout import PayoutInstruction, PayoutRefused

    partition = context.partition_key
    engine = stores.engine()
    ensure_review_tables(engine)
    pol = policy.load()
    payable, refused = [], {}
    for case in approved_cases(engine, partition):
        verdict = pol.may_pay(case["amount"], "human_review", case["approvals"], currency=case["currency"])
        if verdict:
            payable.append(case)
        else:
            refused[case["claim_id"]] = verdict.rule
    instructions = [PayoutInstruction(c["claim_id"], partition, float(c["amount"]), str(c["currency"]),
                                      reason=REVIEW_PAYOUT_REASON) for c in payable]
    paid = already = 0
    amount_paid = 0.0
    if instructions:
        connector = payout.connector()
        try:
            report = connector.pay(partition, instructions)
        except PayoutRefused as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        record_settlements(engine, report.settled, trace_id=context.run_id)
        wanted = {i.claim_id for i in instructions}
        in_ledger = {r["claim_id"] for r in connector.paid_claims(partition)} & wanted
        close_approved(engine, in_ledger, PAID)
        paid, already, amount_paid = report.paid, report.already_paid, report.amount_paid
    if refused:
        close_approved(engine, refused, PAYOUT_REFUSED)
        context.log.warning(f"payout policy refused {len(refused)} approved claim(s): {refused}")
    counts = waiting_counts(engine, [partition])[partition]
    return dg.MaterializeResult(metadata={
        "paid": paid, "already_paid": already,
        "amount_paid": dg.MetadataValue.float(round(amount_paid, 2)),
        "refused_by_policy": dg.MetadataValue.json(refused),
        "waiting_for_people": dg.MetadataValue.int(counts["waiting"]),
    })


review_payouts_job = dg.define_asset_job(
    "review_payouts_job", selection=dg.AssetSelection.assets(review_payouts), partitions_def=daily_partitions,
    description="Pay the claims reviewers approved in one partition (launched by the review sensor).",
)
