"""The sync decision API: the batch path's decision, bit for bit; 422s that name the field; stored and
audited decisions; a moved model alias picked up with no failed request."""

from __future__ import annotations

import json
import threading
import time
from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa

from aios.kernel.db import get_engine
from aios.kernel.settings import Settings
from connectors.stores.decisions import decisions_table, read_table, save_decisions
from aios.kernel.tracing import claim_trace_hex
from connectors.documents import DocumentStore
from connectors.inbox import read_claims_file
from connectors.stores.ledger import AuditLedger
from governance.policy import load_policy_set
from models.bayes import FraudNetwork
from aios.kernel.canonical import canonical_json
from models.modules.contract import load_modules
from aios.kernel.contracts import Decision, rationale_text
from models.decision import DECISION_COLUMNS, DecisionModels, decide
from models.features import build_features
from models.generator import Book, generate_claims, to_inbox_records
from connectors.registry import load_by_alias, load_model, log_and_register, resolve_alias, set_alias
from models.validation import validate_claims
from service.app import create_app
from service.decisions_api import ACTOR, field_name

try:
    from tests.apikit import as_client, register_client
except ImportError:  # tests/ itself is on sys.path
    from apikit import as_client, register_client

API_DAY = date(2026, 11, 25)
BATCH_DAY = "2026-11-12"  # each test module drops its own day into the shared session home


def _claims(settings: Settings, day: date, n: int, prefix: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    book = Book(pd.read_parquet(settings.policies_path))
    claims, docs = generate_claims(book, day, 1, n, seed=11, id_prefix=prefix)
    return to_inbox_records(claims), docs


def _payload(record: dict, docs: pd.DataFrame | None = None) -> dict:
    """A submitter's JSON for one inbox record (blank values left out), optionally with inline documents."""
    out = {k: v for k, v in record.items() if not k.startswith("_") and v is not None and v == v and v != ""}
    if docs is not None:
        mine = docs[docs["claim_id"] == record["claim_id"]]
        out["documents"] = [{"doc_ref": r, "text": t} for r, t in zip(mine["doc_ref"], mine["text"])]
    return out


def _as_row(decision: dict) -> dict:
    """An API decision in the shape of a `decide()` row (lists and dicts as the canonical JSON it stores)."""
    return {"claim_id": decision["claim_id"], "amount": decision["amount"], "score": decision["score"],
            "p_fraud": decision["p_fraud"], "p_fraud_low": decision["p_fraud_interval"][0],
            "p_fraud_high": decision["p_fraud_interval"][1], "route": decision["route"],
            "rationale": canonical_json(decision["rationale"]),
            "uncertainty_drivers": canonical_json(decision["uncertainty_drivers"]),
            "versions": canonical_json(decision["versions"]), "snapshot_hash": decision["snapshot_hash"]}


def _batch_models(settings: Settings) -> DecisionModels:
    """The models as the batch path loads them: the classifier @alias, the current network, the policy set."""
    model, ref = load_by_alias(settings.mlflow_uri, settings.model_name, settings.model_alias)
    net = FraudNetwork.load(settings.network_path())
    return DecisionModels(model, settings.model_name, ref.version, net, load_policy_set())


@pytest.fixture(scope="module")
def client(trained):
    """The service as a registered client holding every scope (`c.client_id` names it)."""
    client_id, key = register_client(trained, "decision-api-tests")
    with as_client(create_app(trained, pin_check_seconds=0.2), key) as c:
        c.client_id = client_id
        yield c


def test_field_names_drop_the_body_and_the_request_shape():
    assert field_name(("body", "<claim>", "amount")) == "amount"
    assert field_name(("body", "<batch>", 3, "documents", 0, "doc_ref")) == "[3].documents[0].doc_ref"
    assert field_name(("body",)) == "body"
    assert field_name(("path", "claim_id")) == "path.claim_id"


def test_api_decisions_equal_decide_on_the_batch_path(client, trained):
    records, docs = _claims(trained, API_DAY, 40, "API-EQ-")
    half = set(records["claim_id"][::2])
    store = DocumentStore(trained.documents_dir)  # half the claims' documents are in the store, half inline
    for cid, ref, text in docs.itertuples(index=False):
        if cid in half:
            store.write(ref, text)
    payloads = [_payload(r, None if r["claim_id"] in half else docs) for r in records.to_dict("records")]
    response = client.post("/v1/decisions", json=payloads)
    assert response.status_code == 200, response.text
    api = pd.DataFrame([_as_row(d) for d in response.json()["decisions"]])

    valid = validate_claims(records.assign(_source="test")).valid
    features = build_features(valid, docs[docs["claim_id"].isin(records["claim_id"])],
                              pd.read_parquet(trained.policies_path))
    batch = decide(features, _batch_models(trained))
    assert len(batch) == len(records) == len(api)
    pd.testing.assert_frame_equal(api[DECISION_COLUMNS], batch[DECISION_COLUMNS], check_exact=True,
                                  check_dtype=False)


def test_api_decisions_equal_those_the_dagster_batch_stored(run_day, trained, tmp_path):
    result = run_day(BATCH_DAY, malformed=0)
    assert result.success
    stored = read_table(get_engine(trained.db_url), decisions_table, BATCH_DAY).set_index("claim_id")
    landed = pd.concat([read_claims_file(p) for p in sorted((trained.landing_dir / BATCH_DAY).glob("*.csv"))])
    payloads = [_payload(r) for r in landed.to_dict("records") if r["claim_id"] in stored.index][:100]
    # a second service on its own decision store: the main store already holds these claims (a 409 there)
    apart = trained.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'api.db'}"})
    _, key = register_client(apart, "apart")
    with as_client(create_app(apart), key) as other:
        response = other.post("/v1/decisions", json=payloads)
    assert response.status_code == 200, response.text
    api = pd.DataFrame([_as_row(d) for d in response.json()["decisions"]]).set_index("claim_id")
    cols = [c for c in DECISION_COLUMNS if c != "claim_id"]
    pd.testing.assert_frame_equal(api[cols], stored.loc[api.index, cols], check_exact=True, check_dtype=False)


