"""Nobody in where they do not belong: every API route x client scope, and the probes of issue 13 as
regression tests (each failed on the code before the fix).

API: keys with scopes, per-client rate, claims owned by the client that sent them, no replacement of a
claim under review, allowed hosts, body and field limits, ids from one charset. Review UI: dual control
of approving accounts, separation of duties, four eyes in the policy's currency, sign-in throttling
without argon2 for refused attempts, a bounded hashing pool, sign-in events in the ledger.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import date, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aios.kernel import errors
from aios.kernel.db import get_engine
from aios.kernel.settings import Profile, Settings
from aios.usecases import review_workflow as workflow
from aios.usecases.sign_in import sign_in as use_sign_in
from connectors.documents import DocumentStore
from connectors.stores import accounts
from connectors.stores.clients import SCOPES, revoke_client
from connectors.stores.decisions import decisions_table, enqueue_reviews, read_table
from connectors.stores.ledger import AuditLedger
from models.generator import Book, generate_claims, to_inbox_records
from models.validation import validate_claims
from service.app import create_app
from service.review import install

try:
    from tests.apikit import BASE_URL, as_client, register_client
    from tests.reviewkit import PASSWORD, make_env
except ImportError:  # tests/ itself is on sys.path
    from apikit import BASE_URL, as_client, register_client
    from reviewkit import PASSWORD, make_env

DAY = date(2026, 11, 26)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _records(settings: Settings, n: int, prefix: str) -> tuple[list[dict], pd.DataFrame]:
    """`n` generated claims as API payloads (the same ids for the same prefix)."""
    book = Book(pd.read_parquet(settings.policies_path))
    claims, docs = generate_claims(book, DAY, 1, n + 10, seed=5, id_prefix=prefix)
    recs = [{k: v for k, v in r.items() if not k.startswith("_") and v is not None and v == v and v != ""}
            for r in to_inbox_records(claims).to_dict("records")]
    assert len(recs) >= n
    return recs[:n], docs


def _ledger_seq(engine) -> int:
    from connectors.stores.ledger import audit_ledger

    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(audit_ledger.c.seq), 0))).scalar_one())


# ---------------------------------------------------------------------------------------------
# the decision API: one app, clients of every scope


@pytest.fixture(scope="module")
def api(trained):
    """The service app with a client per scope, one with all, one revoked, and a slow one (3 a minute)."""
    app = create_app(trained, pin_check_seconds=60)
    keys: dict[str, str | None] = {"anonymous": None, "bad key": "aios_0000000000000000_not-a-real-secret"}
    ids: dict[str, str] = {}
    for scope in SCOPES:
        ids[scope], keys[scope] = register_client(trained, f"sec-{scope.replace(':', '-')}", [scope])
    ids["all"], keys["all"] = register_client(trained, "sec-all")
    ids["other"], keys["other"] = register_client(trained, "sec-other")
    ids["revoked"], keys["revoked"] = register_client(trained, "sec-revoked")
    revoke_client(get_engine(trained.db_url), "sec-revoked")
    ids["slow"], keys["slow"] = register_client(trained, "sec-slow", rate_per_minute=3)
    with TestClient(app, base_url=BASE_URL):  # lifespan: models pinned
        yield app, keys, ids


def _call(app: FastAPI, key: str | None, method: str, url: str, **kw):
    return as_client(app, key).request(method, url, **kw)


KINDS = ("anonymous", "bad key", "revoked", *SCOPES, "all")
# route -> scope it needs (None: open to anyone)
ROUTES = {("POST", "/v1/decisions"): "decisions:write", ("GET", "/v1/claims/{claim_id}"): "claims:read",
          ("GET", "/metrics"): "metrics:read", ("GET", "/healthz"): None, ("GET", "/readyz"): None,
          ("GET", "/openapi.json"): None}


@pytest.fixture(scope="module")
def owned_claim(api, trained):
    """A claim the `all` client decided (so claims:read clients other than it must not see it)."""
    app, keys, _ = api
    recs, _ = _records(trained, 1, "SEC-OWN-")
    r = _call(app, keys["all"], "POST", "/v1/decisions", json=recs[0])
    assert r.status_code == 200, r.text
    return recs[0]["claim_id"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("route", list(ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_every_api_route_for_every_client_scope(api, trained, owned_claim, route, kind):
    app, keys, _ = api
    method, path = route
    need = ROUTES[route]
    body = None
    if method == "POST":
        recs, _ = _records(trained, 1, f"SEC-M-{abs(hash(kind)) % 10**6}-")
        body = recs[0]
    engine = get_engine(trained.db_url)
    before = _ledger_seq(engine)
    url = path.replace("{claim_id}", owned_claim)
    r = _call(app, keys[kind], method, url, json=body)
    if need is None:
        expected = 200
    elif kind in ("anonymous", "bad key", "revoked"):
        expected = 401
    elif kind == "all" or kind == need:
        expected = 200
    else:
        expected = 403
    if method == "GET" and path.startswith("/v1/claims") and kind == need:
        expected = 404  # a claims:read client sees only its own API claims (and batch ones), not `all`'s
    assert r.status_code == expected, (kind, route, r.status_code, r.text[:300])
    if expected == 401:
        assert r.headers.get("www-authenticate", "").startswith("Bearer")
    if method == "POST" and expected != 200:
        assert _ledger_seq(engine) == before  # nothing written


def test_every_route_of_the_app_is_in_a_matrix(api):
    """API routes are walked here, review routes in test_review_access; nothing else is mounted."""
    app, _, _ = api
    from service.review.routes import router as review_router

    review = {(m, r.path) for r in review_router.routes for m in r.methods}
    mounted = {(m, r.path) for r in app.routes for m in (getattr(r, "methods", None) or ())}
    assert mounted - review - set(ROUTES) <= {("HEAD", "/openapi.json"), ("GET", "/openapi.json")}, \
        mounted - review - set(ROUTES)


def test_swagger_ui_and_redoc_are_not_served_and_load_no_cdn(api):
    app, keys, _ = api
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert _call(app, keys["all"], "GET", path).status_code == 404
    assert "cdn" not in _call(app, None, "GET", "/openapi.json").text.lower()


def test_openapi_is_not_served_outside_the_embedded_profile(tmp_path):
    assert Settings(home=tmp_path).serve_api_docs is True
    assert Settings(home=tmp_path, profile=Profile.production).serve_api_docs is False
    off = Settings(home=tmp_path, api_docs=False)
    assert _call(create_app(off), None, "GET", "/openapi.json").status_code == 404


def test_unknown_host_header_is_refused(api):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not reach the API."""
    app, keys, _ = api
    r = TestClient(app, base_url="http://evil.example").get("/healthz")
    assert r.status_code == 400
    r = TestClient(app, base_url="http://evil.example", headers={"Authorization": f"Bearer {keys['all']}"}) \
        .get("/metrics")
    assert r.status_code == 400


