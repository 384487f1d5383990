"""A faithful local Vidgo: the ASGI app that answers as Vidgo's documents say, quirks included.

Endpoints: ``POST /api/generate/submit``, ``GET /api/generate/detail/music?task_id=``,
``GET /api/generate/status/{task_id}``, ``GET /api/user/balance``, stem files under
``/storage/<task_id>/<stem>.mp3`` (or .wav/.flac; Range requests, expiry), and an admin
surface under ``/_emulator/`` (record, tasks, config, stem cache) that needs no key.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from vidgo_stems.emulator import audio, callbacks
from vidgo_stems.emulator.config import EmulatorConfig
from vidgo_stems.emulator.faults import FaultMiddleware
from vidgo_stems.emulator.payloads import hostile_detail, task_data
from vidgo_stems.emulator.state import EmulatorState, EmuTask

MODEL = "upload-and-separate-vocals"
MODEL_NAMES = ("base", "enhanced", "instrumental")
OUTPUT_TYPES = ("general", "bass", "drums", "other", "piano", "guitar", "vocals")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def error(status: int, message: str, kind: str, **headers: str) -> JSONResponse:
    """Vidgo's main error envelope: ``{code, error: {message, type}}``."""
    return JSONResponse(
        {"code": status, "error": {"message": message, "type": kind}}, status, headers=headers
    )


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


def _authorised(request: Request) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return False
    expected = _state(request).config.api_key
    return expected is None or key.strip() == expected


def _guard(request: Request, endpoint: str) -> Response | None:
    if not _authorised(request):
        _state(request).record(endpoint, rejected=401)
        return error(401, "Invalid API key", "authentication_error")
    return None


def _callback_url_problem(url: Any, strict: bool) -> str | None:
    if url is None:
        return "callback_url is required" if strict else None
    if not isinstance(url, str) or len(url) > 2048:
        return "callback_url must be a URL of at most 2048 characters"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "callback_url must be an http(s) URL"
    if strict:
        if parts.scheme != "https":
            return "callback_url must use HTTPS"
        try:
            if ipaddress.ip_address(parts.hostname).is_private:
                return "callback_url must not point at a private IP address"
        except ValueError:
            pass
    return None


def _validate_submit(body: Any, config: EmulatorConfig) -> str | None:
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if body.get("model") != MODEL:
        return f"model must be '{MODEL}'"
    problem = _callback_url_problem(body.get("callback_url"), config.strict_callback_url)
    if problem:
        return problem
    inputs = body.get("input")
    if not isinstance(inputs, dict):
        return "input is required and must be an object"
    audio_url = inputs.get("audio_url")
    if not isinstance(audio_url, str) or urlsplit(audio_url).scheme not in ("http", "https"):
        return "input.audio_url is required and must be an http(s) URL"
    if inputs.get("model_name", "base") not in MODEL_NAMES:
        return f"input.model_name must be one of {', '.join(MODEL_NAMES)}"
    if inputs.get("output_type", "general") not in OUTPUT_TYPES:
        return f"input.output_type must be one of {', '.join(OUTPUT_TYPES)}"
    title = inputs.get("title")
    if title is not None and not isinstance(title, str):
        return "input.title must be a string"
    return None


