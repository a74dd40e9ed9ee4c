"""The review UI's pages and forms, under /review: sign-in, queue, case, metrics, audit trail, accounts.

Who may open what comes from the policy set's rbac rules (`view_queue`, `view_case`, `claim_case`,
`approve`, `reject`, `escalate`, `second_approve`, `view_metrics`, `view_audit`, `manage_users`);
every state-changing form carries the session's CSRF token; every review action goes to the
audit ledger with the reviewer as actor. Endpoints are plain `def`: password hashing and the
database run in the thread pool.
"""

from __future__ import annotations

import logging
import secrets
from urllib.parse import quote
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from aios.kernel.errors import CaseNotFound, InvalidInput, NotAllowed, ReviewError
from aios.usecases import review_workflow as workflow
from aios.usecases.sign_in import sign_in, sign_out
from connectors.stores import accounts, reviews
from connectors.stores.reviews import QueueFilter
from connectors.stores.sessions import Session
from service.errors import http_status, retry_headers
from connectors.stores.ledger import audit_ledger

from service.review.context import parse_drivers, rationale_view
from service.review.web import (
    LOGIN_CSRF_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    SafeRoute,
    ctx_of,
    current_session,
    error_page,
    home_path,
    page,
    redirect,
    require,
    require_csrf,
    safe_next,
)

log = logging.getLogger("aios.review")
router = APIRouter(prefix=PREFIX, route_class=SafeRoute, include_in_schema=False)

QUEUE_STATUSES = (reviews.WAITING, *reviews.CLOSED_STATUSES)
AUDIT_ROWS = 200


# ---------------------------------------------------------------------------------------------
# sign-in


@router.get("/")
def home(request: Request) -> Response:
    """Send the user to the first page their role may open (or to sign-in)."""
    return RedirectResponse(home_path(request, require(request)), status_code=303)


@router.get("/login")
def login_form(request: Request, next: str = "") -> Response:
    """The sign-in form (with a CSRF token bound to a cookie)."""
    session = current_session(request)
    if session is not None:
        return RedirectResponse(safe_next(next) or home_path(request, session), status_code=303)
    return _login_page(request, next)


def _login_page(request: Request, next: str, error: str | None = None, status: int = 200) -> Response:
    token = secrets.token_urlsafe(32)
    resp = page(request, "login.html", None, status=status, login_csrf=token, next=safe_next(next) or "",
                error=error)
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, path=PREFIX, httponly=True, samesite="strict",
                    secure=request.url.scheme == "https")
    return resp


