"""The SLO alarms: override-rate and drift breaches, the alarm check's cursor, the alarm sensor and the
backtest jobs in the Definitions."""

from datetime import date

import pandas as pd
import pytest

from models.slo import load_slo, override_alarm, override_change, override_counts


def test_override_alarm_fires_when_the_override_rate_moves_more_than_the_configured_share(tmp_path):
    slo = load_slo()
    rows = []
    for day in range(1, 9):
        overrides = 3 if day < 8 else 15  # 10% for a week, then 50%
        for i in range(30):
            leaning = "approve"
            rows.append({"partition": f"2026-10-0{day}", "decision": "reject" if i < overrides else leaning,
                         "leaning": leaning})
    counts = override_counts(pd.DataFrame(rows))
    quiet = override_change(counts, "2026-10-07", slo)
    assert quiet.rate == pytest.approx(0.1) and override_alarm(quiet, slo) is None
    moved = override_change(counts, "2026-10-08", slo)
    assert moved.baseline == pytest.approx(0.1) and moved.baseline_partitions == slo.override_rate.baseline_partitions
    alarm = override_alarm(moved, slo)
    assert alarm is not None and alarm.partition == "2026-10-08" and alarm.value == pytest.approx(0.4)
    # one more override on the breached day moves the rate but is the same breach: one alarm, stored once
    rows.append({"partition": "2026-10-08", "decision": "reject", "leaning": "approve"})
    again = override_alarm(override_change(override_counts(pd.DataFrame(rows)), "2026-10-08", slo), slo)
    assert again.value != alarm.value and again.key == alarm.key
    from connectors.stores.alarms import read_alarms, record_alarm
    from aios.kernel.db import get_engine

    engine = get_engine(f"sqlite:///{tmp_path / 'alarms.db'}")
    assert record_alarm(engine, alarm) is True
    assert record_alarm(engine, again) is False
    assert len(read_alarms(engine)) == 1


def test_drift_alarm_fires_on_an_injected_shift_and_stays_quiet_on_a_clean_batch(tmp_path):
    import dagster as dg

    from connectors.stores.alarms import read_alarms
    from aios_assets.checks import drift_result
    from aios_resources import StoresResource
    from models.features import FEATURE_COLUMNS, build_features
    from models.generator import generate_claims, inject_drift, make_book
    from sensors.alarms import alarm_sensor

    book = make_book(n_policies=3000, seed=11)
    ref_claims, ref_docs = generate_claims(book, date(2026, 9, 1), 10, 200, seed=11)
    reference = build_features(ref_claims, ref_docs, book.policies)[FEATURE_COLUMNS]
    day_claims, day_docs = generate_claims(book, date(2026, 9, 20), 1, 300, seed=11)
    stores = StoresResource(database_url=f"sqlite:///{tmp_path / 'stores.db'}")

    def tick(cursor):
        return alarm_sensor(dg.build_sensor_context(resources={"stores": stores}, cursor=cursor))

    drift_result("2026-09-20", build_features(day_claims, day_docs, book.policies), reference, stores)
    quiet = tick(None)
    assert not quiet.run_requests
    assert "no alarm" in str(quiet.skip_reason)
    assert read_alarms(stores.engine()).empty

    drift_result("2026-09-21", build_features(inject_drift(day_claims), day_docs, book.policies), reference, stores)
    fired = tick(quiet.cursor)
    assert [r.partition_key for r in fired.run_requests] == ["2026-09-21"]
    assert fired.run_requests[0].tags["aios/alarm"] == "drift"
    alarms = read_alarms(stores.engine())
    assert alarms[["kind", "partition"]].values.tolist() == [["drift", "2026-09-21"]]
    assert "drifted" in alarms["reason"].iat[0]

    again = tick(fired.cursor)
    assert not again.run_requests and len(read_alarms(stores.engine())) == 1


def test_backtest_jobs_assets_and_alarm_sensor_are_in_the_definitions():
    from aios_assets.definitions import defs

    for job in ("backtest_job", "backtest_summary_job", "slo_job"):
        defs.resolve_job_def(job)
    assert defs.resolve_sensor_def("alarm_sensor").job_name == "slo_job"
    checks = {k.name for k in defs.resolve_assets_def("slo_report").check_keys}
    assert checks == {"latency_p95", "override_rate_change", "drift_share"}


def test_alarm_check_reads_reviews_since_its_cursor_and_raises_each_override_breach_once(tmp_path):
    import sqlalchemy as sa

    from aios.kernel.db import ensure_tables, get_engine
    from aios.usecases.alarms import AlarmCursor, check_alarms
    from connectors.stores.alarms import read_alarms
    from connectors.stores.reviews import APPROVED, REJECTED, review_actions

    slo = load_slo()
    engine = get_engine(f"sqlite:///{tmp_path / 'stores.db'}")
    ensure_tables(engine, review_actions)

    def review(day: int, overrides: int, n: int = 30) -> None:
        with engine.begin() as conn:
            conn.execute(review_actions.insert(), [
                {"claim_id": f"c{day}-{i}", "partition": f"2026-10-{day:02d}", "actor": "ana", "role": "reviewer",
                 "action": "reject" if i < overrides else "approve", "reason": "checked",
                 "outcome": REJECTED if i < overrides else APPROVED, "model_leaning": "approve", "amount": 100.0,
                 "at": "2026-10-20T00:00:00.000000Z"} for i in range(n)])

    for day in range(1, 8):
        review(day, 3)  # 10% overrides for a week
    first = check_alarms(engine, AlarmCursor(), slo)
    assert first.new == [] and len(first.reviewed_partitions) == 7
    idle = check_alarms(engine, first.cursor, slo)
    assert idle.reviewed_partitions == [] and idle.cursor == first.cursor  # nothing new: nothing re-read
    review(8, 15)  # then 50%
    fired = check_alarms(engine, AlarmCursor.parse(idle.cursor.dump()), slo)
    assert fired.reviewed_partitions == ["2026-10-08"]
    assert [(a.kind, a.partition) for a in fired.new] == [("override_rate", "2026-10-08")]
    review(8, 1, n=1)  # one more override the same day: the same breach, not a new alarm
    again = check_alarms(engine, fired.cursor, slo)
    assert again.new == [] and again.repeated == 1
    assert len(read_alarms(engine)) == 1