def test_a_client_over_its_rate_gets_429_with_retry_after(api):
    app, keys, _ = api
    codes = [_call(app, keys["slow"], "GET", "/v1/claims/NOPE").status_code for _ in range(3)]
    assert codes == [404, 404, 404]  # a bucket of 3 a minute
    r = _call(app, keys["slow"], "GET", "/v1/claims/NOPE")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_resubmitting_a_claim_under_open_review_is_409_and_the_reviewers_decision_stays(api, trained):
    app, keys, _ = api
    engine = get_engine(trained.db_url)
    recs, _ = _records(trained, 1, "SEC-REV-")
    first = _call(app, keys["all"], "POST", "/v1/decisions", json=recs[0])
    assert first.status_code == 200
    decided = first.json()["decisions"][0]
    stored = read_table(engine, decisions_table).query("claim_id == @decided['claim_id']")
    enqueue_reviews(engine, decided["partition"], stored.assign(route="human_review"))  # a case opens
    seq = _ledger_seq(engine)
    again = _call(app, keys["all"], "POST", "/v1/decisions", json={**recs[0], "amount": 99_999.0})
    assert again.status_code == 409, again.text
    assert again.json()["detail"]["reasons"][decided["claim_id"]].startswith("its review case is open")
    after = read_table(engine, decisions_table).query("claim_id == @decided['claim_id']")
    assert float(after["amount"].iat[0]) == float(stored["amount"].iat[0])
    assert after["decided_at"].iat[0] == stored["decided_at"].iat[0]
    assert _ledger_seq(engine) == seq


