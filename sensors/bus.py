"""The reconciliation sensor: turns landed-but-undecided claims into claims_job runs, from durable state.

Landing is not done here: `aios land` (one long-running consumer per subscription) persists
bus messages and acks them at the broker's speed. This sensor reads the stores only:
every day with registered claims (bus, inbox or API, `claim_identities`) that are neither
decided nor quarantined gets a run whose `run_key` is derived from that content (the
day, its newest registration and the count). So:

- a crash anywhere between land, ack and run request loses no day: the next tick sees the
  same undecided claims and requests the run (Dagster drops a run_key it already launched);
- the same content never gets two runs; new claims landing for the day give a new key;
- a day with a run queued is skipped (the run reads the whole day when it starts), and a
  day whose started run already covers the newest registration is skipped too. At most one
  run per day executes at a time through the run queue's per-partition tag limit
  (dagster.yaml, `aios db prepare`).

A failed run leaves its claims undecided under the same key: it is not retried in a loop;
re-run the day from the UI or `aios run-partition DAY` after fixing the cause.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import dagster as dg

from aios.kernel.settings import Profile, get_settings
from aios_assets.partitions import daily_partitions
from aios_resources import StoresResource

SENSOR_NAME = "landed_claims_sensor"
COVERS_TAG = "aios/landed_seq"  # the newest claim registration of the day when the run was requested
PARTITION_TAG = "dagster/partition"
_WAITING = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED)
_RUNNING = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED)
MAX_REQUESTS_PER_TICK = 50
INTERVAL_S = 5  # between ticks: a landed day waits at most this long for its run request


def _default_status() -> dg.DefaultSensorStatus:
    wanted = os.environ.get("AIOS_BUS_SENSORS", "").strip().lower()
    if wanted == "running" or (not wanted and get_settings().profile is Profile.production):
        return dg.DefaultSensorStatus.RUNNING
    return dg.DefaultSensorStatus.STOPPED


def in_flight(instance: dg.DagsterInstance, job_name: str = "claims_job") -> dict[str, list[dg.DagsterRun]]:
    """Runs of `job_name` queued or executing, by partition."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=[*_WAITING, *_RUNNING]))
    out: dict[str, list[dg.DagsterRun]] = {}
    for r in runs:
        day = r.tags.get(PARTITION_TAG)
        if day:
            out.setdefault(day, []).append(r)
    return out


def covered(runs: Iterable[dg.DagsterRun], max_seq: int) -> str | None:
    """Why no new run is needed for a day with these runs in flight (None: one is needed)."""
    for r in runs:
        if r.status in _WAITING:
            return f"run {r.run_id[:8]} is queued and will read the whole day"
        if int(r.tags.get(COVERS_TAG, "-1")) >= max_seq:
            return f"run {r.run_id[:8]} is running and covers registration {max_seq}"
    return None


def reconcile(instance: dg.DagsterInstance, engine, log=None) -> dg.SensorResult:
    """Run requests for the days with undecided claims (see module doc)."""
    from connectors.landing import undecided_days

    flying = in_flight(instance)
    requests, skipped = [], []
    for day in undecided_days(engine):
        if not daily_partitions.has_partition_key(day.partition):
            skipped.append(f"{day.partition}: not a partition of claims_job ({day.claims} claims)")
            continue
        why = covered(flying.get(day.partition, []), day.max_seq)
        if why:
            skipped.append(f"{day.partition}: {why}")
            continue
        requests.append(dg.RunRequest(partition_key=day.partition, run_key=day.run_key, tags={
            "aios/source": "landed", COVERS_TAG: str(day.max_seq), "aios/undecided": str(day.claims)}))
        if len(requests) >= MAX_REQUESTS_PER_TICK:
            break
    if log is not None and skipped:
        log.info("; ".join(skipped))
    if not requests:
        from connectors.landing import journal_backlog

        waiting = [f"{n} messages journaled by {src}, not landed yet" for src, n in journal_backlog(engine).items()]
        return dg.SensorResult(skip_reason=dg.SkipReason("; ".join(
            skipped + waiting or ["every registered claim is decided or quarantined"])))
    return dg.SensorResult(run_requests=requests)


@dg.sensor(name=SENSOR_NAME, job_name="claims_job", minimum_interval_seconds=INTERVAL_S, default_status=_default_status(),
           description="Requests a claims_job run for each day with landed claims not yet decided or quarantined "
                       "(run_key from the content; skips days whose queued or running run covers it). Landing "
                       "itself is `aios land` (one consumer per bus subscription).")
def landed_claims_sensor(context: dg.SensorEvaluationContext, stores: StoresResource) -> dg.SensorResult:
    """Turns landed-but-undecided claims into one claims_job run per day."""
    return reconcile(context.instance, stores.engine(), context.log)
