"""The HTTP gateway (ASGI): the jobs API, Vidgo's callbacks, health checks, an OpenAPI document.

Served by ``vidgo-stems gateway``. It needs Redis (``REDIS_URL``) and never the Vidgo key:
enqueueing writes the ledger and sends a message, a callback wakes a poll, status reads the
ledger. Every answer is JSON; bad input gets a 4xx that says what was wrong, and no input can
make it answer 5xx (only an unreachable Redis does: 503).

- ``POST /v1/jobs``, ``GET /v1/jobs/{id}``, ``DELETE /v1/jobs/{id}``: bearer keys from
  ``VIDGO_STEMS_GATEWAY_API_KEYS``.
- ``POST /v1/vidgo/callback/{id}?token=...``: Vidgo's callbacks (see
:mod:`vidgo_stems.web.callbacks`).
- ``GET /v1/files/{key}?expires=...&sig=...``: stored stems and manifests for ``file://``
  storage, behind signed, expiring links (see :mod:`vidgo_stems.web.files`); no bearer key.
- ``GET /healthz`` (the process answers), ``GET /readyz`` (Redis answers, a worker was seen).
- ``GET /metrics``: Prometheus metrics, the gateway's own and the cluster's gauges (no key).
- ``GET /openapi.json``, ``GET /docs`` and ``GET /redoc`` (assets served locally, no CDN).
- ``/console``: the operator console, for a browser (see :mod:`vidgo_stems.web.console`).

Request bodies are read up to ``VIDGO_STEMS_GATEWAY_MAX_BODY_BYTES`` and refused beyond (413).
The access log leaves out query strings, so callback tokens never reach it.
"""

import asyncio
import hmac
import json
import logging
import time
from collections.abc import MutableMapping
from typing import Annotated

import redis
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vidgo_stems.celery_app import Producer, worker_queues
from vidgo_stems.errors import ConfigError, InvalidRequest, JobConflict
from vidgo_stems.files.links import file_root
from vidgo_stems.heartbeat import workers_seen
from vidgo_stems.monitor.serve import build_registry
from vidgo_stems.observe import metrics
from vidgo_stems.settings import Settings, get_settings
from vidgo_stems.web.callbacks import handle_callback
from vidgo_stems.web.console import add_console
from vidgo_stems.web.docs import add_docs_routes
from vidgo_stems.web.files import add_file_routes
from vidgo_stems.web.replies import (
    ErrorResponse,
    describe_validation,
    error_response,
)
from vidgo_stems.web.routes import add_job_routes

log = logging.getLogger("vidgo_stems.gateway")

_JSON = "application/json"


class BodyLimit:
    """Read the whole body up to ``max_bytes`` before the app sees it; answer 413 beyond."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        chunks, total, more = [], 0, True
        deadline = time.monotonic() + self.timeout_s
        while more:
            try:
                message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            except TimeoutError:
                await self._too_slow(scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_slow(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            408,
            "body_timeout",
            f"the request body did not arrive within {self.timeout_s:g}s "
            "(VIDGO_STEMS_GATEWAY_BODY_TIMEOUT_S); send the whole body at once",
            connection="close",
        )
        await response(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            "body_too_large",
            f"request bodies are limited to {self.max_bytes} bytes "
            "(VIDGO_STEMS_GATEWAY_MAX_BODY_BYTES); send URLs, not audio",
            connection="close",
        )
        await response(scope, receive, send)


def create_app(settings: Settings | None = None, producer: Producer | None = None) -> "AccessLog":
    """The gateway app. Refuses to build without at least one jobs API key.

    ``producer`` holds the ledger, Redis and dispatch it works with; by default one is built
    from ``settings`` (else the environment). Tests hand in their own.
    """
    if producer is None:
        settings = settings or get_settings()
        settings.require_redis_url()
        producer = Producer.from_settings(settings)
    settings = producer.settings
    if not settings.gateway_api_keys:
        raise ConfigError(
            "VIDGO_STEMS_GATEWAY_API_KEYS is not set: give the jobs API one or more bearer keys, "
            "comma-separated, e.g. VIDGO_STEMS_GATEWAY_API_KEYS=$(openssl rand -hex 24)"
        )
    keys = [k.get_secret_value().encode() for k in settings.gateway_api_keys]
    bearer = HTTPBearer(auto_error=False, description="a key from VIDGO_STEMS_GATEWAY_API_KEYS")

    def authorised(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        given = (credentials.credentials if credentials else "").encode()
        # Compare with every key, so the time taken does not say which one nearly matched.
        matches = [hmac.compare_digest(given, key) for key in keys]
        if not any(matches):
            raise HTTPException(
                401,
                "missing or unknown bearer key: send Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    app = FastAPI(
        title="vidgo-stems gateway",
        version="1",
        description="Enqueue tracks for stem separation, read and cancel jobs, receive "
        "Vidgo's callbacks. Completion webhooks are signed per Standard Webhooks.",
        docs_url=None,  # served from the package's own assets: vidgo_stems.web.docs
        redoc_url=None,
        responses={
            401: {"model": ErrorResponse},
            413: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
            503: {"model": ErrorResponse},
        },
    )
    _install_error_handlers(app)
    _allow_origins(app, settings.cors_origins)
    _add_file_routes_for_local_storage(app, settings)
    add_job_routes(app, producer, [Depends(authorised)])
    _add_vidgo_and_health_routes(app, producer)
    add_console(app, producer)
    add_docs_routes(app)
    return AccessLog(
        BodyLimit(app, settings.gateway_max_body_bytes, settings.gateway_body_timeout_s)
    )


def _allow_origins(app: FastAPI, origins: list[str]) -> None:
    """CORS for the API and the stem links (VIDGO_STEMS_CORS_ORIGINS): a web app's own pages
    may call the API with a bearer key and fetch stems with Range, preflight included; the
    headers a player needs (Content-Range, Content-Length, Accept-Ranges) are exposed."""
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "HEAD", "POST", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Range", "If-Range"],
        expose_headers=["Content-Range", "Content-Length", "Accept-Ranges", "ETag", "Location"],
        max_age=600,
    )


def _add_file_routes_for_local_storage(app: FastAPI, settings: Settings) -> None:
    """With ``file://`` storage, the gateway is where callers fetch stems from (signed links)."""
    root = file_root(settings)
    if root is None or not settings.public_base_url:
        return
    if settings.file_url_secret is None:
        raise ConfigError(
            "VIDGO_STEMS_PUBLIC_BASE_URL is set but VIDGO_STEMS_FILE_URL_SECRET is not: the "
            "gateway signs stem links with it; make one with `openssl rand -hex 32` and give "
            "the same value to workers and gateways"
        )
    add_file_routes(app, root=root, secret=settings.file_url_secret.get_secret_value().encode())


