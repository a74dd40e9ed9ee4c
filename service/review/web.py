"""Web plumbing of the review UI: cookies, sign-in state, CSRF, flash messages, error pages, safe responses.

Every response of the review routes goes through `SafeRoute`: a failure becomes a page with a clear
message (never a stack trace), and every page carries headers that keep it out of frames and caches.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.exceptions import HTTPException

from aios.kernel.errors import NotAllowed, ReviewError
from connectors.stores.sessions import Session, csrf_ok, load_session
from service.errors import http_status, retry_headers

from service.review.context import ReviewContext

PREFIX = "/review"
SESSION_COOKIE = "aios_review_session"
LOGIN_CSRF_COOKIE = "aios_review_login"
FLASH_COOKIE = "aios_review_flash"
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# (label, path, action the role needs) for the navigation bar
NAV = (("Queue", "/queue", "view_queue"), ("Metrics", "/metrics", "view_metrics"),
       ("Audit trail", "/audit", "view_audit"), ("Accounts", "/users", "manage_users"))

log = logging.getLogger("aios.review")


class LoginRequired(Exception):
    """The request needs a signed-in user and has none (or the session expired)."""


class CsrfRefused(NotAllowed):
    """A form arrived without this session's CSRF token."""

    def __init__(self) -> None:
        super().__init__("This form is missing its security token or it has expired. Reload the page and "
                         "try again.")


def _fmt_hours(h: float | None) -> str:
    if h is None:
        return "–"
    minutes = int(round(h * 60))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60:02d} min"
    return f"{minutes // 1440} d {(minutes % 1440) // 60} h"


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def _fmt_money(v: Any) -> str:
    try:
        return f"{float(v):,.2f}"
    except (TypeError, ValueError):
        return str(v)


def _url_part(v: Any) -> str:
    """An id as one URL path segment or query value: every reserved character percent-encoded."""
    return quote(str(v), safe="")


TEMPLATES.env.filters.update(hours=_fmt_hours, seconds=_fmt_seconds, money=_fmt_money, urlpart=_url_part)


def ctx_of(request: Request) -> ReviewContext:
    """The review context installed on the app."""
    return request.app.state.review


def current_session(request: Request) -> Session | None:
    """The signed-in session of the request's cookie, if any."""
    return load_session(ctx_of(request).engine, request.cookies.get(SESSION_COOKIE))


def require(request: Request, action: str | None = None) -> Session:
    """The signed-in session, whose role must be allowed `action` (policy rbac); raises otherwise."""
    session = current_session(request)
    if session is None:
        raise LoginRequired
    if action is not None and not ctx_of(request).policy.is_allowed(session.user.role, action):
        raise NotAllowed(f"Your role ({session.user.role}) may not open this page or do this.")
    return session


def require_csrf(session: Session, submitted: str | None) -> None:
    """Refuse a form whose CSRF token is not this session's."""
    if not csrf_ok(session, submitted):
        raise CsrfRefused


def home_path(request: Request, session: Session) -> str:
    """The first page the user's role may open."""
    policy = ctx_of(request).policy
    for _label, path, action in NAV:
        if policy.is_allowed(session.user.role, action):
            return PREFIX + path
    return PREFIX + "/login"


def safe_next(target: str | None) -> str | None:
    """A post-sign-in target only if it stays inside the review UI (no open redirects)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


def _flash_serializer(request: Request) -> URLSafeTimedSerializer:
    ctx = ctx_of(request)
    key = ctx.extra.setdefault("flash_key", secrets.token_urlsafe(32))
    return URLSafeTimedSerializer(key, salt="aios-review-flash")


def redirect(request: Request, path: str, flash: str | None = None) -> RedirectResponse:
    """A see-other redirect (after a form), optionally carrying a one-time message to the next page."""
    resp = RedirectResponse(path, status_code=303)
    if flash:
        resp.set_cookie(FLASH_COOKIE, _flash_serializer(request).dumps(flash), max_age=60, path=PREFIX,
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return resp


def page(request: Request, template: str, session: Session | None, status: int = 200,
         **context: Any) -> HTMLResponse:
    """Render a page with the navigation the role may use, the CSRF token, and any one-time message."""
    ctx = ctx_of(request)
    flash = None
    raw = request.cookies.get(FLASH_COOKIE)
    if raw:
        try:
            flash = _flash_serializer(request).loads(raw, max_age=120)
        except BadSignature:
            flash = None
    role = session.user.role if session else None
    nav = [(label, PREFIX + path) for label, path, action in NAV if role and ctx.policy.is_allowed(role, action)]
    resp = TEMPLATES.TemplateResponse(request, template, {
        "session": session, "user": session.user if session else None,
        "csrf": session.csrf_token if session else "", "nav": nav, "prefix": PREFIX, "flash": flash,
        "path": request.url.path, **context}, status_code=status)
    if raw:
        resp.delete_cookie(FLASH_COOKIE, path=PREFIX)
    return resp


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """A page that says what went wrong, with the status code."""
    try:
        session = current_session(request)
    except Exception:  # the error may be the database itself
        session = None
    return page(request, "error.html", session, status=status, status_code=status, message=message)


def _validation_message(exc: RequestValidationError) -> str:
    fields = sorted({str(e.get("loc", ["", "?"])[-1]) for e in exc.errors()})
    return "The request is not valid: check " + ", ".join(fields) + "."


class SafeRoute(APIRoute):
    """Route class of the review router: errors become clear pages, responses get security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The route's handler wrapped: review errors and failures become pages, headers are added."""
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except LoginRequired:
                if request.method == "GET":
                    response = RedirectResponse(f"{PREFIX}/login?next={quote(request.url.path)}", status_code=303)
                else:
                    response = error_page(request, 401, "Sign in first; your session may have expired.")
            except ReviewError as exc:
                response = error_page(request, http_status(exc), str(exc))
                response.headers.update(retry_headers(exc))
            except RequestValidationError as exc:
                response = error_page(request, 400, _validation_message(exc))
            except HTTPException as exc:
                response = error_page(request, exc.status_code, str(exc.detail))
            except Exception:
                ref = secrets.token_hex(4)
                log.exception("review UI failure (reference %s) on %s %s", ref, request.method, request.url.path)
                response = error_page(request, 500, f"Something went wrong on our side. It has been logged "
                                                    f"with reference {ref}; please try again or report it.")
            for k, v in SECURITY_HEADERS.items():
                response.headers.setdefault(k, v)
            return response

        return handler
