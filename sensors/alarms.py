"""The alarm sensor: fires when a partition drifts or its human override rate moves more than the SLO allows.

Each tick reads the drift gate evaluations recorded since its cursor and the override counts
of partitions whose reviews changed. A breach is logged, recorded once in the alarm store,
and answered with a run of `slo_job` for the partition (run_key = the alarm's key, so one
breach launches one run); no breach gives a SkipReason saying what was looked at.
"""

import json

import dagster as dg

from aios_resources import StoresResource

# Partitions whose review counts the cursor remembers (a year of days and then some).
CURSOR_PARTITIONS = 400


def _cursor(raw: str | None) -> dict:
    cur = json.loads(raw) if raw else {}
    return {"gate_id": int(cur.get("gate_id", 0)), "reviewed": dict(cur.get("reviewed", {}))}


@dg.sensor(job_name="slo_job", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Raises an alarm (log, alarm row, slo_job run) when a partition's features drift or its "
                       "human override rate moves more than config/slo.yaml allows.")
def alarm_sensor(context: dg.SensorEvaluationContext, stores: StoresResource) -> dg.SensorResult:
    """One slo_job run per new drift or override-rate breach of a partition; else a SkipReason."""
    from connectors.stores.alarms import drift_gates_after, record_alarm, review_outcomes
    from models.slo import drift_alarm, load_slo, override_alarm, override_change, override_counts

    slo = load_slo()
    cursor = _cursor(context.cursor)
    engine = stores.engine()
    alarms = []
    gates = drift_gates_after(engine, cursor["gate_id"])
    for row in gates.itertuples(index=False):
        alarm = drift_alarm(str(row.partition), bool(row.passed), str(row.detail), slo)
        if alarm:
            alarms.append(alarm)
    if len(gates):
        cursor["gate_id"] = int(gates["id"].max())
    counts = override_counts(review_outcomes(engine))
    changed = [p for p, n in zip(counts["partition"], counts["reviewed"]) if cursor["reviewed"].get(p) != int(n)]
    for part in changed:
        alarm = override_alarm(override_change(counts, part, slo), slo)
        if alarm:
            alarms.append(alarm)
    cursor["reviewed"].update({p: int(n) for p, n in zip(counts["partition"], counts["reviewed"]) if p in changed})
    cursor["reviewed"] = dict(sorted(cursor["reviewed"].items())[-CURSOR_PARTITIONS:])

    requests = []
    for alarm in alarms:
        context.log.warning(f"ALARM {alarm.kind} on {alarm.partition}: {alarm.reason}")
        if record_alarm(engine, alarm):
            requests.append(dg.RunRequest(partition_key=alarm.partition, run_key=f"alarm:{alarm.key}",
                                          tags={"aios/alarm": alarm.kind, "aios/alarm_reason": alarm.reason[:250]}))
    new_cursor = json.dumps(cursor)
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=new_cursor)
    why = (f"{len(alarms)} alarm(s) already raised" if alarms else
           f"no alarm: {len(gates)} new drift evaluation(s) and {len(changed)} partition(s) with new reviews "
           f"within SLO (drift share < {slo.drift.share_max}, override change ≤ {slo.override_rate.max_change})")
    return dg.SensorResult(skip_reason=dg.SkipReason(why), cursor=new_cursor)