async def submit(request: Request) -> Response:
    state = _state(request)
    if (refusal := _guard(request, "submit")) is not None:
        return refusal
    try:
        body = await request.json()
    except ValueError:
        return error(400, "request body is not valid JSON", "validation_error")
    problem = _validate_submit(body, state.config)
    if problem:
        state.record("submit", rejected=400, reason=problem)
        return error(400, problem, "validation_error")
    inputs = body["input"]
    if state.config.conflict_on_duplicate_audio and any(
        t.audio_url == inputs["audio_url"] for t in state.tasks.values()
    ):
        state.record("submit", rejected=409, audio_url=inputs["audio_url"])
        return error(409, "Separation already exists for this audio", "conflict_error")
    if not state.charge():
        state.record("submit", rejected=402)
        return error(402, "Insufficient credits", "insufficient_credits_error")
    task = EmuTask(
        task_id=state.new_task_id(),
        audio_url=inputs["audio_url"],
        title=inputs.get("title"),
        model_name=inputs.get("model_name", "base"),
        output_type=inputs.get("output_type", "general"),
        callback_url=body.get("callback_url"),
        created_time=state.now_iso(),
        created_mono=time.monotonic(),
    )
    faults = state.config.faults
    if state.chance(faults.task_reject_rate):
        task.fail_message = faults.task_reject_message
    elif state.chance(faults.task_fail_rate):
        task.fail_message = faults.task_fail_message
    elif state.chance(faults.never_finish_rate):
        task.never_finish = True
    elif state.chance(faults.rate_malformed_stems):
        task.output_fault = "malformed"
    elif state.chance(faults.rate_empty_files):
        task.output_fault = "empty"
    task.hostile_detail = faults.hostile_detail
    state.tasks[task.task_id] = task
    state.record(
        "submit",
        task_id=task.task_id,
        audio_url=task.audio_url,
        model_name=task.model_name,
        output_type=task.output_type,
        title=task.title,
        callback_url=task.callback_url,
    )
    callbacks.start(request.app, task)
    return JSONResponse(
        {
            "code": 200,
            "data": {
                "task_id": task.task_id,
                "status": "not_started",
                "created_time": task.created_time,
            },
        }
    )


def _base_url(request: Request) -> str:
    configured = _state(request).config.public_url
    return (configured or str(request.base_url)).rstrip("/")


async def music_detail(request: Request) -> Response:
    state = _state(request)
    if (refusal := _guard(request, "detail")) is not None:
        return refusal
    task_id = request.query_params.get("task_id")
    if not task_id:
        return error(400, "task_id is required", "validation_error")
    task = state.tasks.get(task_id)
    if task is None:
        state.record("detail", task_id=task_id, status=404)
        return error(404, "Task not found", "resource_not_found_error")
    data = task_data(state, task, _base_url(request))
    state.record("detail", task_id=task_id, status=data["status"])
    hostile = hostile_detail(task, data)
    if hostile is not None:
        return Response(hostile, media_type="application/json")
    return JSONResponse({"code": 200, "data": data})


async def task_status(request: Request) -> Response:
    state = _state(request)
    if (refusal := _guard(request, "status")) is not None:
        return refusal
    task = state.tasks.get(request.path_params["task_id"])
    if task is None:
        return JSONResponse({"detail": "Task not found"}, 404)
    now = time.monotonic()
    status = task.status(state.config, now)
    state.record("status", task_id=task.task_id, status=status)
    return JSONResponse(
        {
            "code": 200,
            "data": {
                "task_id": task.task_id,
                "status": status,
                "files": [],
                "created_time": task.created_time,
                "progress": task.progress(state.config, now),
                "error_message": task.fail_message if status == "failed" else None,
            },
        }
    )


async def balance(request: Request) -> Response:
    state = _state(request)
    if (refusal := _guard(request, "balance")) is not None:
        return refusal
    state.record("balance", credits=state.credits)
    return JSONResponse(
        {"code": 200, "data": {"email": "emulator@vidgo.invalid", "credits_amount": state.credits}}
    )