def test_a_claim_decided_by_a_batch_is_not_decided_again(client, trained):
    records, _ = _claims(trained, API_DAY, 3, "API-409-")
    first = client.post("/v1/decisions", json=_payload(records.iloc[0].to_dict()))
    assert first.status_code == 200
    engine = get_engine(trained.db_url)
    decided = records["claim_id"].iat[0]
    row = read_table(engine, decisions_table).query("claim_id == @decided")
    save_decisions(engine, "2099-01-01", row.assign(claim_id="API-409-BATCH"))
    again = client.post("/v1/decisions", json={**_payload(records.iloc[1].to_dict()), "claim_id": "API-409-BATCH"})
    assert again.status_code == 409
    assert again.json()["detail"]["claim_ids"] == ["API-409-BATCH"]
    # the batch's decision stands, and the API wrote nothing for that claim
    stored = read_table(engine, decisions_table).query("claim_id == 'API-409-BATCH'")
    assert list(stored["partition"]) == ["2099-01-01"]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from audit_ledger where claim_id = 'API-409-BATCH'").scalar() == 0


def test_the_api_and_the_bus_share_one_identity_per_claim_id(client, trained):
    import uuid as _uuid

    from connectors.bus.base import BusMessage
    from connectors.landing import dead_letter_rows, land_batch

    records, _ = _claims(trained, API_DAY, 3, "API-ID-")
    engine = get_engine(trained.db_url)
    payloads = [_payload(r) for r in records.to_dict("records")]
    msg = lambda p: BusMessage(message_id=_uuid.uuid4().hex, data=json.dumps(p, default=str).encode())  # noqa: E731
    # landed from the bus first: the API refuses it (the day's batch run decides it)
    assert land_batch(engine, "nats:API/t", [msg(payloads[0])]).landed == 1
    refused = client.post("/v1/decisions", json=payloads[0])
    assert refused.status_code == 409
    assert refused.json()["detail"]["claim_ids"] == [payloads[0]["claim_id"]]
    # decided by the API first: the same claim on the bus is a duplicate, other content a dead letter
    assert client.post("/v1/decisions", json=payloads[1]).status_code == 200
    same = land_batch(engine, "nats:API/t", [msg(payloads[1])])
    other = land_batch(engine, "nats:API/t", [msg({**payloads[1], "amount": 1.5})])
    assert (same.landed, same.duplicates, other.landed, other.dead_lettered) == (0, 1, 0, 1)
    assert "already received from api" in dead_letter_rows(engine, "nats:API/t")["reason"].iat[-1]
    # the API may decide its own claim again (a retried request)
    assert client.post("/v1/decisions", json=payloads[1]).status_code == 200


