"""Commands that launch runs exit with a status that tells the truth: 0 when the run succeeded, 3 when a
blocking check stopped what follows it (named, with its reason), 1 when a step failed (named, with why)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

DAY = "2026-11-10"  # used by no other test module


@pytest.mark.slow
def test_a_drift_blocked_day_exits_3_and_names_the_check(trained):
    from aios.cli.main import EXIT_CHECK_BLOCKED, app
    from aios.usecases.datasets import drop_batch

    drop_batch(trained, DAY, malformed=0, drift=True)
    result = CliRunner().invoke(app, ["ingest"])
    assert result.exit_code == EXIT_CHECK_BLOCKED, result.output
    assert "check drift blocked what follows it" in result.output


def test_a_failed_run_exits_1_and_names_the_step():
    from aios.cli.main import EXIT_CHECK_BLOCKED, EXIT_RUN_FAILED, _exit_for, _print_run
    from aios_assets.launch import RunOutcome

    failed = RunOutcome("claims_job", "r1", False, DAY, error="fraud_scores: model aios-fraud@champion not found")
    blocked = RunOutcome("claims_job", "r2", False, DAY,
                         checks={"data_quality": {"passed": False, "description": "12% quarantined > 5%"}})
    fine = RunOutcome("claims_job", "r3", True, DAY, checks={"data_quality": {"passed": True, "description": ""}})
    assert _print_run(fine) == 0
    assert _print_run(blocked) == EXIT_CHECK_BLOCKED
    assert _print_run(failed) == EXIT_RUN_FAILED
    import typer

    with pytest.raises(typer.Exit) as worst:
        _exit_for([0, EXIT_CHECK_BLOCKED, EXIT_RUN_FAILED])
    assert worst.value.exit_code == EXIT_RUN_FAILED
    _exit_for([0, 0])  # all succeeded: no exit raised


def test_a_failed_run_prints_the_failed_step_and_the_reason(capsys):
    from aios.cli.main import _print_run
    from aios_assets.launch import RunOutcome

    _print_run(RunOutcome("claims_job", "r1", False, DAY, error="fraud_scores: model not found"))
    assert "failed step fraud_scores: model not found" in capsys.readouterr().out
