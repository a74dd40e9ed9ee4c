"""One sensor per configured bus subscription: pull a bounded batch, land it durably, ack, request runs.

Landed claims are appended to the daily partition of their submission day (not a dynamic
partition per batch): decisions, review queue, payouts and backtests are all per day, a day
mixes inbox files and bus messages, and a partition re-run recomputes the whole day from
the landing store. Each tick's batch becomes one run request per day it touched, with
run_key `bus:<batch id>:<day>`, so a batch never makes two runs and never one per message.
"""

import os

import dagster as dg

from aios.kernel.bus_config import BusConfig, Subscription, load_bus_config
from aios.kernel.settings import Profile, get_settings
from aios_resources import StoresResource


def _default_status() -> dg.DefaultSensorStatus:
    wanted = os.environ.get("AIOS_BUS_SENSORS", "").strip().lower()
    if wanted == "running" or (not wanted and get_settings().profile is Profile.production):
        return dg.DefaultSensorStatus.RUNNING
    return dg.DefaultSensorStatus.STOPPED


def build_bus_sensor(sub: Subscription, bounds: BusConfig) -> dg.SensorDefinition:
    """The sensor landing `sub`'s messages into the daily partitions of claims_job."""

    @dg.sensor(name=f"bus_{sub.name}", job_name="claims_job", minimum_interval_seconds=15,
               default_status=_default_status(),
               description=f"Lands claims from {sub.kind} subscription {sub.name!r}: at most {bounds.max_messages} "
                           f"messages within {bounds.max_seconds:g} s per tick, persisted before they are acked.")
    def _bus_sensor(context: dg.SensorEvaluationContext, stores: StoresResource) -> dg.SensorResult:
        import time

        from aios.kernel.tracing import flush, record_claim_spans
        from connectors.bus import open_bus
        from connectors.landing import pull_and_land, read_batch

        t0 = time.time_ns()
        bus = open_bus(sub.kind, **sub.config)
        try:
            bus.ensure()
            result = pull_and_land(bus, stores.engine(), max_messages=bounds.max_messages,
                                   timeout_s=bounds.max_seconds)
        finally:
            bus.close()
        if result.empty:
            return dg.SensorResult(skip_reason=dg.SkipReason(f"no messages on {sub.name}"))
        context.log.info(f"batch {result.batch_id}: {result.messages} messages, {result.landed} landed, "
                         f"{result.duplicates} duplicates, {result.dead_lettered} dead-lettered")
        if result.landed:
            landed = read_batch(stores.engine(), result.batch_id)
            record_claim_spans("bus_sensor.land", landed["claim_id"], t0,
                               {"aios.batch": result.batch_id, "aios.subscription": sub.name})
            flush()
        requests = [
            dg.RunRequest(partition_key=day, run_key=f"bus:{result.batch_id}:{day}",
                          tags={"aios/source": f"bus:{sub.name}", "aios/batch": result.batch_id,
                                "aios/landed": str(n)})
            for day, n in sorted(result.partitions.items())
        ]
        if not requests:
            return dg.SensorResult(skip_reason=dg.SkipReason(
                f"batch {result.batch_id}: nothing new ({result.duplicates} duplicates, "
                f"{result.dead_lettered} dead-lettered)"))
        return dg.SensorResult(run_requests=requests)

    return _bus_sensor


def bus_sensors(config: BusConfig | None = None) -> list[dg.SensorDefinition]:
    """A sensor for each subscription in config/bus.yaml."""
    cfg = config or load_bus_config()
    return [build_bus_sensor(s, cfg) for s in cfg.subscriptions]
