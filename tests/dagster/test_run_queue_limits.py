"""The run queue both profiles' dagster.yaml configure, as the Dagster instance reads it: one run per
partition, and a backfill can never take every run slot, so the daily schedule's run is never starved.
Checked with the counter the daemon's queued-run coordinator uses to decide which queued run may start."""


def _limits(tmp_path):
    import dagster as dg

    from aios.usecases.production import write_embedded_dagster_yaml

    write_embedded_dagster_yaml(tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        queue = instance.get_concurrency_config().run_queue_config
    return queue.max_concurrent_runs, list(queue.tag_concurrency_limits)


def test_a_backfill_holds_at_most_one_run_slot_and_the_daily_schedule_is_never_blocked(tmp_path):
    from dagster import DagsterRun
    from dagster._utils.tags import TagConcurrencyLimitsCounter

    max_runs, limits = _limits(tmp_path)
    backfill = lambda b, day: DagsterRun(job_name="claims_job",  # noqa: E731
                                         tags={"dagster/backfill": b, "dagster/partition": day})
    scheduled = DagsterRun(job_name="claims_job", tags={"dagster/schedule_name": "daily_scoring_schedule",
                                                        "dagster/partition": "2026-11-21"})
    counter = TagConcurrencyLimitsCounter(limits, [backfill("b1", "2026-10-01")])
    assert counter.is_blocked(backfill("b1", "2026-10-02"))
    assert counter.is_blocked(backfill("b2", "2026-09-01")), "two backfills together still hold one slot"
    assert not counter.is_blocked(scheduled)
    assert max_runs >= 2, "one slot for backfills leaves one for the schedule"
    assert not TagConcurrencyLimitsCounter(limits, []).is_blocked(backfill("b1", "2026-10-01"))