@router.post("/login")
def login(request: Request, username: str = Form(""), password: str = Form(""), csrf_token: str = Form(""),
          next: str = Form("")) -> Response:
    """Check the password (argon2) and open a server-side session; a wrong password is refused."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not cookie or not csrf_token or not secrets.compare_digest(cookie, csrf_token):
        return _login_page(request, next, "The sign-in form expired or did not come from this site; try again.",
                           status=403)
    if not username.strip() or not password:
        return _login_page(request, next, "Enter your user name and password.", status=400)
    ctx = ctx_of(request)
    address = request.client.host if request.client else "unknown"
    try:
        session = sign_in(ctx.engine, ctx.policy, username.strip(), password, address,
                          previous_token=request.cookies.get(SESSION_COOKIE))
    except ReviewError as exc:  # throttled (no password was checked) or the hashing pool is saturated
        log.warning("review UI: sign-in refused from %s: %s", address, exc)
        resp = _login_page(request, next, str(exc), status=http_status(exc))
        resp.headers.update(retry_headers(exc))
        return resp
    if session is None:
        log.warning("review UI: failed sign-in")  # no name: people type passwords into the name field
        return _login_page(request, next, "Wrong user name or password.", status=401)
    user = session.user
    log.info("review UI: %s signed in (%s)", user.name, user.role)
    resp = RedirectResponse(safe_next(next) or home_path(request, session), status_code=303)
    resp.set_cookie(SESSION_COOKIE, session.token, path=PREFIX, httponly=True, samesite="strict",
                    secure=request.url.scheme == "https")
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    return resp


@router.post("/logout")
def logout(request: Request, csrf_token: str = Form("")) -> Response:
    """End the session."""
    session = require(request)
    require_csrf(session, csrf_token)
    sign_out(ctx_of(request).engine, session, request.cookies.get(SESSION_COOKIE),
             request.client.host if request.client else "unknown")
    log.info("review UI: %s signed out", session.user.name)
    resp = RedirectResponse(f"{PREFIX}/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return resp


# ---------------------------------------------------------------------------------------------
# the queue


def _number(name: str, raw: str, lo: float | None = None, hi: float | None = None) -> float | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        v = float(raw)
    except ValueError:
        raise InvalidInput(f"{name}: {raw!r} is not a number") from None
    if v != v or (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InvalidInput(f"{name}: must be between {lo} and {hi}" if hi is not None else f"{name}: must be ≥ {lo}")
    return v


def _queue_filter(session: Session, status: str, stage: str, partition: str, min_amount: str,
                  max_amount: str, min_p: str, mine: str, unclaimed: str) -> QueueFilter:
    if status not in QUEUE_STATUSES:
        raise InvalidInput(f"status: must be one of {', '.join(QUEUE_STATUSES)}")
    if stage and stage not in reviews.STAGES:
        raise InvalidInput(f"stage: must be one of {', '.join(reviews.STAGES)}")
    if partition:
        try:
            datetime.strptime(partition, "%Y-%m-%d")
        except ValueError:
            raise InvalidInput(f"day: {partition!r} is not a date (YYYY-MM-DD)") from None
    return QueueFilter(status=status, stage=stage or None, partition=partition or None,
                       min_amount=_number("minimum amount", min_amount, 0.0),
                       max_amount=_number("maximum amount", max_amount, 0.0),
                       min_p_fraud=_number("minimum p_fraud", min_p, 0.0, 1.0),
                       claimed_by=session.user.name if mine else None, unclaimed=bool(unclaimed))


@router.get("/queue")
def queue(request: Request, status: str = reviews.WAITING, stage: str = "", partition: str = "",
          min_amount: str = "", max_amount: str = "", min_p: str = "", mine: str = "", unclaimed: str = ""
          ) -> Response:
    """Cases waiting for people, soonest SLA first, with p_fraud, its interval, amount and age; filterable."""
    session = require(request, "view_queue")
    ctx = ctx_of(request)
    form = {"status": status, "stage": stage, "partition": partition, "min_amount": min_amount,
            "max_amount": max_amount, "min_p": min_p, "mine": mine, "unclaimed": unclaimed}
    error, rows, code = None, [], 200
    try:
        flt = _queue_filter(session, status, stage, partition, min_amount, max_amount, min_p, mine, unclaimed)
        rows = [{**r, "four_eyes": _needs_four_eyes(ctx.policy, r)} for r in reviews.list_queue(ctx.engine, flt)]
    except InvalidInput as exc:
        error, code = str(exc), 400
    return page(request, "queue.html", session, status=code, rows=rows, form=form, error=error,
                statuses=QUEUE_STATUSES, stages=reviews.STAGES, partitions=reviews.queue_partitions(ctx.engine),
                four_eyes_amount=ctx.policy.four_eyes_amount, policy_currency=ctx.policy.currency)


# ---------------------------------------------------------------------------------------------
# the case


def _needs_four_eyes(pol: Any, case: dict[str, Any]) -> bool:
    try:  # in the policy's currency; a currency without a rate is shown as needing four eyes (safe side)
        return pol.needs_four_eyes(case["amount"], case["currency"])
    except ValueError:
        return True


def _case_page(request: Request, session: Session, claim_id: str, error: str | None = None,
               status: int = 200, reason: str = "") -> Response:
    ctx = ctx_of(request)
    view = reviews.get_case(ctx.engine, claim_id)
    role, me = session.user.role, session.user.name
    pol = ctx.policy
    case = view.case
    claim = ctx.find_claim(case["partition"], claim_id)
    decision = view.decision or {}
    approvals = view.approvals
    is_open = case["status"] == reviews.WAITING
    mine = view.locked_by == me
    senior = pol.is_allowed(role, "second_approve")
    can_claim = (is_open and pol.is_allowed(role, "claim_case") and view.locked_by in (None, me)
                 and (view.stage not in ("escalated", "awaiting_second") or senior))
    may_decide = any(pol.is_allowed(role, a) for a in ("approve", "second_approve", "reject", "escalate"))
    trail = []
    if pol.is_allowed(role, "view_audit"):
        trail = [pol.redact(r.to_dict(), role) for r in ctx.ledger.rows(claim_id)]
    rationale = rationale_view(decision.get("rationale"))
    flags = pol.content_flags(str(claim.get("description") or "")) if claim else []
    return page(
        request, "case.html", session, status=status, case=case, view=view, error=error, reason=reason,
        claim=pol.redact(claim, role) if claim else None, documents=ctx.documents_of(claim, role), flags=flags,
        decision=decision, rationale=rationale,
        feature_scale=max([abs(f["delta"]) for f in rationale["features"]] or [1.0]) or 1.0,
        evidence_scale=max([abs(f["delta"]) for f in rationale["evidence"]] or [1.0]) or 1.0,
        drivers=parse_drivers(decision.get("uncertainty_drivers")),
        leaning=workflow.model_leaning(case["p_fraud"], ctx.threshold), threshold=ctx.threshold,
        four_eyes=_needs_four_eyes(pol, case), four_eyes_amount=pol.four_eyes_amount, policy_currency=pol.currency,
        approvals=approvals, is_open=is_open, mine=mine, can_claim=can_claim and not mine,
        can_decide=is_open and mine and may_decide, trail=trail,
        history=[a for a in view.actions])


@router.get("/cases/{claim_id}")
def case_page(request: Request, claim_id: str) -> Response:
    """The claim, its documents, p_fraud with interval, rationale, uncertainty drivers, history and actions."""
    session = require(request, "view_case")
    return _case_page(request, session, claim_id)


def _audit_action(request: Request, session: Session, claim_id: str, result: workflow.ActionResult) -> None:
    # The review workflow itself writes the action to the audit ledger (aios/usecases/review_workflow.py).
    if result.action_id:
        log.info("review UI: %s %s claim %s → %s", session.user.name, result.action, claim_id, result.status)


def _case_action(request: Request, claim_id: str, csrf_token: str, act, next_url: str) -> Response:
    """Take or give back a case (`act` is workflow.claim_case or workflow.release_case), audited."""
    session = require(request, "claim_case")
    require_csrf(session, csrf_token)
    ctx = ctx_of(request)
    try:
        result = act(ctx.engine, claim_id, session.user, ctx.policy, ctx.threshold)
    except CaseNotFound:
        raise
    except ReviewError as exc:
        return _case_page(request, session, claim_id, error=str(exc), status=http_status(exc))
    _audit_action(request, session, claim_id, result)
    return redirect(request, next_url, result.message)


@router.post("/cases/{claim_id}/claim")
def claim(request: Request, claim_id: str, csrf_token: str = Form("")) -> Response:
    """Take the case so nobody else works it at the same time."""
    return _case_action(request, claim_id, csrf_token, workflow.claim_case, f"{PREFIX}/cases/{quote(claim_id, safe='')}")


@router.post("/cases/{claim_id}/release")
def release(request: Request, claim_id: str, csrf_token: str = Form("")) -> Response:
    """Give the case back to the queue."""
    return _case_action(request, claim_id, csrf_token, workflow.release_case, f"{PREFIX}/queue")


@router.post("/cases/{claim_id}/decision")
def decision(request: Request, claim_id: str, decision: str = Form(""), reason: str = Form(""),
             csrf_token: str = Form("")) -> Response:
    """Approve, reject or escalate the case, with a reason (four eyes above the policy's amount)."""
    session = require(request, "view_case")
    require_csrf(session, csrf_token)
    ctx = ctx_of(request)
    role = session.user.role
    needed = {"approve": ("approve", "second_approve"), "reject": ("reject",), "escalate": ("escalate",)}
    if decision not in needed:
        return _case_page(request, session, claim_id, error="Choose approve, reject or escalate.", status=400,
                          reason=reason)
    if not any(ctx.policy.is_allowed(role, a) for a in needed[decision]):
        raise NotAllowed(f"Your role ({role}) may not {decision} claims.")
    try:
        result = workflow.record_review_decision(ctx.engine, claim_id, session.user, decision, reason, ctx.policy, ctx.threshold)
    except CaseNotFound:
        raise
    except ReviewError as exc:
        return _case_page(request, session, claim_id, error=str(exc), status=http_status(exc), reason=reason)
    _audit_action(request, session, claim_id, result)
    return redirect(request, f"{PREFIX}/queue", result.message)


# ---------------------------------------------------------------------------------------------
# metrics, audit trail, accounts


def _metrics(request: Request, partition: str) -> tuple[reviews.ReviewMetrics, dict[str, dict[str, int]]]:
    ctx = ctx_of(request)
    if partition:
        try:
            datetime.strptime(partition, "%Y-%m-%d")
        except ValueError:
            raise InvalidInput(f"day: {partition!r} is not a date (YYYY-MM-DD)") from None
    parts = [partition] if partition else reviews.queue_partitions(ctx.engine)
    m = reviews.review_metrics(ctx.engine, partitions=[partition] if partition else None)
    return m, reviews.waiting_counts(ctx.engine, parts)


@router.get("/metrics")
def metrics_page(request: Request, partition: str = "") -> Response:
    """Queue size and age, average review time, override rate, SLA breaches; waiting claims per day."""
    session = require(request, "view_metrics")
    m, per_day = _metrics(request, partition)
    return page(request, "metrics.html", session, m=m, per_day=per_day, partition=partition,
                partitions=reviews.queue_partitions(ctx_of(request).engine))


@router.get("/metrics.json")
def metrics_json(request: Request, partition: str = "") -> Response:
    """The same metrics as JSON."""
    require(request, "view_metrics")
    m, per_day = _metrics(request, partition)
    return JSONResponse({**m.as_dict(), "waiting_by_partition": per_day})


@router.get("/audit")
def audit_page(request: Request, claim_id: str = "", verify: str = "") -> Response:
    """The audit trail: the latest ledger rows, or one claim's; optionally the chain verified."""
    session = require(request, "view_audit")
    ctx = ctx_of(request)
    role = session.user.role
    claim_id = claim_id.strip()
    if claim_id:
        rows = [r.to_dict() for r in ctx.ledger.rows(claim_id)]
    else:
        with ctx.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(
                sa.select(audit_ledger).order_by(audit_ledger.c.seq.desc()).limit(AUDIT_ROWS))]
    rows = [ctx.policy.redact(r, role) for r in rows]
    checked = ctx.ledger.verify() if verify else None
    return page(request, "audit.html", session, rows=rows, claim_id=claim_id, checked=checked, limit=AUDIT_ROWS)


