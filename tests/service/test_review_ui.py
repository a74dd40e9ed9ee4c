"""A reviewer works the queue from a real browser (Playwright driving Debian's Chromium), end to end:
a day runs through Dagster, the reviewer signs in to `aios serve`'s app, opens a case, sees the
interval, rationale and drivers, approves; the next review-sensor tick pays the claim exactly once.

Screenshots of the queue, the case page and the metrics page are saved under test-artifacts/.
Needs /usr/bin/chromium (`apt-get install -y chromium`): skipped with the reason when it is missing,
failed instead when AIOS_REQUIRE_SERVERS=1 (CI).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.stores import reviews
from connectors.stores import accounts
from aios.kernel.db import get_engine
from aios.kernel.settings import PROJECT_ROOT
from connectors.stores.decisions import decisions_table, review_cases
from connectors.payout import payouts_table

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
DAY = "2026-11-11"
PASSWORD = "reviewer password 1"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch options, pointed at Debian's Chromium (never `playwright install`)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("AIOS_REQUIRE_SERVERS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained):
    """`aios serve`'s app (service.app.create_app) under uvicorn on 127.0.0.1, in a thread."""
    import uvicorn

    from service.app import create_app

    port = _free_port()
    config = uvicorn.Config(create_app(trained), host="127.0.0.1", port=port, log_config=None, log_level="info",
                            lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the service did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=15)


def _pick_case(engine: sa.Engine, policy) -> str:
    """An open case of the day a single reviewer may approve (four eyes in the policy's currency), preferring
    one with uncertainty drivers."""
    q = (sa.select(review_cases.c.claim_id, review_cases.c.amount, review_cases.c.currency,
                   decisions_table.c.uncertainty_drivers)
         .join(decisions_table, decisions_table.c.claim_id == review_cases.c.claim_id)
         .where((review_cases.c.partition == DAY) & (review_cases.c.status == "open"))
         .order_by(review_cases.c.sla_due_at, review_cases.c.claim_id))
    with engine.connect() as conn:
        rows = [r for r in conn.execute(q).all() if not policy.needs_four_eyes(r.amount, r.currency)]
    assert rows, "the day produced no case a single reviewer may approve"
    with_drivers = [r.claim_id for r in rows if json.loads(r.uncertainty_drivers)]
    return (with_drivers or [r.claim_id for r in rows])[0]


def _sensor_tick_and_runs(defs, instance) -> list:
    """One review-sensor tick, then the runs it requested, executed in process (as the daemon would)."""
    import dagster as dg

    from sensors.review import review_sensor

    tick = review_sensor(dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs))
    results = []
    for req in tick.run_requests:
        results.append(defs.resolve_job_def("review_payouts_job").execute_in_process(
            partition_key=req.partition_key, instance=instance, tags=req.tags))
    return results