def test_another_clients_claim_can_be_neither_read_nor_replaced(api, trained, owned_claim):
    app, keys, _ = api
    assert _call(app, keys["other"], "GET", f"/v1/claims/{owned_claim}").status_code == 404
    assert _call(app, keys["all"], "GET", f"/v1/claims/{owned_claim}").status_code == 200
    recs, _ = _records(trained, 1, "SEC-OWN-")  # the same generated claim id
    r = _call(app, keys["other"], "POST", "/v1/decisions", json=recs[0])
    assert r.status_code == 409 and "another client" in json.dumps(r.json())


def test_api_writes_name_the_client_in_the_ledger(api, trained, owned_claim):
    _, _, ids = api
    rows = [r for r in AuditLedger(get_engine(trained.db_url)).rows(owned_claim) if r.event == "decision"]
    assert rows and {r.actor for r in rows} == {f"client:{ids['all']}"}


def test_inline_documents_cannot_overwrite_another_claims_or_shared_evidence(api, trained):
    app, keys, _ = api
    store = DocumentStore(trained.documents_dir)
    store.write("DOC-SHARED-SEC", "Total: 120.00 EUR")  # the insurer's intake put it there
    recs, _ = _records(trained, 2, "SEC-DOC-")
    victim, attacker = recs
    victim = {**victim, "document_refs": ["DOC-V1"], "documents": [{"doc_ref": "DOC-V1", "text": "Total: 80.00 EUR"}]}
    assert _call(app, keys["all"], "POST", "/v1/decisions", json=victim).status_code == 200
    poison = {**attacker, "document_refs": ["DOC-V1", "DOC-SHARED-SEC"],
              "documents": [{"doc_ref": "DOC-V1", "text": "Total: 99999.00 EUR"},
                            {"doc_ref": "DOC-SHARED-SEC", "text": "Total: 99999.00 EUR"}]}
    assert _call(app, keys["other"], "POST", "/v1/decisions", json=poison).status_code == 200
    assert store.read_for_claim(victim["claim_id"], "DOC-V1") == "Total: 80.00 EUR"
    assert store.read("DOC-SHARED-SEC") == "Total: 120.00 EUR"
    assert store.read("DOC-V1") is None  # API documents never land in the shared namespace
    assert store.read_for_claim(attacker["claim_id"], "DOC-V1") == "Total: 99999.00 EUR"  # its own copy


def test_an_oversized_body_is_413_and_nothing_is_read(api, trained):
    app, keys, _ = api
    recs, _ = _records(trained, 1, "SEC-BIG-")
    r = _call(app, keys["all"], "POST", "/v1/decisions", json={**recs[0], "description": "x" * 10_000_000})
    assert r.status_code == 413
    assert _call(app, keys["all"], "GET", f"/v1/claims/{recs[0]['claim_id']}").status_code == 404


def test_document_count_and_size_and_numeric_ranges_get_422_naming_the_field(api, trained):
    app, keys, _ = api
    recs, _ = _records(trained, 1, "SEC-LIM-")
    base = recs[0]
    refs = [f"DOC-L{i}" for i in range(21)]
    cases = {
        "documents": {**base, "document_refs": refs[:20],
                      "documents": [{"doc_ref": r, "text": "x"} for r in refs[:20]] + [{"doc_ref": "X", "text": "x"}]},
        "document_refs": {**base, "document_refs": refs},
        "documents[0].text": {**base, "document_refs": ["D1"], "documents": [{"doc_ref": "D1", "text": "é" * 40_000}]},
        "customer_tenure_days": {**base, "customer_tenure_days": 10 ** 30},
        "description": {**base, "description": "x" * 20_000},
        "submitted_at": {**base, "submitted_at": "9999-01-01T00:00:00Z", "incident_date": "9998-12-31"},
        "prior_claims": {**base, "prior_claims": -1},
    }
    for field, body in cases.items():
        r = _call(app, keys["all"], "POST", "/v1/decisions", json=body)
        assert r.status_code == 422, (field, r.status_code, r.text[:300])
        assert field in {e["field"] for e in r.json()["detail"]}, (field, r.json())
    assert _call(app, keys["all"], "GET", f"/v1/claims/{base['claim_id']}").status_code == 404