def _add_vidgo_and_health_routes(app: FastAPI, producer: Producer) -> None:
    settings = producer.settings

    @app.post(
        "/v1/vidgo/callback/{job_id}",
        operation_id="vidgoCallback",
        tags=["vidgo"],
        responses={404: {"model": ErrorResponse}},
        summary="Vidgo's completion callback (the token comes from the callback URL we sent)",
    )
    async def vidgo_callback(
        job_id: str, request: Request, token: Annotated[str, Query(max_length=128)] = ""
    ) -> JSONResponse:
        body = await request.body()
        outcome = await run_in_threadpool(
            handle_callback,
            producer.ledger,
            job_id,
            token,
            body,
            debounce_s=settings.callback_debounce_s,
            limits=settings.json_limits,
        )
        if not outcome.accepted:
            # The same answer for an unknown job and a wrong token: nothing to learn here.
            return error_response(404, "not_found", "no such callback")
        return JSONResponse({"ok": True, "outcome": outcome.value})

    @app.get("/healthz", operation_id="healthz", tags=["health"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    registry = build_registry(producer.redis, producer.ledger, settings, worker_queues(settings))

    @app.get(
        "/metrics",
        operation_id="metrics",
        tags=["health"],
        summary="Prometheus metrics: this gateway's counters and the cluster's gauges",
        response_class=Response,
    )
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/readyz",
        operation_id="readyz",
        tags=["health"],
        summary="Redis answers and a worker was seen in the last 30 s",
        responses={503: {"model": ErrorResponse}},
    )
    def readyz() -> JSONResponse:
        try:
            producer.redis.ping()
            workers = workers_seen(producer.redis, settings.redis_key_prefix)
        except redis.RedisError as exc:
            return error_response(503, "redis_unreachable", f"Redis does not answer: {exc}")
        if not workers:
            return error_response(
                503,
                "no_workers",
                "no worker has been seen in the last 30 s: start `vidgo-stems worker`",
            )
        return JSONResponse({"status": "ready", "redis": "ok", "workers": workers})


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)  # also the router's own 404 and 405
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {401: "unauthorised", 404: "not_found", 405: "method_not_allowed", 409: "conflict"}
        return error_response(
            exc.status_code,
            codes.get(exc.status_code, "http_error"),
            str(exc.detail),
            **(exc.headers or {}),
        )

    @app.exception_handler(InvalidRequest)
    async def refused(_: Request, exc: InvalidRequest) -> JSONResponse:
        return error_response(422, exc.code, exc.message)

    @app.exception_handler(JobConflict)
    async def conflict(_: Request, exc: JobConflict) -> JSONResponse:
        return error_response(409, exc.code, exc.message)

    @app.exception_handler(ConfigError)
    async def misconfigured(_: Request, exc: ConfigError) -> JSONResponse:
        return error_response(503, "misconfigured", exc.message)

    @app.exception_handler(redis.RedisError)
    async def ledger_down(_: Request, exc: redis.RedisError) -> JSONResponse:
        # Only a Redis that cannot be reached (or is loading, or read-only mid-failover) is
        # "unavailable"; any other refusal is logged as what it is, never blamed on the network.
        unreachable = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
        if isinstance(exc, unreachable | redis.ReadOnlyError):
            log.error("Redis unavailable: %s", type(exc).__name__)
            return error_response(
                503, "ledger_unavailable", "the job ledger (Redis) is unreachable; try again"
            )
        log.error("Redis refused a request: %s: %s", type(exc).__name__, exc)
        return error_response(
            503, "ledger_error", "the job ledger (Redis) refused the request; try again later"
        )


class AccessLog:
    """One log line per request: method, path (never the query string), status, duration; and
    the request counted in the HTTP metrics by its route template."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        started = time.perf_counter()
        status: MutableMapping[str, int] = {"code": 0}

        async def record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.inner(scope, receive, record)
        finally:
            elapsed = time.perf_counter() - started
            method = str(scope.get("method", ""))
            log.info(
                "%s %s %d %.1fms",
                method,
                _printable(scope.get("path", "")),
                status["code"],
                elapsed * 1000,
            )
            metrics.http_request(_route_of(scope), _method_label(method), status["code"], elapsed)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _route_of(scope: Scope) -> str:
    """The template of the route that answered (``/v1/jobs/{job_id}``), so that job ids and
    tokens never become label values; ``unmatched`` when no route did."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _method_label(method: str) -> str:
    return method if method in _METHODS else "other"


def _printable(path: str) -> str:
    return json.dumps(path[:200])[1:-1]
