"""The payout connector pays each claim once (through the outbox, the pain.001 rail and the stand-in bank) and
refuses partitions whose gates failed; the inbox sensor lands each file once."""

import json

import dagster as dg
import pytest

from aios.kernel.db import get_engine
from connectors.stores.gates import record_gate
from connectors.payout import PayoutConnector, PayoutInstruction, PayoutRefused


@pytest.fixture
def engine(tmp_path):
    return get_engine(f"sqlite:///{tmp_path / 'pay.db'}")


def _payer(engine, root, required_gates=()):
    """A connector on the ISO 20022 file rail, answered by mock-bank in process under `root`."""
    from connectors.rails.select import build_rail

    rail, settle = build_rail("iso20022", root, bank_standin=True)
    return PayoutConnector(engine, required_gates=required_gates, rail=rail, settle=settle)


def _instructions(day, n=3):
    return [PayoutInstruction(f"C-{i}", day, 100.0 + i, "EUR") for i in range(n)]


def test_paying_twice_pays_each_claim_once(engine, tmp_path):
    payer = _payer(engine, tmp_path / "bank")
    first = payer.pay("2026-01-02", _instructions("2026-01-02"))
    assert (first.paid, first.already_paid) == (3, 0)
    again = payer.pay("2026-01-02", _instructions("2026-01-02", 4))
    assert (again.paid, again.already_paid) == (1, 3)
    rows = payer.paid_claims("2026-01-02")
    assert [r["claim_id"] for r in rows] == ["C-0", "C-1", "C-2", "C-3"]
    assert len({r["receipt_id"] for r in rows}) == 4
    from connectors.rails.select import embedded_bank

    bank = [p["end_to_end_id"] for p in embedded_bank(str(tmp_path / "bank")).payments()]
    assert sorted(bank) == [f"payout:C-{i}" for i in range(4)]  # the bank's own ledger: each once


def test_a_failed_gate_refuses_payouts_and_names_it(engine, tmp_path):
    payer = _payer(engine, tmp_path / "bank", required_gates=("data_quality", "drift"))
    with pytest.raises(PayoutRefused, match="drift"):  # never evaluated is not passed
        payer.pay("2026-01-03", _instructions("2026-01-03"))
    record_gate(engine, "2026-01-03", "data_quality", True, "ok")
    record_gate(engine, "2026-01-03", "drift", False, "share 0.6 >= 0.5")
    with pytest.raises(PayoutRefused, match="drift"):
        payer.pay("2026-01-03", _instructions("2026-01-03"))
    assert payer.paid_claims("2026-01-03") == []
    record_gate(engine, "2026-01-03", "drift", True, "re-evaluated")
    assert payer.pay("2026-01-03", _instructions("2026-01-03")).paid == 3


def test_inbox_sensor_lands_a_file_once_and_rejects_bad_names(settings, defs, instance):
    from sensors.inbox import inbox_sensor

    inbox = settings.inbox_dir
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "claims_2026-02-03.jsonl").write_text(json.dumps({"claim_id": "X"}) + "\n")
    (inbox / "claims_nodate.csv").write_text("claim_id\nY\n")
    ctx = dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs)
    first = inbox_sensor(ctx)
    assert [r.partition_key for r in first.run_requests] == ["2026-02-03"]
    assert (settings.rejected_dir / "claims_nodate.csv").exists() or any(settings.rejected_dir.glob("*nodate*"))
    ctx2 = dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs,
                                   cursor=first.cursor)
    assert inbox_sensor(ctx2).run_requests == []
    assert any(settings.landing_dir.rglob("claims_2026-02-03.jsonl"))


def test_definitions_expose_every_asset_check_sensor_schedule_and_job(defs):
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {"raw_claims", "validated_claims", "quarantined_claims", "claim_documents", "claim_features",
            "fraud_scores", "fraud_posteriors", "decisions", "review_queue", "payouts",
            "fraud_model", "bayes_network", "drift_reference"} <= keys
    checks = {c.name for c in repo.asset_graph.asset_check_keys}
    assert {"data_quality", "drift"} <= checks
    specs = [spec for a in repo.assets_defs_by_key.values() for spec in a.check_specs
             if spec.name in ("data_quality", "drift")]
    assert specs and all(spec.blocking for spec in specs)
    assert "inbox_sensor" in {s.name for s in repo.sensor_defs}
    assert "daily_batch_scoring" in {s.name for s in repo.schedule_defs}
    assert {"claims_job", "training_job"} <= {j.name for j in repo.get_all_jobs()}


def test_two_concurrent_payers_pay_each_claim_once_without_failing(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from connectors.rails.select import embedded_bank

    engine = get_engine(f"sqlite:///{tmp_path / 'race.db'}")
    batch = [PayoutInstruction(f"R-{i}", "2026-01-05", 10.0, "EUR") for i in range(300)]
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: _payer(engine, tmp_path / "bank").pay("2026-01-05", batch), range(2)))
    assert sum(r.paid for r in reports) == 300  # each claim counted as newly paid by exactly one payer
    assert all(r.paid + r.already_paid + r.pending == 300 for r in reports)
    assert len(_payer(engine, tmp_path / "bank").paid_claims("2026-01-05")) == 300
    accepted = [p["end_to_end_id"] for p in embedded_bank(str(tmp_path / "bank")).payments()
                if p["status"] != "rejected"]
    assert len(accepted) == len(set(accepted)) == 300