BAD_IDS = {"slash": "A/B", "traversal": "../../etc/passwd", "markup": "<script>alert(1)</script>",
           "nul": "A\x00B", "rtl override": "A\u202eB", "too long": "A" * 10_000, "leading dot": ".hidden"}


@pytest.mark.parametrize("name", list(BAD_IDS))
def test_bad_ids_get_422_naming_the_field_never_500(api, trained, name):
    app, keys, _ = api
    bad = BAD_IDS[name]
    recs, _ = _records(trained, 1, "SEC-ID-")
    base = recs[0]
    for field, body in {"claim_id": {**base, "claim_id": bad},
                        "document_refs[0]": {**base, "document_refs": [bad]},
                        "documents[0].doc_ref": {**base, "document_refs": ["D1"],
                                                 "documents": [{"doc_ref": bad, "text": "t"}]}}.items():
        r = _call(app, keys["all"], "POST", "/v1/decisions", json=body)
        assert r.status_code == 422, (field, r.status_code, r.text[:300])
        fields = {e["field"] for e in r.json()["detail"]}
        assert field in fields or field.replace("[0]", ".0") in fields, (field, fields)
        assert any("identifier" in e["reason"] or "at most 80 characters" in e["reason"]
                   for e in r.json()["detail"]), r.json()
    if "\x00" not in bad and "/" not in bad:
        assert _call(app, keys["all"], "GET", f"/v1/claims/{bad}").status_code in (404, 422)


def test_batch_validation_refuses_bad_ids_with_the_same_rule():
    good = {"claim_id": "C-1", "policy_id": "POL-1", "customer_id": "CU-1", "submitted_at": "2026-11-01T10:00:00",
            "incident_date": "2026-10-30", "claim_type": "auto", "amount": 100.0, "currency": "EUR",
            "channel": "web", "customer_tenure_days": 10, "prior_claims": 0, "document_refs": "DOC-1"}
    rows = pd.DataFrame([good, {**good, "claim_id": "<script>"}, {**good, "claim_id": "C-3",
                                                                    "document_refs": "../../etc/passwd"},
                         {**good, "claim_id": "C-4", "customer_tenure_days": 10 ** 12}])
    result = validate_claims(rows)
    assert list(result.valid["claim_id"]) == ["C-1"]
    reasons = {str(c): " ".join(r) for c, r in zip(result.quarantined["claim_id"], result.quarantined["reasons"])}
    assert "claim_id: must be an identifier" in reasons["<script>"]
    assert "document_refs.0: must be an identifier" in reasons["C-3"]
    assert "customer_tenure_days" in reasons["C-4"]


def test_document_store_refuses_paths_outside_itself(tmp_path):
    store = DocumentStore(tmp_path)
    for ref in ("../../etc/passwd", "a\x00b", "claims", ".x", "a/b"):
        with pytest.raises(ValueError, match="identifier"):
            store.read(ref)
        with pytest.raises(ValueError, match="identifier"):
            store.write_for_claim("C-1", ref, "t")


