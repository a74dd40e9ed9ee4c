"""The backtest commands launch the assets through the one launcher and print what the assets computed."""

import json

from typer.testing import CliRunner

WINDOW = ("--from", "2026-11-05", "--to", "2026-11-06")  # days of the session's history; no other module uses them


def test_backtest_reads_the_summary_assets_report_and_its_check_honours_the_bounds_file(trained, tmp_path):
    from aios.cli.main import app

    runner = CliRunner()
    loose = tmp_path / "loose.json"
    loose.write_text(json.dumps({"role": "champion", "ece_max": 1.0}))
    ok = runner.invoke(app, ["backtest", *WINDOW, "--no-challenger", "--check-bounds", "--bounds", str(loose)])
    assert ok.exit_code == 0, ok.output
    assert "within bounds" in ok.output
    report = trained.home / "reports" / "backtest-2026-11-05_2026-11-06"
    assert {p.name for p in report.iterdir()} == {"report.md", "reliability.png", "per_partition.png"}
    assert "backtest_summary_job" in (report / "report.md").read_text()

    tight = tmp_path / "tight.json"  # no model catches more than all frauds: this bound always breaks
    tight.write_text(json.dumps({"role": "champion", "fraud_caught_min": 1.01}))
    broken = runner.invoke(app, ["backtest", *WINDOW, "--no-challenger", "--check-bounds", "--bounds", str(tight)])
    assert broken.exit_code == 1, broken.output
    assert "fraud_caught_min = 1.01" in broken.output


def test_thresholds_prints_the_economics_assets_recommendation_and_report(trained):
    from aios.cli.main import app

    result = CliRunner().invoke(app, ["thresholds", *WINDOW])
    assert result.exit_code == 0, result.output
    assert "recommended bands: auto_approve below p_fraud" in result.output
    assert (trained.home / "reports" / "thresholds-2026-11-05_2026-11-06" / "trade_off.png").exists()
