"""The payout dispatch sensor: while payout intents wait for the rail, a dispatch run is requested.

Whether a dispatch is needed is read from the outbox (durable state), not from what a run saw: an
intent left behind by a crashed run, a rail outage or a bank whose verdict arrives late is picked up by
the next tick. The run key names the outbox's state and a five-minute window, so an unchanged outbox
launches at most one run per window, and a changed one launches at once.
"""

import time

import dagster as dg

from aios_resources import StoresResource

RETRY_WINDOW_SECONDS = 300


@dg.sensor(job_name="payout_dispatch_job", minimum_interval_seconds=60,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Requests a payout dispatch run while intents wait for the payment rail.")
def payout_dispatch_sensor(context: dg.SensorEvaluationContext, stores: StoresResource) -> dg.SensorResult:
    """A dispatch run while intents wait (new, claimed, or sent without a verdict yet)."""
    from connectors.rails.outbox import unsettled

    waiting = unsettled(stores.engine())
    if not any(waiting.values()):
        return dg.SensorResult(skip_reason="no payout intent waits for the rail")
    state = "-".join(f"{k}{v}" for k, v in sorted(waiting.items()))
    window = int(time.time()) // RETRY_WINDOW_SECONDS
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"payout-dispatch:{state}:{window}",
                                                       tags={"aios/source": "outbox"})])
