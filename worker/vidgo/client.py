"""VidgoClient: the typed face of Vidgo's HTTP API, one per worker process.

The client owns one ``httpx.Client`` built over an injectable transport, so tests pass an
``httpx.MockTransport`` and production gets connection pooling. Every answer goes through
:mod:`vidgo_stems.vidgo.http_errors` (errors) and :mod:`vidgo_stems.vidgo.parse` (success shapes).
The API key lives in a ``SecretStr`` and only ever leaves it for the Authorization header.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from vidgo_stems import jsonsafe
from vidgo_stems.errors import PermanentError, VidgoProtocolError, VidgoStemsError
from vidgo_stems.jsonsafe import JsonLimits, JsonRefused
from vidgo_stems.models import VIDGO_MODEL, JobRequest
from vidgo_stems.observe import metrics
from vidgo_stems.settings import Settings
from vidgo_stems.text import neutralise
from vidgo_stems.vidgo.http_errors import error_for_status, error_for_transport
from vidgo_stems.vidgo.limits import VidgoLimits
from vidgo_stems.vidgo.parse import SubmitResult, TaskDetail, body_code, parse_detail, parse_submit

USER_AGENT = "vidgo-stems/0.1"


def submit_payload(request: JobRequest, *, callback_url: str | None) -> dict[str, Any]:
    """The JSON body of ``POST /api/generate/submit``; ``callback_url`` is omitted, never null."""
    inputs: dict[str, Any] = {
        "audio_url": request.audio_url,
        "model_name": request.model_name.value,
        "output_type": request.output_type.value,
    }
    if request.title:
        inputs["title"] = request.title
    payload: dict[str, Any] = {"model": VIDGO_MODEL, "input": inputs}
    if callback_url:
        payload["callback_url"] = callback_url
    return payload


def encode_body(payload: dict[str, Any]) -> bytes:
    """The UTF-8 JSON of a request body. Text that is not Unicode (a lone surrogate) is refused
    with a message that names no value: the body carries the job's callback token."""
    try:
        return json.dumps(
            payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode()
    except (UnicodeEncodeError, ValueError):
        raise PermanentError(
            "the job's request holds text that is not valid Unicode (a lone surrogate) or a "
            "number JSON cannot carry; fix the title or audio_url and enqueue it again",
            code="invalid_request",
        ) from None


def http_timeout(settings: Settings, *, read_s: float | None = None) -> httpx.Timeout:
    return httpx.Timeout(
        connect=settings.http_connect_timeout_s,
        read=read_s if read_s is not None else settings.http_read_timeout_s,
        write=settings.http_write_timeout_s,
        pool=settings.http_pool_timeout_s,
    )


class VidgoClient:
    """Calls Vidgo's submit, Query Music Detail, status and balance endpoints."""

    def __init__(
        self,
        settings: Settings,
        transport: httpx.BaseTransport | None = None,
        *,
        api_key: SecretStr | None = None,
        limits: VidgoLimits | None = None,
    ) -> None:
        key = api_key or settings.require_api_key()
        self._limits = limits
        self._json_limits = settings.json_limits
        self._http = httpx.Client(
            base_url=settings.vidgo_base_url,
            transport=transport,
            timeout=http_timeout(settings),
            headers={
                "Authorization": f"Bearer {key.get_secret_value()}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"VidgoClient(base_url={str(self._http.base_url)!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> VidgoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, request: JobRequest, *, callback_url: str | None = None) -> SubmitResult:
        """Create a separation task. Raises a RetryableError or PermanentError on failure."""
        body = self._call(
            "POST",
            "/api/generate/submit",
            what="submit",
            content=encode_body(submit_payload(request, callback_url=callback_url)),
            headers={"Content-Type": "application/json"},
        )
        return parse_submit(body)

    def music_detail(self, task_id: str) -> TaskDetail:
        """Query Music Detail, the source of truth for this model's status and stems."""
        body = self._call(
            "GET", "/api/generate/detail/music", what="music detail", params={"task_id": task_id}
        )
        return parse_detail(body)

    def task_status(self, task_id: str) -> TaskDetail:
        """The generic status endpoint; only its ``progress`` is of use for music tasks."""
        path = "/api/generate/status/" + quote(task_id, safe="")
        return parse_detail(self._call("GET", path, what="task status"))

    def balance(self) -> int:
        """The account's credits."""
        data = self._call("GET", "/api/user/balance", what="balance").get("data")
        credits = data.get("credits_amount") if isinstance(data, dict) else None
        if not isinstance(credits, int | float) or isinstance(credits, bool):
            raise VidgoProtocolError("Vidgo balance answer has no numeric data.credits_amount")
        return int(credits)

    def _call(self, method: str, path: str, *, what: str, **kwargs: Any) -> dict[str, Any]:
        if self._limits is not None:
            self._limits.throttle("submit" if what == "submit" else "query")
        endpoint = what.replace(" ", "_")
        started = time.monotonic()
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            timeout = isinstance(exc, httpx.TimeoutException)
            metrics.VIDGO_REQUESTS.labels(
                endpoint, metrics.vidgo_outcome(None, timeout=timeout)
            ).inc()
            raise error_for_transport(exc, what=what) from None
        metrics.VIDGO_REQUEST_DURATION.labels(endpoint).observe(time.monotonic() - started)
        metrics.VIDGO_REQUESTS.labels(endpoint, metrics.vidgo_outcome(response.status_code)).inc()
        if response.status_code == 429 and self._limits is not None:
            self._limits.penalise()
        body = _decode(response, what=what, limits=self._json_limits)
        if response.status_code != 200:
            raise error_for_status(response.status_code, body, response.headers, what=what)
        code = body_code(body)
        if code not in (None, 0, 200):
            raise error_for_status(code, body, response.headers, what=what)
        if not isinstance(body, dict):
            raise VidgoProtocolError(f"Vidgo {what} answered 200 with a non-object body")
        return body


def _decode(response: httpx.Response, *, what: str, limits: JsonLimits) -> Any:
    """JSON of a response, parsed within ``limits`` (no depth or number can crash the parse).
    A 200 that is not usable JSON is a protocol error; an error answer that is not keeps its
    text, neutralised, as the message."""
    try:
        return jsonsafe.loads(response.content, limits)
    except JsonRefused as exc:
        if response.status_code == 200:
            raise VidgoProtocolError(
                f"Vidgo {what} answered 200 with a body that is not JSON we accept: {exc}"
            ) from None
        return {"detail": neutralise(response.content[:200].decode("utf-8", "replace"))}


__all__ = ["VidgoClient", "VidgoStemsError", "http_timeout", "submit_payload"]