def test_clients_cli_adds_lists_and_revokes(trained):
    from aios.cli.main import app as cli

    runner = CliRunner()
    added = runner.invoke(cli, ["clients", "add", "sec-cli", "--scope", "claims:read", "--rate", "60"])
    assert added.exit_code == 0, added.output
    key = added.output.strip().splitlines()[-1]
    assert key.startswith("aios_")
    listed = runner.invoke(cli, ["clients", "list"])
    assert "sec-cli" in listed.output and key not in listed.output
    assert runner.invoke(cli, ["clients", "add", "sec-x", "--scope", "root"]).exit_code == 2
    app = create_app(trained)
    assert _call(app, key, "GET", "/v1/claims/NOPE").status_code == 404
    assert runner.invoke(cli, ["clients", "revoke", "sec-cli"]).exit_code == 0
    assert _call(app, key, "GET", "/v1/claims/NOPE").status_code == 401
    client_id = key[len("aios_"):].split("_", 1)[0]
    changes = [json.loads(r.payload)["change"] for r in AuditLedger(get_engine(trained.db_url)).rows()
               if r.event == "client_change" and json.loads(r.payload)["client_id"] == client_id]
    assert changes == ["added", "revoked"]


# ---------------------------------------------------------------------------------------------
# the review UI: accounts, four eyes, sign-in


@pytest.fixture()
def env(tmp_path):
    return make_env(tmp_path)


def _ui(env) -> FastAPI:
    app = FastAPI()
    install(app, env.settings)
    return app


def _login(client: TestClient, name: str, password: str = PASSWORD):
    token = _CSRF.search(client.get("/review/login").text).group(1)
    return client.post("/review/login", data={"username": name, "password": password, "csrf_token": token},
                       follow_redirects=False)


def _csrf(client: TestClient, path: str) -> str:
    return _CSRF.search(client.get(path).text).group(1)


def test_an_admin_cannot_approve_a_large_claim_through_two_accounts_they_created(env):
    """The probe: an admin made two senior accounts and approved 22,624 EUR through both."""
    env.user("alice", "admin")
    env.cases("2026-11-20", {"BIG-1": (22_624.0, 0.2)})
    app = _ui(env)
    alice = TestClient(app)
    assert _login(alice, "alice").status_code == 303
    for name in ("sock1", "sock2"):
        r = alice.post("/review/users", data={"name": name, "role": "senior_reviewer", "password": PASSWORD,
                                              "csrf_token": _csrf(alice, "/review/users")}, follow_redirects=False)
        assert r.status_code == 303
    for name in ("sock1", "sock2"):
        assert _login(TestClient(app), name).status_code == 401  # pending: no second admin confirmed them
    # and alice cannot confirm her own accounts
    r = alice.post("/review/users/sock1/confirm", data={"csrf_token": _csrf(alice, "/review/users")})
    assert r.status_code == 403 and "different administrator" in r.text
    assert env.status("BIG-1") == "open"
    users = {u["name"]: u for u in accounts.list_users(env.engine)}
    assert users["sock1"]["pending"] and users["sock1"]["created_by"] == "alice"


def test_a_second_admin_confirms_an_approving_account_and_it_can_then_sign_in(env):
    env.user("alice", "admin")
    env.user("carol", "admin")
    app = _ui(env)
    alice, carol = TestClient(app), TestClient(app)
    _login(alice, "alice"), _login(carol, "carol")
    alice.post("/review/users", data={"name": "newsenior", "role": "senior_reviewer", "password": PASSWORD,
                                      "csrf_token": _csrf(alice, "/review/users")})
    alice.post("/review/users", data={"name": "newanalyst", "role": "analyst", "password": PASSWORD,
                                      "csrf_token": _csrf(alice, "/review/users")})
    assert _login(TestClient(app), "newanalyst").status_code == 303  # not an approving role: no dual control
    r = carol.post("/review/users/newsenior/confirm", data={"csrf_token": _csrf(carol, "/review/users")},
                   follow_redirects=False)
    assert r.status_code == 303
    assert _login(TestClient(app), "newsenior").status_code == 303
    users = {u["name"]: u for u in accounts.list_users(env.engine)}
    assert users["newsenior"]["created_by"] == "alice" and users["newsenior"]["confirmed_by"] == "carol"
    changes = [json.loads(r.payload) for r in AuditLedger(env.engine).rows() if r.event == "user_change"]
    assert {"change": "confirmed", "role": "senior_reviewer", "user": "newsenior"}.items() <= changes[-1].items()


