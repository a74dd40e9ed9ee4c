"""Domain errors: a request that cannot be done, with a message fit to show the person who caused it.

They carry no transport detail (no HTTP status): entry points map them (`service/errors.py` for HTTP,
the CLI prints them), so the stores and use cases stay free of any web framework.
"""

from __future__ import annotations


class ReviewError(Exception):
    """A request that cannot be done; `str(exc)` is a message for the user."""


class InvalidInput(ReviewError):
    """A field of the request is missing or malformed; the message names it."""


class NotFound(ReviewError):
    """The thing asked for does not exist."""


class CaseNotFound(NotFound):
    """There is no review case for the claim."""


class NotAllowed(ReviewError):
    """The actor may not do this (rbac or separation-of-duties policy)."""


class Conflict(ReviewError):
    """The state does not allow it: closed, held by someone else, already done by this person, taken."""


class Throttled(ReviewError):
    """Too many attempts: refused until `retry_after` seconds have passed."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(0.0, float(retry_after))


class Busy(ReviewError):
    """A bounded resource (e.g. the password-hashing pool) is saturated; try again shortly."""


__all__ = ["Busy", "CaseNotFound", "Conflict", "InvalidInput", "NotAllowed", "NotFound", "ReviewError",
           "Throttled"]
