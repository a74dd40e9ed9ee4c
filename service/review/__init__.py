"""The reviewer's UI: server-rendered pages under /review for working the human-review queue.

`install(app, settings)` adds it to the service app (one call in `service.app.create_app`). Accounts
come from `aios users add NAME --role ROLE` (or the Accounts page, with a second administrator's
confirmation for approving roles); decisions go through the review workflow
(`aios.usecases.review_workflow`) to the review store and the audit ledger; the review sensor in
Dagster turns approvals into payouts.
"""

from __future__ import annotations

from fastapi import FastAPI

from aios.kernel.settings import Settings, get_settings


def install(app: FastAPI, settings: Settings | None = None) -> None:
    """Mount the review UI on `app`, bound to the stores of `settings` (the process settings by default)."""
    from service.review.context import ReviewContext
    from service.review.routes import router

    app.state.review = ReviewContext.build(settings or get_settings())
    app.include_router(router)