def test_nobody_approves_a_claim_next_to_an_account_they_provisioned(env):
    env.user("sue", "senior_reviewer")
    accounts.create_user(env.engine, "sam", "senior_reviewer", PASSWORD, env.policy.roles, created_by="sue")
    env.cases("2026-11-20", {"BIG-2": (20_000.0, 0.2)})
    sue, sam = accounts.User("sue", "senior_reviewer"), accounts.User("sam", "senior_reviewer")
    workflow.claim_case(env.engine, "BIG-2", sue, env.policy)
    workflow.record_review_decision(env.engine, "BIG-2", sue, "approve", "fine", env.policy)
    workflow.claim_case(env.engine, "BIG-2", sam, env.policy)
    with pytest.raises(errors.NotAllowed, match="separation of duties"):
        workflow.record_review_decision(env.engine, "BIG-2", sam, "approve", "fine too", env.policy)
    assert env.status("BIG-2") == "open"


def test_four_eyes_compares_the_amount_in_the_policys_currency_and_records_the_rates(env):
    """9,000 GBP is above the 10,000 EUR four-eyes line once converted; the raw number is not."""
    env.cases("2026-11-20", {"GBP-1": (9_000.0, 0.2)})
    from connectors.stores.decisions import review_cases
    with env.engine.begin() as conn:
        conn.execute(review_cases.update().where(review_cases.c.claim_id == "GBP-1").values(currency="GBP"))
    sue = env.user("sue", "senior_reviewer")
    workflow.claim_case(env.engine, "GBP-1", sue, env.policy)
    result = workflow.record_review_decision(env.engine, "GBP-1", sue, "approve", "fine", env.policy)
    assert result.stage == "awaiting_second" and env.status("GBP-1") == "open"
    fx = result.payload["fx"]
    assert fx["fx_version"] == env.policy.fx.version and fx["currency"] == "GBP"
    assert fx["amount_in_base"] == pytest.approx(9_000.0 * env.policy.fx.rates["GBP"])
    row = [r for r in AuditLedger(env.engine).rows("GBP-1") if r.event == "review_action"][-1]
    assert json.loads(row.payload)["fx"]["fx_version"] == env.policy.fx.version
    assert not env.policy.may_pay(9_000.0, "human_review", [("sue", "senior_reviewer")], currency="GBP")
    assert env.policy.may_pay(9_000.0, "human_review", [("sue", "senior_reviewer")], currency="EUR")


def test_fifty_wrong_passwords_then_the_right_one_is_refused_without_argon2(env):
    env.user("rita", "reviewer")
    client = TestClient(_ui(env))
    pool = accounts.HASH_POOL
    codes = []
    computations = []
    for _ in range(50):
        before = pool.computations
        codes.append(_login(client, "rita", "wrong password").status_code)
        computations.append(pool.computations - before)
    free = int(env.policy.signin_limits["free_failures"])
    assert codes[:free] == [401] * free and set(codes[free:]) <= {401, 429}
    assert codes.count(429) >= 40  # exponential back-off: at most a few attempts get through in a test's time
    assert all(n == 0 for code, n in zip(codes, computations) if code == 429)  # refused: no argon2 at all
    assert all(n == 1 for code, n in zip(codes, computations) if code == 401)
    r = _login(client, "rita", PASSWORD)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_an_account_is_locked_after_the_policy_count_even_when_spread_out(env):
    env.user("rita", "reviewer")
    limits = env.policy.signin_limits
    t = accounts.utcnow()
    for i in range(int(limits["lockout_failures"])):
        t += timedelta(seconds=limits["backoff_max_seconds"] + 1)  # each attempt after its back-off
        assert use_sign_in(env.engine, env.policy, "rita", "wrong", f"10.0.0.{i}", now=t) is None
    t += timedelta(seconds=limits["backoff_max_seconds"] + 1)
    with pytest.raises(errors.Throttled):
        use_sign_in(env.engine, env.policy, "rita", PASSWORD, "10.0.1.1", now=t)
    t += timedelta(seconds=limits["lockout_seconds"] + 1)
    assert use_sign_in(env.engine, env.policy, "rita", PASSWORD, "10.0.1.1", now=t) is not None