def test_a_reviewer_approves_a_case_in_the_browser_and_the_next_tick_pays_it_once(
        run_day, trained, defs, instance, server, page, caplog):
    from governance.policy import load_policy_set

    caplog.set_level(logging.INFO)
    assert run_day(DAY, malformed=7).success
    engine = get_engine(trained.db_url)
    policy = load_policy_set()
    for name, role in (("rita", "reviewer"), ("alan", "analyst")):
        if name not in {u["name"] for u in accounts.list_users(engine)}:
            accounts.create_user(engine, name, role, PASSWORD, policy.roles, created_by="test")
    claim_id = _pick_case(engine, policy)
    ARTIFACTS.mkdir(exist_ok=True)
    paid_before = _paid(engine, DAY)

    # sign in (the queue asks for it first)
    page.goto(f"{server}/review/queue")
    assert "/review/login" in page.url
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/review/queue")
    rows = page.locator("[data-testid=queue-row]")
    assert rows.count() > 0
    page.screenshot(path=str(ARTIFACTS / "review-queue.png"), full_page=True)

    # filter the queue to the day, open the case
    page.select_option("select[name=partition]", DAY)
    page.click("[data-testid=filters] button[type=submit]")
    page.click(f"a[href='/review/cases/{claim_id}']")
    page.wait_for_url(f"**/review/cases/{claim_id}")
    page.click("[data-testid=claim]")
    page.wait_for_selector("[data-testid=decision-form]")
    interval = page.inner_text("[data-testid=interval]")
    assert "credible interval [" in interval
    assert page.locator("[data-testid=features] tr").count() >= 1
    assert "moved" not in page.inner_text("[data-testid=features]")  # parsed into rows, not raw lines
    assert page.locator("[data-testid=evidence] tr").count() >= 1
    # the decision modules: every recorded module in a row, with its version, and whether it spoke
    modules = json.loads(_decision(engine, claim_id)["versions"])["modules"]
    shown = page.locator("[data-testid=module]")
    assert shown.count() == len(modules)
    for i in range(shown.count()):
        row = shown.nth(i)
        name = row.get_attribute("data-module")
        assert modules[name]["version"] in row.inner_text()
        silent = modules[name]["state"] in ("unavailable", "not_applicable", "pending")
        assert row.get_attribute("data-spoke") == ("no" if silent else "yes")
    assert page.locator("[data-module=classifier]").get_attribute("data-spoke") == "yes"
    assert page.locator("[data-testid=drivers]").is_visible()
    stored_drivers = json.loads(_decision(engine, claim_id)["uncertainty_drivers"])
    assert page.locator("[data-testid=driver]").count() == len(stored_drivers)
    for d in stored_drivers:
        assert d["signal"] in page.inner_text("[data-testid=drivers]")
    assert page.locator("[data-testid=documents]").is_visible()
    page.screenshot(path=str(ARTIFACTS / "review-case.png"), full_page=True)

    # nothing is paid before the approval
    _sensor_tick_and_runs(defs, instance)
    assert _paid_claim(engine, claim_id) == 0

    page.fill("[data-testid=reason]", "Invoice matches the claim; delay explained by hospital stay.")
    page.click("[data-testid=approve]")
    page.wait_for_url("**/review/queue")
    assert "approved" in page.inner_text("[data-testid=flash]")

    runs = _sensor_tick_and_runs(defs, instance)
    assert [r.success for r in runs] == [True]
    assert _paid_claim(engine, claim_id) == 1
    assert _paid(engine, DAY) == paid_before + 1
    with engine.connect() as conn:
        status = conn.execute(sa.select(review_cases.c.status).where(review_cases.c.claim_id == claim_id)).scalar()
    assert status == "paid"
    # the next tick has nothing left to pay; a rerun pays nothing twice
    assert _sensor_tick_and_runs(defs, instance) == []
    rerun = defs.resolve_job_def("review_payouts_job").execute_in_process(partition_key=DAY, instance=instance)
    assert rerun.success and _paid_claim(engine, claim_id) == 1

    # the metrics page (as an analyst) for the day
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "aios_review_session")
    page.click("button:has-text('Sign out')")
    page.fill("input[name=username]", "alan")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{server}/review/metrics?partition={DAY}")
    assert page.inner_text("[data-testid=queue-size]").strip().isdigit()
    page.screenshot(path=str(ARTIFACTS / "review-metrics.png"), full_page=True)
    metrics = json.loads(page.context.request.get(f"{server}/review/metrics.json?partition={DAY}").text())
    (ARTIFACTS / "review-metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    assert metrics["decisions"] >= 1 and metrics["approved"] >= 1

    # the server's logs (uvicorn access log included) never carry the password or a session token
    logged = caplog.text
    assert "rita signed in" in logged
    assert PASSWORD not in logged
    assert token not in logged


def _decision(engine: sa.Engine, claim_id: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(sa.select(decisions_table).where(decisions_table.c.claim_id == claim_id)).one()
    return dict(row._mapping)


def _paid(engine: sa.Engine, day: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(payouts_table)
                            .where(payouts_table.c.partition == day)).scalar_one()


def _paid_claim(engine: sa.Engine, claim_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(payouts_table)
                            .where(payouts_table.c.claim_id == claim_id)).scalar_one()
