"""The one place where HTTP outcomes become errors of the tree in :mod:`vidgo_stems.errors`.

``error_for_status`` maps a Vidgo answer (HTTP status, or HTTP 200 with a business ``code``
that is not 200/0); ``error_for_transport`` maps an httpx exception. Both are table-tested.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from vidgo_stems.errors import (
    RetryableError,
    VidgoAuthError,
    VidgoBadRequest,
    VidgoClientError,
    VidgoConflict,
    VidgoCreditsError,
    VidgoForbidden,
    VidgoRateLimited,
    VidgoStemsError,
    VidgoTaskNotFound,
    VidgoTransportError,
    VidgoUnavailable,
)
from vidgo_stems.vidgo.parse import error_message_of

#: Errors by status code for the 4xx answers that have one of their own.
_BY_STATUS: dict[int, type[VidgoStemsError]] = {
    400: VidgoBadRequest,
    401: VidgoAuthError,
    402: VidgoCreditsError,
    403: VidgoForbidden,
    404: VidgoTaskNotFound,
    409: VidgoConflict,
}

_ADVICE = {
    401: "check VIDGO_API_KEY: it is missing, mistyped or revoked",
    402: "top up the Vidgo account's credits, then `vidgo-stems retry` the jobs that failed",
    403: "the API key may not do this; check the key's account",
    409: "Vidgo already separated this audio; use a fresh audio URL to separate it again",
}


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_for_status(
    status_code: int, body: Any, headers: httpx.Headers | None = None, *, what: str
) -> VidgoStemsError:
    """The error for a Vidgo answer that is not a success. ``what`` names the call."""
    message = error_message_of(body) or "no message"
    text = f"Vidgo {what} answered {status_code}: {message}"
    if status_code in _ADVICE:
        text += f" ({_ADVICE[status_code]})"
    if status_code == 429:
        retry_after = parse_retry_after((headers or httpx.Headers()).get("retry-after"))
        return VidgoRateLimited(text, retry_after_s=retry_after, status_code=429)
    if status_code == 408 or status_code >= 500:
        return VidgoUnavailable(text, status_code=status_code)
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code](text, status_code=status_code)
    return VidgoClientError(text, status_code=status_code)


# Exceptions raised before a single byte of the request left: resending is always safe.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.ProxyError,
)


def error_for_transport(exc: httpx.HTTPError, *, what: str) -> RetryableError:
    """The error for an httpx exception: retryable, and marked when the request may have landed."""
    maybe = not isinstance(exc, _NOT_SENT)
    kind = type(exc).__name__
    detail = "before the request was sent" if not maybe else "after the request may have arrived"
    return VidgoTransportError(
        f"Vidgo {what} failed with {kind} {detail}: {exc}"
        if str(exc)
        else f"Vidgo {what} failed with {kind} {detail}",
        maybe_processed=maybe,
    )