async def storage(request: Request) -> Response:
    state = _state(request)
    task = state.tasks.get(request.path_params["task_id"])
    stem, _, ext = request.path_params["filename"].rpartition(".")
    if task is None or stem not in task.stems:
        state.record("download", task_id=request.path_params["task_id"], stem=stem, status=404)
        return JSONResponse({"detail": "Not found"}, 404)
    finish = task.finish_mono(state.config) or 0.0
    generation = request.query_params.get("g", "0")
    expired = time.monotonic() > finish + state.config.stem_ttl_s
    current = generation == str(task.url_generation)
    if not expired and current and state.chance(state.config.faults.download_expire_rate):
        task.url_generation += 1  # Query Music Detail now lists fresh URLs
        expired = True
    if expired or generation != str(task.url_generation):
        state.record("download", task_id=task.task_id, stem=stem, status=410)
        return JSONResponse({"detail": "This link has expired"}, 410)
    data = task.stems[stem]
    start, end, status = _range(request.headers.get("range"), len(data))
    if status == 416:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{len(data)}"})
    body = data[start : end + 1]
    content_type = audio.STEM_FORMATS.get(ext, "application/octet-stream")
    headers = {"Accept-Ranges": "bytes", "Content-Type": content_type}
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    state.record(
        "download",
        task_id=task.task_id,
        stem=stem,
        status=status,
        bytes=len(body),
        range=request.headers.get("range"),
        sha256=task.sha256[stem],
    )
    delay_s = state.config.storage_chunk_delay_s
    if delay_s > 0:
        headers["Content-Length"] = str(len(body))
        return StreamingResponse(_trickle(body, delay_s), status_code=status, headers=headers)
    return Response(body, status_code=status, headers=headers)


async def _trickle(body: bytes, delay_s: float) -> AsyncIterator[bytes]:
    """Serve a body slowly, 16 KiB at a time, so downloads take a while."""
    for start in range(0, len(body), 16384):
        yield body[start : start + 16384]
        await asyncio.sleep(delay_s)


def _range(header: str | None, size: int) -> tuple[int, int, int]:
    """(first, last, status) for a single-range ``Range`` header; 200 when absent or unusable."""
    match = _RANGE.match(header.strip()) if header else None
    if not match or (not match.group(1) and not match.group(2)):
        return 0, size - 1, 200
    first, last = match.groups()
    if not first:  # suffix range: the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return 0, 0, 416
    return start, end, 206


async def admin_record(request: Request) -> Response:
    kind = request.query_params.get("kind")
    return JSONResponse(_state(request).events(kind))


async def admin_tasks(request: Request) -> Response:
    state = _state(request)
    now = time.monotonic()
    return JSONResponse(
        {
            task_id: {
                "audio_url": t.audio_url,
                "model_name": t.model_name,
                "output_type": t.output_type,
                "status": t.status(state.config, now),
                "sha256": t.sha256,
                "stem_source": t.stem_source,
                "stem_cache": t.stem_cache,
                "error_message": t.fail_message,
                "never_finish": t.never_finish,
                "callback_url": t.callback_url,
            }
            for task_id, t in list(state.tasks.items())
        }
    )


async def admin_cache(request: Request) -> Response:
    """The stem cache's counters (hits, misses, renders, evictions) and size."""
    state = _state(request)
    return JSONResponse(state.stem_cache.stats(state.config))


async def admin_config(request: Request) -> Response:
    state = _state(request)
    if request.method == "POST":
        try:
            changes = await request.json()
            state.reconfigure(changes)
        except ValueError as exc:
            return JSONResponse({"detail": f"bad config: {exc}"}, 400)
    return JSONResponse(state.config.model_dump())


def create_app(
    config: EmulatorConfig | None = None, *, base_url: str = "http://127.0.0.1"
) -> Starlette:
    app = Starlette(
        routes=[
            Route("/api/generate/submit", submit, methods=["POST"]),
            Route("/api/generate/detail/music", music_detail, methods=["GET"]),
            Route("/api/generate/status/{task_id:path}", task_status, methods=["GET"]),
            Route("/api/user/balance", balance, methods=["GET"]),
            Route("/storage/{task_id}/{filename}", storage, methods=["GET"]),
            Route("/_emulator/record", admin_record, methods=["GET"]),
            Route("/_emulator/tasks", admin_tasks, methods=["GET"]),
            Route("/_emulator/config", admin_config, methods=["GET", "POST"]),
            Route("/_emulator/cache", admin_cache, methods=["GET"]),
        ],
        middleware=[Middleware(FaultMiddleware)],
    )
    app.state.emulator = EmulatorState(config or EmulatorConfig())
    app.state.background = set()
    app.state.base_url = base_url
    return app


__all__ = ["create_app"]