def test_bad_input_gets_a_422_naming_each_field_and_why(client, trained):
    records, _ = _claims(trained, API_DAY, 3, "API-422-")
    good = _payload(records.iloc[0].to_dict())
    bad = {**_payload(records.iloc[1].to_dict()), "amount": -5, "currency": "XYZ"}
    del bad["channel"]

    one = client.post("/v1/decisions", json=bad)
    assert one.status_code == 422
    reasons = {e["field"]: e["reason"] for e in one.json()["detail"]}
    assert set(reasons) == {"amount", "currency", "channel"}
    assert "greater than 0" in reasons["amount"] and "EUR" in reasons["currency"]
    assert reasons["channel"] == "Field required"

    many = client.post("/v1/decisions", json=[good, bad])
    assert many.status_code == 422
    assert {e["field"] for e in many.json()["detail"]} == {"[1].amount", "[1].currency", "[1].channel"}

    late = {**good, "incident_date": "2026-12-31"}
    err = client.post("/v1/decisions", json=late).json()["detail"]
    assert [e["field"] for e in err] == ["incident_date"] and "after submitted_at" in err[0]["reason"]

    stray = {**good, "documents": [{"doc_ref": "DOC-NOT-MINE", "text": "Total: 1.00 EUR"}]}
    err = client.post("/v1/decisions", json=stray).json()["detail"]
    assert [e["field"] for e in err] == ["documents"] and "DOC-NOT-MINE" in err[0]["reason"]

    dupes = client.post("/v1/decisions", json=[good, good])
    assert dupes.status_code == 422 and dupes.json()["detail"][0]["field"] == "[1].claim_id"
    assert client.post("/v1/decisions", json=[good] * 101).json()["detail"][0]["field"] == "body"
    assert client.post("/v1/decisions", json="a claim").json()["detail"][0]["field"] == "body"
    assert client.get(f"/v1/claims/{good['claim_id']}").status_code == 404  # nothing refused was stored


def test_get_returns_the_stored_decision_and_the_ledger_holds_it(client, trained):
    records, _ = _claims(trained, API_DAY, 2, "API-GET-")
    posted = client.post("/v1/decisions", json=_payload(records.iloc[0].to_dict()), headers={"X-Request-Id": "r-1"})
    assert posted.status_code == 200 and posted.headers["X-Request-Id"] == posted.json()["request_id"] == "r-1"
    decision = posted.json()["decisions"][0]
    assert decision["trace_id"] == claim_trace_hex(decision["claim_id"])
    got = client.get(f"/v1/claims/{decision['claim_id']}")
    assert got.status_code == 200
    assert got.json() == decision
    assert decision["partition"] == f"api-{pd.Timestamp.now(tz='UTC'):%Y-%m-%d}"
    assert client.get("/v1/claims/NO-SUCH-CLAIM").status_code == 404

    rows = AuditLedger(get_engine(trained.db_url)).rows(decision["claim_id"])
    decided = [r for r in rows if r.event == "decision"]
    assert len(decided) == 1 and decided[0].actor == f"client:{client.client_id}"
    assert decided[0].trace_id == decision["trace_id"]
    assert json.loads(decided[0].versions) == decision["versions"]
    assert decided[0].snapshot_hash == decision["snapshot_hash"]
    assert json.loads(decided[0].payload)["route"] == decision["route"]


def test_the_sync_path_records_the_policy_in_force_once_before_its_first_decision(trained, tmp_path):
    records, _ = _claims(trained, API_DAY, 3, "API-POL-")
    apart = trained.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'policy.db'}"})
    _, key = register_client(apart, "policy-in-force")
    with as_client(create_app(apart), key) as other:
        for i in range(2):
            assert other.post("/v1/decisions", json=_payload(records.iloc[i].to_dict())).status_code == 200
    rows = AuditLedger(get_engine(apart.db_url)).rows()
    in_force = [r for r in rows if r.event == "policy_in_force"]
    policy = load_policy_set()
    assert len(in_force) == 1 and in_force[0].actor == ACTOR
    assert json.loads(in_force[0].payload) == {"policy": policy.label, "files": policy.versions}
    first_decision = min(r.seq for r in rows if r.event == "decision")
    assert in_force[0].seq < first_decision


def test_the_service_decides_and_reviews_under_one_policy_set_object(client):
    pinned = client.app.state.decision_service.pins.current()
    assert pinned.models.policy is client.app.state.review.policy


def test_api_decisions_follow_the_decision_contract_with_a_structured_rationale(client, trained):
    records, _ = _claims(trained, API_DAY, 5, "API-RAT-")
    response = client.post("/v1/decisions", json=[_payload(r) for r in records.to_dict("records")])
    assert response.status_code == 200, response.text
    stored_rows = read_table(get_engine(trained.db_url), decisions_table).set_index("claim_id")
    for body in response.json()["decisions"]:
        decision = Decision.model_validate(body)
        kinds = [item.kind for item in decision.rationale]
        assert kinds[0] == "score" and decision.rationale[0].value == round(decision.score, 6)
        assert kinds.count("feature") == 3 and set(kinds) <= {"score", "feature", "evidence", "module"}
        for item in decision.rationale:
            assert item.text == rationale_text(item.kind, item.name, item.value, item.effect, item.band,
                                               item.version)
        # every registered decision module, its version and what it said, in the versions and the rationale
        modules = decision.versions["modules"]
        assert set(modules) == set(load_modules())
        assert {i.name: (i.version, i.value) for i in decision.rationale if i.kind == "module"} == {
            n: (m["version"], m["state"]) for n, m in modules.items()}
        assert json.loads(stored_rows.at[decision.claim_id, "rationale"]) == body["rationale"]


