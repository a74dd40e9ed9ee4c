"""The review sensor: the human pause. Approvals recorded by reviewers become payout runs.

Each tick it
- requests one `review_payouts_job` run per partition that holds approved, unpaid cases; the run key
  names the partition and its latest approval, so a batch of approvals launches one run, the same
  batch never launches twice, and a later approval in the partition launches a new run that also
  sweeps up anything an earlier (failed) run left;
- reports, as an observation of `review_queue`, how many claims of each partition touched by review
  actions since its cursor still wait for people, so the Dagster UI shows it per partition.

The cursor is the id of the last review action seen. Payment itself is idempotent per claim, so a
repeated approval or a repeated run pays nothing twice.
"""

import json

import dagster as dg

from aios_assets.partitions import daily_partitions

from aios_resources import StoresResource

MAX_ACTIONS_PER_TICK = 10_000


@dg.sensor(job_name="review_payouts_job", minimum_interval_seconds=30,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Turns reviewer approvals into payout runs per partition; reports claims still waiting.")
def review_sensor(context: dg.SensorEvaluationContext, stores: StoresResource) -> dg.SensorResult:
    """Payout runs for partitions with approved, unpaid cases; observations of what still waits."""
    from connectors.stores.reviews import actions_since, approved_partitions, ensure_review_tables, waiting_counts

    engine = stores.engine()
    ensure_review_tables(engine)
    last = int(json.loads(context.cursor).get("last_action_id", 0)) if context.cursor else 0
    actions = actions_since(engine, last, limit=MAX_ACTIONS_PER_TICK)
    touched = {partition for _, partition in actions}
    # Only days of the daily partitions can be paid by review_payouts_job (it needs their gates); cases the
    # sync API opened in its own `api-…` partitions wait (unpaid, visible in the UI) instead of failing the tick.
    pending = {p: n for p, n in approved_partitions(engine).items() if daily_partitions.has_partition_key(p)}
    touched = {p for p in touched if daily_partitions.has_partition_key(p)}
    requests = [dg.RunRequest(partition_key=p, run_key=f"review-payouts:{p}:{latest}",
                              tags={"aios/source": "review", "aios/latest_approval": str(latest)})
                for p, latest in sorted(pending.items())]
    events = [dg.AssetObservation(asset_key="review_queue", partition=p, metadata={
        "waiting_for_people": dg.MetadataValue.int(c["waiting"]),
        "escalated": dg.MetadataValue.int(c["escalated"]),
        "awaiting_second_approval": dg.MetadataValue.int(c["awaiting_second"]),
        "approved_unpaid": dg.MetadataValue.int(c["approved_unpaid"]),
    }) for p, c in sorted(waiting_counts(engine, touched).items())]
    cursor = json.dumps({"last_action_id": max((i for i, _ in actions), default=last)})
    if not requests and not events:
        return dg.SensorResult(skip_reason="no review actions since the last tick and nothing approved to pay",
                               cursor=cursor)
    return dg.SensorResult(run_requests=requests, asset_events=events, cursor=cursor)
