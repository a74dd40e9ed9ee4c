"""A poison file beside a valid day, through the Dagster claims job: it costs only itself."""

from __future__ import annotations

import json

import pytest

from tests.unit.test_poison_ingress import base_records


@pytest.mark.slow
def test_a_poison_file_beside_a_valid_day_costs_only_itself(run_day, settings, defs, instance):
    """A binary file named like a claims file and a row with a path as document ref, dropped beside a valid
    day: the file is rejected with its reason, the row quarantined, and the rest of the day decided; a
    poison file already sitting in landing is moved out by the next run of its day instead of failing it."""
    from aios.usecases.summary import partition_summary

    day = "2026-11-15"
    settings.inbox_dir.mkdir(parents=True, exist_ok=True)
    (settings.inbox_dir / f"claims-{day}-x.csv").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20)
    poison_row = dict(base_records()[0], claim_id="CLM-POISON-REF", document_refs="../../etc/passwd")
    (settings.inbox_dir / f"claims-{day}-refs.jsonl").write_text(json.dumps(poison_row) + "\n")

    result = run_day(day, malformed=7)
    assert result.success
    reason = (settings.rejected_dir / f"claims-{day}-x.csv.reason").read_text()
    assert "binary" in reason
    assert not (settings.landing_dir / day / f"claims-{day}-x.csv").exists()
    s = partition_summary(settings, day)
    assert s["quarantined"] == 7 + 1
    assert s["claims_in"] == s["quarantined"] + s["auto_approve"] + s["human_review"] + s["refer_siu"] > 250

    # A poison file that reached landing before this check existed: the re-run moves it out and succeeds.
    (settings.landing_dir / day / f"claims-{day}-late.csv").write_bytes(bytes(4096))
    again = defs.resolve_job_def("claims_job").execute_in_process(partition_key=day, instance=instance,
                                                                 raise_on_error=False)
    assert again.success
    assert (settings.rejected_dir / f"claims-{day}-late.csv.reason").exists()
    assert partition_summary(settings, day)["claims_in"] == s["claims_in"]