def test_openapi_and_metrics_are_served(client, trained):
    records, _ = _claims(trained, API_DAY, 2, "API-MET-")
    assert client.post("/v1/decisions", json=_payload(records.iloc[0].to_dict())).status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/decisions", "/v1/claims/{claim_id}"} <= set(paths)
    text = client.get("/metrics").text
    assert 'aios_http_request_duration_seconds_bucket{le="0.02",method="POST",path="/v1/decisions"' in text
    assert "aios_decisions_total{route=" in text
    assert "aios_posterior_p_fraud_bucket" in text
    assert "aios_model_pinned{" in text


def test_a_moved_alias_is_picked_up_without_a_failed_request(client, trained):
    s = trained
    old = resolve_alias(s.mlflow_uri, s.model_name, s.model_alias)
    # a new version of the same model: the decisions keep their values, only the recorded version moves
    new = log_and_register(load_model(s.mlflow_uri, s.model_name, old.version), tracking_uri=s.mlflow_uri,
                           artifact_root=s.mlflow_artifacts_dir, name=s.model_name, alias=None,
                           metrics={}, params={"retrained_for": "test_decision_api"})
    records, _ = _claims(s, API_DAY, 6, "API-PIN-")
    # re-submitted again and again: a claim without an open review case (one under review is not replaced)
    first = client.post("/v1/decisions", json=[_payload(r) for r in records.to_dict("records")]).json()["decisions"]
    payload = next(_payload(r) for r, d in zip(records.to_dict("records"), first) if d["route"] != "human_review")
    seen: list[tuple[int, str]] = []
    mover = threading.Timer(0.5, set_alias, args=(s.mlflow_uri, s.model_name, s.model_alias, new.version))
    mover.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # bounded: until the new version decides, or 60 s
            r = client.post("/v1/decisions", json=payload)
            version = r.json()["decisions"][0]["versions"]["classifier"] if r.status_code == 200 else ""
            seen.append((r.status_code, version))
            if version == f"{s.model_name}/{new.version}":
                break
    finally:
        mover.join()
        set_alias(s.mlflow_uri, s.model_name, s.model_alias, old.version)  # other tests expect the champion
    assert all(code == 200 for code, _ in seen), seen
    versions = [v for _, v in seen]
    assert versions[-1] == f"{s.model_name}/{new.version}", "the service never picked up the moved alias"
    switch = versions.index(versions[-1])
    assert set(versions[:switch]) == {f"{s.model_name}/{old.version}"} and switch > 0
    pinned = [r for r in AuditLedger(get_engine(s.db_url)).rows() if r.event == "model_pinned"]
    assert json.loads(pinned[-1].versions)["classifier"] == f"{s.model_name}/{new.version}"
    assert 'aios_model_reloads_total{outcome="swapped"}' in client.get("/metrics").text
    with get_engine(s.db_url).connect() as conn:
        stored = conn.execute(sa.select(decisions_table.c.versions).where(
            decisions_table.c.claim_id == payload["claim_id"])).scalar_one()
    assert json.loads(stored)["classifier"] == f"{s.model_name}/{new.version}"


def test_concurrent_jobs_are_batched_and_a_failing_job_fails_alone():
    from concurrent.futures import ThreadPoolExecutor

    from service.batcher import MicroBatcher

    entered, gate = threading.Event(), threading.Event()
    calls: list[list[int]] = []

    def process(jobs):
        entered.set()
        gate.wait(5)
        calls.append([x for job in jobs for x in job.items])
        if any(x < 0 for job in jobs for x in job.items):
            raise ValueError("negative")
        return [[x * 2 for x in job.items] for job in jobs]

    batcher = MicroBatcher(process)
    batcher.start()
    try:
        with ThreadPoolExecutor(10) as pool:
            blocker = pool.submit(batcher.submit, [100], frozenset({"blocker"}))
            assert entered.wait(5)  # the worker is busy: everything below waits together
            futures = [pool.submit(batcher.submit, [i], frozenset({str(i % 6)})) for i in range(8)]
            bad = pool.submit(batcher.submit, [-1], frozenset({"bad"}))
            time.sleep(0.3)
            gate.set()
            assert blocker.result(5) == [200]
            assert [f.result(5) for f in futures] == [[i * 2] for i in range(8)]
            with pytest.raises(ValueError, match="negative"):
                bad.result(5)
    finally:
        batcher.stop()
    shared = [c for c in calls if -1 in c and len(c) > 1]
    assert shared, calls  # the failing job was batched with good ones ...
    assert [-1] in calls  # ... then retried alone and failed alone
    good_alone = [c for c in calls if len(c) == 1 and c[0] >= 0 and c[0] != 100]
    assert {x for c in good_alone for x in c} >= set(shared[0]) - {-1}  # its batch-mates were answered singly