def test_one_address_trying_many_accounts_is_throttled(env):
    for i in range(3):
        env.user(f"r{i}", "reviewer")
    limits = env.policy.signin_limits
    t = accounts.utcnow()
    n = int(limits["address_free_failures"])
    for i in range(n):
        assert use_sign_in(env.engine, env.policy, f"r{i % 3}x", "wrong", "10.9.9.9", now=t) is None
    with pytest.raises(errors.Throttled):
        use_sign_in(env.engine, env.policy, "r0", PASSWORD, "10.9.9.9", now=t)
    assert use_sign_in(env.engine, env.policy, "r0", PASSWORD, "10.9.9.10", now=t) is not None


def test_password_hashing_runs_in_a_bounded_pool():
    pool = accounts.HashPool(slots=2, wait_s=5)
    running, peak, lock = [0], [0], threading.Lock()

    def work() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    threads = [threading.Thread(target=pool.run, args=(work,)) for _ in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert peak[0] == 2 and pool.computations == 12
    saturated = accounts.HashPool(slots=1, wait_s=0.01)
    holder = threading.Thread(target=saturated.run, args=(lambda: time.sleep(0.3),))
    holder.start()
    time.sleep(0.05)
    with pytest.raises(errors.Busy):
        saturated.run(lambda: None)
    holder.join()


def test_sign_in_sign_out_and_failures_are_in_the_ledger_with_the_address(env):
    env.user("rita", "reviewer")
    client = TestClient(_ui(env))
    _login(client, "rita", "wrong password")
    _login(client, "s3cret-typed-as-name", "x")
    assert _login(client, "rita").status_code == 303
    client.post("/review/logout", data={"csrf_token": _csrf(client, "/review/queue")})
    rows = [(r.event, r.actor, json.loads(r.payload)) for r in AuditLedger(env.engine).rows()
            if r.event.startswith("sign_")]
    assert [(e, a) for e, a, _ in rows] == [("sign_in_failed", "rita"), ("sign_in_failed", "<unknown>"),
                                            ("sign_in", "rita"), ("sign_out", "rita")]
    assert all(p["address"] == "testclient" for _, _, p in rows)
    assert "s3cret-typed-as-name" not in json.dumps(rows)


def test_a_new_sign_in_ends_the_browsers_earlier_session(env):
    env.user("rita", "reviewer")
    env.user("rob", "reviewer")
    client = TestClient(_ui(env))
    assert _login(client, "rita").status_code == 303
    old = client.cookies.get("aios_review_session")
    # the same browser signs in again (a signed-in browser is redirected away from the form, so take the
    # form's token from a fresh one)
    fresh = TestClient(client.app)
    token = _CSRF.search(fresh.get("/review/login").text).group(1)
    client.cookies.set("aios_review_login", fresh.cookies.get("aios_review_login"), path="/review")
    r = client.post("/review/login", data={"username": "rob", "password": PASSWORD, "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303
    from connectors.stores.sessions import load_session
    assert load_session(env.engine, old) is None
    assert load_session(env.engine, client.cookies.get("aios_review_session")).user.name == "rob"


def test_review_pages_url_encode_ids(env):
    """A case whose id came from before the id rule (here with markup and a colon) still links safely."""
    env.cases("2026-11-20", {"<script>x": (100.0, 0.2), "C:1": (100.0, 0.2)})
    env.user("rita", "reviewer")
    client = TestClient(_ui(env))
    _login(client, "rita")
    page = client.get("/review/queue").text
    assert 'href="/review/cases/%3Cscript%3Ex"' in page and 'href="/review/cases/C%3A1"' in page
    assert "<script>x" not in page
    assert client.get("/review/cases/%3Cscript%3Ex").status_code == 200