def _users_page(request: Request, session: Session, error: str | None = None, status: int = 200,
                form: dict[str, Any] | None = None) -> Response:
    ctx = ctx_of(request)
    return page(request, "users.html", session, status=status, users=accounts.list_users(ctx.engine),
                roles=ctx.policy.roles, error=error, form=form or {})


@router.get("/users")
def users_page(request: Request) -> Response:
    """Accounts: list, create, enable or disable."""
    return _users_page(request, require(request, "manage_users"))


@router.post("/users")
def create_user(request: Request, name: str = Form(""), role: str = Form(""), password: str = Form(""),
                csrf_token: str = Form("")) -> Response:
    """Create an account (password hashed with argon2)."""
    session = require(request, "manage_users")
    require_csrf(session, csrf_token)
    ctx = ctx_of(request)
    name = name.strip()
    try:
        user = workflow.provision_account(ctx.engine, ctx.policy, name, role, password, created_by=session.user.name)
    except ReviewError as exc:
        return _users_page(request, session, str(exc), http_status(exc), {"name": name, "role": role})
    note = " - a different administrator must confirm it before it can sign in" if not user.active else ""
    return redirect(request, f"{PREFIX}/users", f"account {name} created ({role}){note}")


@router.post("/users/{name}/confirm")
def confirm_user(request: Request, name: str, csrf_token: str = Form("")) -> Response:
    """Confirm a pending account (dual control): only an administrator other than its creator."""
    session = require(request, "manage_users")
    require_csrf(session, csrf_token)
    ctx = ctx_of(request)
    workflow.confirm_account(ctx.engine, ctx.policy, name, confirmed_by=session.user.name)
    return redirect(request, f"{PREFIX}/users", f"account {name} confirmed")


@router.post("/users/{name}/active")
def set_active(request: Request, name: str, active: str = Form(""), csrf_token: str = Form("")) -> Response:
    """Enable (active=1) or disable (active=0) an account; disabling ends its sessions."""
    session = require(request, "manage_users")
    require_csrf(session, csrf_token)
    if active not in ("0", "1"):
        raise InvalidInput("active: must be 0 or 1")
    if name == session.user.name and active == "0":
        raise InvalidInput("you cannot disable your own account")
    ctx = ctx_of(request)
    workflow.set_account_active(ctx.engine, name, active == "1")
    ctx.audit_user_change(session.user.name, name, {"change": "enabled" if active == "1" else "disabled"})
    return redirect(request, f"{PREFIX}/users", f"account {name} {'enabled' if active == '1' else 'disabled'}")


__all__ = ["router", "error_page"]
