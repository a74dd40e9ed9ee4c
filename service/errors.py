"""Domain errors → HTTP status codes (the one place that knows both)."""

from __future__ import annotations

from aios.kernel.errors import Busy, Conflict, InvalidInput, NotAllowed, NotFound, ReviewError, Throttled

_STATUS: tuple[tuple[type[ReviewError], int], ...] = (
    (NotFound, 404), (NotAllowed, 403), (Conflict, 409), (InvalidInput, 400), (Throttled, 429), (Busy, 503),
)


def http_status(exc: ReviewError) -> int:
    """The HTTP status of a domain error (400 for any other request that cannot be done)."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return int(getattr(exc, "status", 400))


def retry_headers(exc: ReviewError) -> dict[str, str]:
    """`Retry-After` for throttled or busy refusals."""
    if isinstance(exc, Throttled):
        return {"Retry-After": str(int(exc.retry_after) + 1)}
    if isinstance(exc, Busy):
        return {"Retry-After": "2"}
    return {}
