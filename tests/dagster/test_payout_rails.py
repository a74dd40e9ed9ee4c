"""The payment rails and the outbox: pain.001 files the ISO XSD accepts, pain.002 verdicts recorded, approvals
and their payout intents committed together, gates refused by the dispatcher in any run, and the CLI status."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import date

import pytest
import sqlalchemy as sa

from connectors.stores import reviews
from aios.kernel import errors
from aios.usecases import review_workflow as workflow
from connectors.stores.gates import record_gate
from connectors.payout import PayoutConnector, PayoutInstruction
from connectors.rails.base import PaymentOrder
from connectors.rails.dispatch import dispatch
from connectors.rails.iso20022 import Debtor, InvalidPaymentFile, render_pain001
from connectors.rails.outbox import payout_intents
from connectors.rails.select import build_rail, embedded_bank

try:
    from tests.paymentkit import approve
    from tests.reviewkit import make_env
except ImportError:
    from paymentkit import approve
    from reviewkit import make_env

NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}
DEBTOR = Debtor("AIOS Insurance", "NL41MOCK0000000001")
CLOSED_ACCOUNT = "NL84MOCK0000000003"  # mock-bank's INITECH: payments to it are rejected AC04


def _orders(n: int = 3) -> list[PaymentOrder]:
    return [PaymentOrder(f"payout:C-{i}", f"C-{i}", 1234 + i, "EUR", f"Claimant {i}", "NL30MOCK0000000005",
                         f"Claim C-{i}") for i in range(n)]


def _intents(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r.idempotency_key: dict(r._mapping) for r in conn.execute(sa.select(payout_intents))}


def test_a_pain001_batch_validates_against_the_iso_xsd_with_keys_as_end_to_end_ids_and_cents():
    xml = render_pain001("AIOS-B-1", "2026-11-30T10:00:00", DEBTOR, _orders(), date(2026, 12, 1))  # validates
    root = ET.fromstring(xml)
    assert root.find("p:CstmrCdtTrfInitn/p:GrpHdr/p:MsgId", NS).text == "AIOS-B-1"
    assert root.find("p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs", NS).text == "3"
    assert root.find("p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum", NS).text == "37.05"  # 12.34 + 12.35 + 12.36
    txs = root.findall(".//p:CdtTrfTxInf", NS)
    assert [t.find("p:PmtId/p:EndToEndId", NS).text for t in txs] == ["payout:C-0", "payout:C-1", "payout:C-2"]
    assert [t.find("p:Amt/p:InstdAmt", NS).text for t in txs] == ["12.34", "12.35", "12.36"]
    # the same batch renders to the same bytes: a re-send after a crash is the very same file
    assert render_pain001("AIOS-B-1", "2026-11-30T10:00:00", DEBTOR, _orders()[::-1], date(2026, 12, 1)) == xml


def test_a_pain001_the_xsd_refuses_is_never_written_and_the_error_names_the_element():
    bad = [PaymentOrder("payout:C-9", "C-9", 100, "EUR", "X", "not-an-iban", "Claim C-9")]
    with pytest.raises(InvalidPaymentFile, match="IBAN"):
        render_pain001("AIOS-B-2", "2026-11-30T10:00:00", DEBTOR, bad, date(2026, 12, 1))


def test_the_banks_pain002_marks_each_payment_acknowledged_or_rejected_with_its_reason(tmp_path):
    from aios.kernel.db import get_engine

    engine = get_engine(f"sqlite:///{tmp_path / 'pay.db'}")
    rail, settle = build_rail("iso20022", tmp_path / "bank", bank_standin=True)
    payer = PayoutConnector(engine, rail=rail, settle=settle)
    report = payer.pay("2026-02-01", [PayoutInstruction("OK-1", "2026-02-01", 250.0, "EUR"),
                                      PayoutInstruction("BAD-1", "2026-02-01", 99.99, "EUR",
                                                        creditor_iban=CLOSED_ACCOUNT)])
    assert (report.paid, report.rejected, report.pending) == (1, 1, 0)
    rows = _intents(engine)
    assert rows["payout:OK-1"]["status"] == "acknowledged"
    assert rows["payout:BAD-1"]["status"] == "rejected" and "AC04" in rows["payout:BAD-1"]["detail"]
    assert rows["payout:OK-1"]["receipt"] == f"{rows['payout:OK-1']['batch_id']}/payout:OK-1"
    assert [r["claim_id"] for r in payer.paid_claims()] == ["OK-1"]
    bank = embedded_bank(str(tmp_path / "bank")).payments()
    assert {(p["end_to_end_id"], p["status"]) for p in bank} == {("payout:OK-1", "accepted"),
                                                                  ("payout:BAD-1", "rejected")}
    assert {p["end_to_end_id"]: p["amount"] for p in bank} == {"payout:OK-1": 25000, "payout:BAD-1": 9999}  # cents


def test_an_approval_writes_its_payout_intent_in_the_same_transaction(tmp_path):
    env = make_env(tmp_path / "home")
    approve(env, "2026-02-02", {"A-1": 420.5})
    intent = _intents(env.engine)["payout:A-1"]
    assert (intent["status"], intent["amount_cents"], intent["reason"]) == ("intent", 42050, "review_approved")
    # a rejection, and an approval that fails (case not claimed), write no intent
    env.cases("2026-02-02", {"R-1": (300.0, 0.4), "U-1": (310.0, 0.4)})
    rita = env.user("rita", "reviewer")
    workflow.claim_case(env.engine, "R-1", rita, env.policy)
    workflow.record_review_decision(env.engine, "R-1", rita, "reject", "forged invoice", env.policy)
    with pytest.raises(errors.Conflict):
        workflow.record_review_decision(env.engine, "U-1", rita, "approve", "looks fine", env.policy)
    assert set(_intents(env.engine)) == {"payout:A-1"}


def test_a_large_claim_gets_its_intent_only_with_the_second_approval(tmp_path):
    env = make_env(tmp_path / "home")
    big = env.policy.four_eyes_amount + 1000.0
    env.cases("2026-02-03", {"BIG-1": (big, 0.3)})
    first, second = env.user("sam", "senior_reviewer"), env.user("sue", "senior_reviewer")
    workflow.claim_case(env.engine, "BIG-1", first, env.policy)
    workflow.record_review_decision(env.engine, "BIG-1", first, "approve", "checked", env.policy)
    assert _intents(env.engine) == {}
    workflow.claim_case(env.engine, "BIG-1", second, env.policy)
    workflow.record_review_decision(env.engine, "BIG-1", second, "approve", "second look", env.policy)
    assert _intents(env.engine)["payout:BIG-1"]["status"] == "intent"


def test_the_dispatcher_refuses_a_partition_whose_gates_failed_in_a_separate_run(tmp_path):
    env = make_env(tmp_path / "home")
    approve(env, "2026-02-04", {"G-1": 120.0, "G-2": 130.0})
    record_gate(env.engine, "2026-02-04", "drift", False, "share 0.7 >= 0.5")
    rail, settle = build_rail("iso20022", tmp_path / "bank", bank_standin=True)
    report = dispatch(env.engine, rail, ("data_quality", "drift"))
    assert "drift failed" in report.refused["2026-02-04"][0]
    assert report.batches == [] and {r["status"] for r in _intents(env.engine).values()} == {"intent"}
    assert not list((tmp_path / "bank" / "outbound").glob("*.xml"))  # nothing reached the bank
    record_gate(env.engine, "2026-02-04", "drift", True, "re-evaluated")
    payer = PayoutConnector(env.engine, ("data_quality", "drift"), rail=rail, settle=settle)
    assert len(payer.dispatch().acknowledged) == 2


def test_payouts_status_counts_intents_per_rail_and_day(settings):
    from typer.testing import CliRunner

    from aios.cli.main import app
    from aios.kernel.db import get_engine
    from connectors.rails.outbox import Intent, add_intents, ensure_outbox

    engine = get_engine(settings.db_url)
    ensure_outbox(engine)
    with engine.begin() as conn:
        add_intents(conn, [Intent(f"S-{i}", "2026-02-05", 10.0, "EUR", "auto_approve", "iso20022") for i in range(3)])
        add_intents(conn, [Intent("S-9", "2026-02-06", 10.0, "EUR", "auto_approve", "http")])
    out = CliRunner().invoke(app, ["payouts", "status", "--date", "2026-02-05", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == {"iso20022": {"intent": 3, "sending": 0, "sent": 0, "acknowledged": 0,
                                                   "rejected": 0}}
    table = CliRunner().invoke(app, ["payouts", "status"])
    assert "http" in table.output and "iso20022" in table.output
    bad = CliRunner().invoke(app, ["payouts", "status", "--date", "yesterday"])
    assert bad.exit_code != 0 and "--date" in bad.output


@pytest.mark.slow
def test_the_provider_pays_one_key_once_and_refuses_it_with_another_body(tmp_path):
    import httpx

    try:
        from tests.paymentkit import Provider
    except ImportError:
        from paymentkit import Provider
    provider = Provider(tmp_path)
    try:
        body = {"claim_id": "C-1", "amount_cents": 500, "currency": "EUR", "creditor_iban": "NL30MOCK0000000005"}
        first = httpx.post(f"{provider.url}/payments", json=body, headers={"Idempotency-Key": "payout:C-1"})
        again = httpx.post(f"{provider.url}/payments", json=body, headers={"Idempotency-Key": "payout:C-1"})
        other = httpx.post(f"{provider.url}/payments", json={**body, "amount_cents": 501},
                           headers={"Idempotency-Key": "payout:C-1"})
        assert (first.status_code, again.status_code, other.status_code) == (201, 200, 422)
        assert again.json() == {**first.json(), "replayed": True}
        assert "different request body" in other.json()["detail"]
        assert provider.paid_keys() == {"payout:C-1": 1}
    finally:
        provider.stop()


try:
    from tests.servers import postgres_url  # noqa: F401 - fixture
except ImportError:
    from servers import postgres_url  # noqa: F401


@pytest.mark.server
def test_four_concurrent_dispatchers_on_postgresql_pay_each_intent_once(postgres_url, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from aios.kernel.db import get_engine
    from connectors.rails.outbox import Intent, add_intents, ensure_outbox

    engine = get_engine(postgres_url)
    ensure_outbox(engine)
    for gate in ("data_quality", "drift"):
        record_gate(engine, "2026-02-07", gate, True, "set by the test")
    with engine.begin() as conn:
        add_intents(conn, [Intent(f"PG-{i}", "2026-02-07", 10.0 + i, ("EUR", "USD")[i % 2], "auto_approve",
                                  "iso20022") for i in range(60)])
    rail, settle = build_rail("iso20022", tmp_path / "bank", bank_standin=True)

    def one(_):
        payer = PayoutConnector(engine, ("data_quality", "drift"), rail=rail, settle=settle)
        return payer.dispatch()

    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(one, range(4)))
    reports.append(PayoutConnector(engine, ("data_quality", "drift"), rail=rail, settle=settle).dispatch())
    assert sum(len(r.acknowledged) for r in reports) == 60  # each verdict recorded by exactly one dispatcher
    accepted = [p["end_to_end_id"] for p in embedded_bank(str(tmp_path / "bank")).payments()
                if p["status"] == "accepted"]
    assert len(accepted) == len(set(accepted)) == 60
    assert {r["status"] for r in _intents(engine).values()} == {"acknowledged"}


def test_an_intent_left_behind_is_delivered_by_the_dispatch_sensors_run(settings, defs, instance):
    """An intent written but never dispatched (its run crashed): the sensor sees it in the outbox, its run pays
    it once through the rail, and the next tick has nothing to do."""
    import dagster as dg

    from aios.kernel.db import get_engine
    from connectors.rails.outbox import ACKNOWLEDGED
    from sensors.payouts import payout_dispatch_sensor

    day = "2026-10-20"  # used by no other test module
    engine = get_engine(settings.db_url)
    for gate in ("data_quality", "drift"):
        record_gate(engine, day, gate, True, "test")
    PayoutConnector(engine, rail=None).enqueue([PayoutInstruction("CLM-LEFT-BEHIND", day, 321.0, "EUR")])

    ctx = dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs)
    requests = payout_dispatch_sensor(ctx).run_requests
    assert len(requests) == 1
    result = defs.resolve_job_def("payout_dispatch_job").execute_in_process(instance=instance)
    assert result.success
    assert _intents(engine)["payout:CLM-LEFT-BEHIND"]["status"] == ACKNOWLEDGED
    # Other modules leave intents of refused partitions in this session's outbox, so a later tick may still
    # ask for a run; never under the same key, because the outbox it saw has changed.
    again = payout_dispatch_sensor(dg.build_sensor_context(instance=instance, resources=defs.resources,
                                                           definitions=defs)).run_requests
    assert [r.run_key for r in again] != [r.run_key for r in requests]
