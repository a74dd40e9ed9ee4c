"""The alarm sensor: fires when a partition drifts or its human override rate moves more than the SLO allows.

`aios.usecases.alarms.check_alarms` reads what was recorded since the cursor and stores each breach
once; the sensor logs the breaches and answers each new one with a run of `slo_job` for the
partition (run_key = the alarm's key, so one breach launches one run); no new breach gives a
SkipReason saying what was looked at.
"""

import dagster as dg

from aios_resources import StoresResource


@dg.sensor(job_name="slo_job", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Raises an alarm (log, alarm row, slo_job run) when a partition's features drift or its "
                       "human override rate moves more than config/slo.yaml allows.")
def alarm_sensor(context: dg.SensorEvaluationContext, stores: StoresResource) -> dg.SensorResult:
    """One slo_job run per new drift or override-rate breach of a partition; else a SkipReason."""
    from aios.usecases.alarms import AlarmCursor, check_alarms
    from models.slo import load_slo

    slo = load_slo()
    tick = check_alarms(stores.engine(), AlarmCursor.parse(context.cursor), slo)
    for alarm in tick.raised:
        context.log.warning(f"ALARM {alarm.kind} on {alarm.partition}: {alarm.reason}")
    requests = [dg.RunRequest(partition_key=a.partition, run_key=f"alarm:{a.key}",
                              tags={"aios/alarm": a.kind, "aios/alarm_reason": a.reason[:250]}) for a in tick.new]
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=tick.cursor.dump())
    why = (f"{tick.repeated} alarm(s) already raised" if tick.repeated else
           f"no alarm: {tick.gates} new drift evaluation(s) and {len(tick.reviewed_partitions)} partition(s) with "
           f"new reviews within SLO (drift share < {slo.drift.share_max}, override change ≤ "
           f"{slo.override_rate.max_change})")
    return dg.SensorResult(skip_reason=dg.SkipReason(why), cursor=tick.cursor.dump())
