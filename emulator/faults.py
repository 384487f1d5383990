"""Fault injection for the emulator, as pure ASGI middleware around the Starlette app.

Per request to ``/api/...`` it draws, from the emulator's seeded RNG: a 429 (with Retry-After)
or a 5xx, answered *before* the request is processed; or, *after* it was processed (so a submit
is billed), an answer held back past the client's timeout or cut off mid-body. Requests to
``/storage/...`` can be cut off mid-body too. Faults are recorded as ``fault`` events.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vidgo_stems.emulator.state import EmulatorState

_ENDPOINTS = {
    "/api/generate/submit": "submit",
    "/api/generate/detail/music": "detail",
    "/api/user/balance": "balance",
}


def endpoint_of(path: str) -> str | None:
    if path.startswith("/api/generate/status/"):
        return "status"
    if path.startswith("/storage/"):
        return "storage"
    return _ENDPOINTS.get(path)


def draw(state: EmulatorState, endpoint: str) -> str | None:
    """The fault for one request: "429", "5xx", "slow", "cut" or None."""
    faults = state.config.faults
    if endpoint == "storage":
        return "cut" if state.chance(faults.download_cut_rate) else None
    if endpoint not in faults.endpoints:
        return None
    for kind, rate in (
        ("429", faults.rate_429),
        ("5xx", faults.rate_5xx),
        ("slow", faults.rate_slow),
        ("cut", faults.rate_cut),
    ):
        if state.chance(rate):
            return kind
    return None


class FaultMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = endpoint_of(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        state: EmulatorState = scope["app"].state.emulator
        fault = draw(state, endpoint)
        if fault is None:
            await self.app(scope, receive, send)
            return
        state.record("fault", endpoint=endpoint, fault=fault, path=scope["path"])
        if fault in ("429", "5xx"):
            await _refuse(state, fault, send)
            return
        messages: list[Message] = []

        async def capture(message: Message) -> None:
            messages.append(message)

        await self.app(scope, receive, capture)
        if fault == "slow":
            await asyncio.sleep(state.config.faults.slow_s)
            for message in messages:
                await send(message)
            return
        await _cut(messages, send)


async def _refuse(state: EmulatorState, fault: str, send: Send) -> None:
    faults = state.config.faults
    if fault == "429":
        status, kind, message = 429, "rate_limit_error", "Rate limit exceeded"
        headers = (
            [(b"retry-after", f"{faults.retry_after_s:g}".encode())] if faults.retry_after_s else []
        )
    else:
        status = state.pick(faults.status_5xx)
        kind, message, headers = "internal_error", "Internal server error", []
    body = json.dumps({"code": status, "error": {"message": message, "type": kind}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _cut(messages: list[Message], send: Send) -> None:
    """Send the start and half of the body, then stop: the client sees an incomplete answer."""
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    headers: list[Any] = [h for h in start["headers"] if h[0].lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
    raise ConnectionAbortedError("emulator fault: answer cut off mid-body")
