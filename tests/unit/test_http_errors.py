"""The mapping of every HTTP outcome onto the error tree, as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from vidgo_stems import errors
from vidgo_stems.vidgo.http_errors import error_for_status, error_for_transport, parse_retry_after

STATUS_TABLE = [
    (400, errors.VidgoBadRequest, False),
    (401, errors.VidgoAuthError, False),
    (402, errors.VidgoCreditsError, False),
    (403, errors.VidgoForbidden, False),
    (404, errors.VidgoTaskNotFound, True),
    (408, errors.VidgoUnavailable, True),
    (409, errors.VidgoConflict, False),
    (418, errors.VidgoClientError, False),
    (422, errors.VidgoClientError, False),
    (429, errors.VidgoRateLimited, True),
    (500, errors.VidgoUnavailable, True),
    (502, errors.VidgoUnavailable, True),
    (503, errors.VidgoUnavailable, True),
    (504, errors.VidgoUnavailable, True),
]


@pytest.mark.parametrize(("status", "kind", "retryable"), STATUS_TABLE)
def test_error_for_status_maps_each_status(status, kind, retryable):
    err = error_for_status(
        status, {"code": status, "error": {"message": "m", "type": "t"}}, what="submit"
    )
    assert type(err) is kind
    assert isinstance(err, errors.RetryableError) is retryable
    assert isinstance(err, errors.PermanentError) is not retryable
    assert err.status_code == status
    assert f"answered {status}: m" in err.message


def test_every_4xx_and_5xx_maps_to_exactly_one_side_of_the_tree():
    for status in range(400, 600):
        err = error_for_status(status, {}, what="x")
        assert isinstance(err, errors.RetryableError) != isinstance(err, errors.PermanentError)


def test_401_points_at_the_api_key_variable():
    err = error_for_status(
        401, {"code": 401, "error": {"message": "Invalid API key"}}, what="submit"
    )
    assert "VIDGO_API_KEY" in err.message


@pytest.mark.parametrize(
    ("status", "maybe"), [(500, True), (502, True), (503, False), (408, False), (504, False)]
)
def test_only_500_and_502_may_have_been_processed(status, maybe):
    assert error_for_status(status, {}, what="submit").maybe_processed is maybe


def test_429_reads_retry_after_seconds():
    err = error_for_status(429, {}, httpx.Headers({"Retry-After": "7"}), what="detail")
    assert err.retry_after_s == 7.0


def test_parse_retry_after_reads_http_dates_and_ignores_garbage():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert (
        parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now)
        == 30.0
    )
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-5") == 0.0


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


NOT_SENT = {
    "ConnectError",
    "ConnectTimeout",
    "PoolTimeout",
    "UnsupportedProtocol",
    "LocalProtocolError",
    "ProxyError",
}
MAYBE_SENT = {
    "ReadTimeout",
    "WriteTimeout",
    "ReadError",
    "WriteError",
    "RemoteProtocolError",
    "CloseError",
    "DecodingError",
    "TooManyRedirects",
    "HTTPStatusError",
    "NetworkError",
    "ProtocolError",
    "TimeoutException",
    "TransportError",
    "RequestError",
}


def test_transport_table_covers_every_httpx_error():
    names = {c.__name__ for c in _all_subclasses(httpx.HTTPError)}
    assert names == NOT_SENT | MAYBE_SENT


@pytest.mark.parametrize("name", sorted(NOT_SENT | MAYBE_SENT))
def test_error_for_transport_maps_each_httpx_error(name):
    cls = getattr(httpx, name)
    exc = (
        cls("boom", request=httpx.Request("GET", "https://x"))
        if name != "HTTPStatusError"
        else cls("boom", request=httpx.Request("GET", "https://x"), response=httpx.Response(500))
    )
    err = error_for_transport(exc, what="submit")
    assert isinstance(err, errors.VidgoTransportError)
    assert err.maybe_processed is (name in MAYBE_SENT)
    assert name in err.message
