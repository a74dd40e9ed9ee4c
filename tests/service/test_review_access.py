"""Who may do what in the review UI: every role against every endpoint, CSRF, sign-in, and what reaches logs."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from connectors.stores import reviews
from connectors.stores import accounts
from connectors.stores import sessions
from aios.usecases import review_workflow as workflow
from connectors.stores.decisions import review_cases
from service.review import install

try:
    from tests.reviewkit import PASSWORD, ReviewEnv, make_env
except ImportError:  # tests/ itself is on sys.path (rootdir conftest, no package)
    from reviewkit import PASSWORD, ReviewEnv, make_env

DAY = "2026-10-03"
ROLES = ("reviewer", "senior_reviewer", "analyst", "auditor", "admin")
ANON = "anonymous"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class World:
    env: ReviewEnv
    app: FastAPI
    clients: dict[str, TestClient]
    csrf: dict[str, str]
    counter: list[int]

    def new_case(self, amount: float = 800.0) -> str:
        self.counter[0] += 1
        cid = f"ACC-{self.counter[0]:04d}"
        self.env.cases(DAY, {cid: (amount, 0.2)})
        return cid


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> tuple[TestClient, str]:
    """Sign `client` in through the form; returns it and its session's CSRF token."""
    page = client.get("/review/login")
    token = _CSRF.search(page.text).group(1)
    r = client.post("/review/login", data={"username": name, "password": password, "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    home = client.get(r.headers["location"])
    return client, _CSRF.search(home.text).group(1)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    env = make_env(tmp_path_factory.mktemp("review-access"))
    app = FastAPI()
    install(app, env.settings)
    clients, csrf = {}, {}
    for role in ROLES:
        env.user(f"u-{role}", role)
        clients[role], csrf[role] = sign_in(TestClient(app), f"u-{role}")
    clients[ANON], csrf[ANON] = TestClient(app), "no-session"
    return World(env, app, clients, csrf, [0])


# ---------------------------------------------------------------------------------------------
# the access matrix

Prepare = Callable[[World, str], dict]  # (world, role) -> request: method, url, data; may set up state


def _get(path: str) -> Prepare:
    return lambda w, role: {"method": "GET", "url": path.format(case=w.new_case())}


def _claim(w: World, role: str) -> dict:
    return {"method": "POST", "url": f"/review/cases/{w.new_case()}/claim", "data": {}}


def _release(w: World, role: str) -> dict:
    cid = w.new_case()
    if w.env.policy.is_allowed(role, "claim_case"):
        workflow.claim_case(w.env.engine, cid, accounts.User(f"u-{role}", role), w.env.policy)
    return {"method": "POST", "url": f"/review/cases/{cid}/release", "data": {}}


def _decide(decision: str) -> Prepare:
    def prep(w: World, role: str) -> dict:
        cid = w.new_case()
        if w.env.policy.is_allowed(role, "claim_case"):
            workflow.claim_case(w.env.engine, cid, accounts.User(f"u-{role}", role), w.env.policy)
        return {"method": "POST", "url": f"/review/cases/{cid}/decision",
                "data": {"decision": decision, "reason": "checked the invoice"}}
    return prep


def _new_user(w: World, role: str) -> dict:
    w.counter[0] += 1
    return {"method": "POST", "url": "/review/users",
            "data": {"name": f"new-{w.counter[0]}", "role": "reviewer", "password": "a long password"}}


def _disable(w: World, role: str) -> dict:
    w.counter[0] += 1
    name = f"victim-{w.counter[0]}"
    w.env.user(name, "reviewer")
    return {"method": "POST", "url": f"/review/users/{name}/active", "data": {"active": "0"}}


def _confirm(w: World, role: str) -> dict:
    w.counter[0] += 1
    name = f"pending-{w.counter[0]}"
    accounts.create_user(w.env.engine, name, "senior_reviewer", PASSWORD, w.env.policy.roles,
                         created_by="another-admin", pending=True)
    return {"method": "POST", "url": f"/review/users/{name}/confirm", "data": {}}


EVERY_SIGNED_IN = set(ROLES)
WORKERS = {"reviewer", "senior_reviewer"}
READERS = {"reviewer", "senior_reviewer", "analyst", "auditor"}
METRICS = {"senior_reviewer", "analyst", "auditor", "admin"}
# endpoint -> (how to call it, roles allowed, status when allowed)
ENDPOINTS: dict[str, tuple[Prepare, set[str], int]] = {
    "GET /review/": (_get("/review/"), EVERY_SIGNED_IN, 303),
    "GET /review/queue": (_get("/review/queue"), READERS, 200),
    "GET /review/cases/{id}": (_get("/review/cases/{case}"), READERS, 200),
    "POST /review/cases/{id}/claim": (_claim, WORKERS, 303),
    "POST /review/cases/{id}/release": (_release, WORKERS, 303),
    "POST /review/cases/{id}/decision approve": (_decide("approve"), WORKERS, 303),
    "POST /review/cases/{id}/decision reject": (_decide("reject"), WORKERS, 303),
    "POST /review/cases/{id}/decision escalate": (_decide("escalate"), WORKERS, 303),
    "GET /review/metrics": (_get("/review/metrics"), METRICS, 200),
    "GET /review/metrics.json": (_get("/review/metrics.json"), METRICS, 200),
    "GET /review/audit": (_get("/review/audit"), {"auditor"}, 200),
    "GET /review/users": (_get("/review/users"), {"admin"}, 200),
    "POST /review/users": (_new_user, {"admin"}, 303),
    "POST /review/users/{name}/active": (_disable, {"admin"}, 303),
    "POST /review/users/{name}/confirm": (_confirm, {"admin"}, 303),
}


def _state(w: World) -> tuple:
    with w.env.engine.connect() as conn:
        cases = conn.execute(sa.select(review_cases.c.claim_id, review_cases.c.status)
                             .order_by(review_cases.c.claim_id)).all()
        acts = conn.execute(sa.select(sa.func.count()).select_from(reviews.review_actions)).scalar_one()
    return tuple(cases), acts, tuple((u["name"], u["active"], u["pending"]) for u in accounts.list_users(w.env.engine))


@pytest.mark.parametrize("role", [*ROLES, ANON])
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_every_role_against_every_endpoint(world, role, endpoint):
    prepare, allowed, ok_status = ENDPOINTS[endpoint]
    req = prepare(world, role)
    client = world.clients[role]
    data = req.get("data")
    if data is not None:
        data = {**data, "csrf_token": world.csrf[role]}
    before = _state(world)
    r = client.request(req["method"], req["url"], data=data, follow_redirects=False)
    if role in allowed:
        assert r.status_code == ok_status, (r.status_code, r.text[-400:])
        if req["method"] == "POST":
            assert _state(world) != before
    elif role == ANON:
        if req["method"] == "GET":
            assert r.status_code == 303 and r.headers["location"].startswith("/review/login")
        else:
            assert r.status_code == 401
        assert _state(world) == before
    else:
        assert r.status_code == 403, (r.status_code, r.text[-400:])
        assert "Not allowed" in r.text and "Traceback" not in r.text
        assert _state(world) == before


def test_the_matrix_matches_the_rbac_policy(world):
    """The intended grants in this table are the ones the policy file gives."""
    pol = world.env.policy
    assert {r for r in ROLES if pol.is_allowed(r, "view_queue")} == READERS
    assert {r for r in ROLES if pol.is_allowed(r, "approve")} == WORKERS
    assert {r for r in ROLES if pol.is_allowed(r, "view_metrics")} == METRICS
    assert {r for r in ROLES if pol.is_allowed(r, "view_audit")} == {"auditor"}
    assert {r for r in ROLES if pol.is_allowed(r, "manage_users")} == {"admin"}


def test_every_review_route_is_in_the_matrix():
    from service.review.routes import router

    routes = {(m, r.path) for r in router.routes for m in r.methods}
    assert len(routes) >= len(ENDPOINTS)
    covered = {tuple(k.split(" ")[:2]) for k in ENDPOINTS}
    covered |= {("GET", "/review/login"), ("POST", "/review/login"), ("POST", "/review/logout")}
    normalised = {(m, re.sub(r"\{(claim_id|name)\}", lambda mm: "{id}" if mm[1] == "claim_id" else "{name}", p))
                  for m, p in routes}
    assert normalised <= covered, normalised - covered


# ---------------------------------------------------------------------------------------------
# CSRF


@pytest.mark.parametrize("endpoint", [k for k, v in ENDPOINTS.items() if k.startswith("POST")])
@pytest.mark.parametrize("token", ["missing", "wrong"])
def test_a_form_without_its_csrf_token_is_refused(world, endpoint, token):
    prepare, allowed, _ = ENDPOINTS[endpoint]
    role = sorted(allowed)[0]
    req = prepare(world, role)
    data = dict(req["data"])
    if token == "wrong":
        data["csrf_token"] = world.csrf["senior_reviewer" if role != "senior_reviewer" else "reviewer"]
    before = _state(world)
    r = world.clients[role].post(req["url"], data=data, follow_redirects=False)
    assert r.status_code == 403 and "security token" in r.text
    assert _state(world) == before


def test_sign_out_needs_the_csrf_token_and_ends_the_session(world):
    world.env.user("leaver", "reviewer")
    client, csrf = sign_in(TestClient(world.app), "leaver")
    assert client.post("/review/logout", data={}, follow_redirects=False).status_code == 403
    assert client.get("/review/queue", follow_redirects=False).status_code == 200
    assert client.post("/review/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/review/queue", follow_redirects=False).status_code == 303


def test_sign_in_without_the_form_token_is_refused(world):
    client = TestClient(world.app)
    r = client.post("/review/login", data={"username": "u-reviewer", "password": PASSWORD},
                    follow_redirects=False)
    assert r.status_code == 403 and "aios_review_session" not in r.headers.get("set-cookie", "")


# ---------------------------------------------------------------------------------------------
# passwords and sessions


@pytest.mark.parametrize("name,password", [("u-reviewer", "wrong password"), ("nobody-here", PASSWORD),
                                           ("u-reviewer", "")])
def test_a_wrong_password_is_refused(world, name, password):
    client = TestClient(world.app)
    token = _CSRF.search(client.get("/review/login").text).group(1)
    r = client.post("/review/login", data={"username": name, "password": password, "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code in (400, 401)
    assert "aios_review_session" not in r.headers.get("set-cookie", "")
    assert client.get("/review/queue", follow_redirects=False).status_code == 303


def test_a_disabled_account_cannot_sign_in_and_loses_its_session(world):
    world.env.user("gone", "reviewer")
    client, _ = sign_in(TestClient(world.app), "gone")
    workflow.set_account_active(world.env.engine, "gone", False)
    assert client.get("/review/queue", follow_redirects=False).status_code == 303
    token = _CSRF.search(client.get("/review/login").text).group(1)
    r = client.post("/review/login", data={"username": "gone", "password": PASSWORD, "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 401


def test_passwords_and_session_tokens_never_reach_logs_or_the_database(world, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-Passw0rd-for-logs"
    accounts.create_user(world.env.engine, "logcheck", "reviewer", secret, world.env.policy.roles, "test")
    client = TestClient(world.app)
    token = _CSRF.search(client.get("/review/login").text).group(1)
    # a failed attempt with the password typed into the name field, then a good one
    client.post("/review/login", data={"username": secret, "password": "x", "csrf_token": token})
    token = _CSRF.search(client.get("/review/login").text).group(1)
    r = client.post("/review/login", data={"username": "logcheck", "password": secret, "csrf_token": token},
                    follow_redirects=False)
    session_token = r.cookies.get("aios_review_session") or client.cookies.get("aios_review_session")
    assert session_token
    cid = world.new_case()
    csrf = _CSRF.search(client.get(f"/review/cases/{cid}").text).group(1)
    client.post(f"/review/cases/{cid}/claim", data={"csrf_token": csrf})
    client.post(f"/review/cases/{cid}/decision", data={"csrf_token": csrf, "decision": "approve", "reason": "ok"})
    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert "logcheck signed in" in logged  # the log is captured at all
    assert secret not in logged and session_token not in logged
    with world.env.engine.connect() as conn:
        dump = " ".join(str(tuple(row)) for t in (accounts.review_users, sessions.review_sessions)
                        for row in conn.execute(sa.select(t)))
    assert secret not in dump and session_token not in dump


def test_session_expires_when_idle(world):
    from datetime import timedelta

    user = world.env.user("idler", "reviewer")
    s = sessions.create_session(world.env.engine, user)
    assert sessions.load_session(world.env.engine, s.token) is not None
    later = accounts.utcnow() + sessions.SESSION_IDLE + timedelta(minutes=1)
    assert sessions.load_session(world.env.engine, s.token, now=later) is None
    assert sessions.load_session(world.env.engine, s.token) is None  # and it is gone


# ---------------------------------------------------------------------------------------------
# bad input gets a clear message, never a stack trace


def test_unknown_claim_gets_a_clear_404(world):
    r = world.clients["reviewer"].get("/review/cases/NO-SUCH-CLAIM")
    assert r.status_code == 404 and "no review case for claim" in r.text and "Traceback" not in r.text


def test_a_decision_on_a_closed_case_gets_a_clear_message(world):
    cid = world.new_case()
    user = accounts.User("u-reviewer", "reviewer")
    workflow.claim_case(world.env.engine, cid, user, world.env.policy)
    workflow.record_review_decision(world.env.engine, cid, user, "reject", "forged", world.env.policy)
    r = world.clients["reviewer"].post(f"/review/cases/{cid}/decision", data={
        "csrf_token": world.csrf["reviewer"], "decision": "approve", "reason": "changed my mind"})
    assert r.status_code == 409 and "is closed" in r.text and "Traceback" not in r.text


def test_a_missing_reason_gets_a_clear_message(world):
    cid = world.new_case()
    workflow.claim_case(world.env.engine, cid, accounts.User("u-reviewer", "reviewer"), world.env.policy)
    r = world.clients["reviewer"].post(f"/review/cases/{cid}/decision", data={
        "csrf_token": world.csrf["reviewer"], "decision": "approve", "reason": "  "})
    assert r.status_code == 400 and "give a reason" in r.text
    assert world.env.status(cid) == "open"


@pytest.mark.parametrize("query,message", [("min_amount=lots", "is not a number"), ("min_p=2", "between"),
                                           ("status=whatever", "status: must be"), ("partition=yesterday",
                                                                                    "is not a date")])
def test_bad_queue_filters_get_a_clear_message(world, query, message):
    r = world.clients["reviewer"].get(f"/review/queue?{query}")
    assert r.status_code == 400 and message in r.text


def test_an_internal_failure_shows_a_reference_not_a_stack_trace(world, monkeypatch, caplog):
    def boom(*a, **k):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(reviews, "list_queue", boom)
    r = world.clients["reviewer"].get("/review/queue")
    assert r.status_code == 500 and "reference" in r.text
    assert "Traceback" not in r.text and "database on fire" not in r.text
    assert "database on fire" in caplog.text  # but the operator sees it


def test_pages_carry_security_headers(world):
    r = world.clients["reviewer"].get("/review/queue")
    assert r.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"


def test_the_service_app_mounts_the_review_ui(world):
    from service.app import create_app

    # an allowed host (settings.allowed_hosts); no lifespan: models are not needed for this
    client = TestClient(create_app(world.env.settings), base_url="http://127.0.0.1")
    assert client.get("/review/login").status_code == 200
    assert client.get("/review/queue", follow_redirects=False).headers["location"].startswith("/review/login")


def test_aios_users_add_creates_a_hashed_account_that_can_sign_in(settings):
    from typer.testing import CliRunner

    from aios.kernel.db import get_engine
    from aios.cli.users import users_app

    secret = "cli-made-Passw0rd"
    runner = CliRunner()
    r = runner.invoke(users_app, ["add", "cli-made", "--role", "senior_reviewer", "--password-stdin"],
                      input=secret + "\n")
    assert r.exit_code == 0, r.output
    assert secret not in r.output
    engine = get_engine(settings.db_url)
    assert accounts.verify_password(engine, "cli-made", secret) == accounts.User("cli-made", "senior_reviewer")
    again = runner.invoke(users_app, ["add", "cli-made", "--role", "reviewer", "--password-stdin"], input="x" * 12)
    assert again.exit_code == 2 and "already exists" in again.output
    bad = runner.invoke(users_app, ["add", "someone", "--role", "superuser", "--password-stdin"], input="x" * 12)
    assert bad.exit_code == 2 and "role: must be one of" in bad.output
    short = runner.invoke(users_app, ["add", "someone", "--role", "reviewer", "--password-stdin"], input="short\n")
    assert short.exit_code == 2 and "at least 8" in short.output


def test_read_only_roles_see_the_claim_and_documents_without_personal_data(world):
    from connectors.documents import DocumentStore

    cid = world.new_case()
    landing = world.env.settings.landing_dir / DAY
    landing.mkdir(parents=True, exist_ok=True)
    (landing / f"claims-{DAY}-{cid}.csv").write_text(
        "claim_id,policy_id,amount,description,document_refs\n"
        f"{cid},POL-000001,800.0,Pay me now; write to jane.doe@example.com,DOC-{cid}-0;DOC-{cid}-1\n")
    DocumentStore(world.env.settings.documents_dir).write(f"DOC-{cid}-0", "Refund to DE89 3704 0044 0532 0130 00")
    pages = {role: world.clients[role].get(f"/review/cases/{cid}").text for role in ("reviewer", "analyst", "auditor")}
    assert "jane.doe@example.com" in pages["reviewer"] and "DE89 3704 0044" in pages["reviewer"]
    for role in ("analyst", "auditor"):
        assert "jane.doe@example.com" not in pages[role] and "DE89 3704 0044" not in pages[role]
        assert "[REDACTED:email]" in pages[role] and "[REDACTED:iban]" in pages[role]
    assert "pressure" in pages["reviewer"] and "pii:email" in pages["reviewer"]  # content flags
    assert f"DOC-{cid}-1" in pages["reviewer"] and "Not in the document store" in pages["reviewer"]


def test_four_eyes_through_the_forms(world):
    amount = world.env.policy.four_eyes_amount + 1000
    cid = world.new_case(amount)
    world.env.user("senior-b", "senior_reviewer")
    a = world.clients["senior_reviewer"], world.csrf["senior_reviewer"]
    b = sign_in(TestClient(world.app), "senior-b")
    client, csrf = a
    client.post(f"/review/cases/{cid}/claim", data={"csrf_token": csrf})
    r = client.post(f"/review/cases/{cid}/decision", data={"csrf_token": csrf, "decision": "approve", "reason": "fine"})
    assert "needs a further approval from a different senior reviewer" in r.text
    assert world.env.status(cid) == "open"
    client.post(f"/review/cases/{cid}/claim", data={"csrf_token": csrf})
    r = client.post(f"/review/cases/{cid}/decision", data={"csrf_token": csrf, "decision": "approve", "reason": "x"})
    assert r.status_code == 409 and "you already approved" in r.text
    client.post(f"/review/cases/{cid}/release", data={"csrf_token": csrf})
    client, csrf = b
    page = client.get(f"/review/cases/{cid}").text
    assert "Approvals so far" in page and "u-senior_reviewer" in page
    client.post(f"/review/cases/{cid}/claim", data={"csrf_token": csrf})
    assert "Give second approval" in client.get(f"/review/cases/{cid}").text
    r = client.post(f"/review/cases/{cid}/decision", data={"csrf_token": csrf, "decision": "approve", "reason": "ok"})
    assert r.status_code == 200 and "approved; it will be paid" in r.text
    assert world.env.status(cid) == "approved"
