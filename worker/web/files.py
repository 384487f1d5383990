"""``GET``/``HEAD /v1/files/{key}``: stems in ``file://`` storage, behind signed, expiring links.

The link is the credential (no bearer key), so it can go straight into an ``<audio>`` tag. The
signature is checked first: a missing, tampered, foreign or expired link gets 403 and touches
no file. Then the key (:func:`vidgo_stems.files.signing.check_key`) and the path: it must resolve,
symlinks included, to a regular file under the root, and no part of it may be hidden (temp
files, sidecars); anything else is 404, the same as a file that does not exist.

Files are served by Starlette's ``FileResponse``: ranges (206 with ``Content-Range``, 416 when
unsatisfiable), ``HEAD``, ``ETag`` and ``Last-Modified``. This module adds ``If-None-Match``
(304), content types for audio, ``Cache-Control: private`` up to the link's expiry, and turns
every refusal into the gateway's JSON shape ``{"error": {"code", "message"}}``.

The query string (``sig``) is never logged: refusals are logged with the key and the reason.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from vidgo_stems.errors import UrlExpired, UrlRefused
from vidgo_stems.files.signing import check_key, check_secret, verify

log = logging.getLogger("vidgo_stems.files")

MEDIA_TYPES = {
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".m4a": "audio/mp4",
    ".json": "application/json",
}
_NO_STORE = {"Cache-Control": "no-store"}
_ERROR_SHAPE = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    "required": ["code", "message"],
                }
            },
            "required": ["error"],
        }
    }
}
_DOCUMENTED: dict[int | str, dict[str, Any]] = {
    200: {"description": "the file", "content": {"audio/mpeg": {}, "application/json": {}}},
    206: {"description": "the requested range"},
    304: {"description": "the copy you hold (If-None-Match) is current"},
    403: {"description": "the link is missing, tampered with or expired", "content": _ERROR_SHAPE},
    404: {"description": "no such file", "content": _ERROR_SHAPE},
    416: {"description": "the range starts beyond the end of the file", "content": _ERROR_SHAPE},
}


def add_file_routes(
    app: FastAPI, *, root: Path, secret: bytes, clock: Callable[[], float] = time.time
) -> None:
    """Serve files under ``root`` at ``/v1/files/{key}`` to holders of a valid signed link."""
    check_secret(secret)  # at start-up, not at the first request
    base = root.resolve()

    def read_stored_file(
        key: str, request: Request, expires: str | None = None, sig: str | None = None
    ) -> Response:
        now = clock()
        try:
            verify(key, expires or "", sig or "", secret=secret, now=now)
        except UrlRefused as exc:
            return _refused(key, exc)
        found = _locate(base, key)
        if found is None:
            return _error(404, "not_found", "no such file")
        path, stat_result = found
        max_age = max(0, int(int(expires or "0") - now))
        response = _StoredFile(
            path,
            stat_result=stat_result,
            media_type=media_type(path.name),
            headers={
                "Cache-Control": f"private, max-age={max_age}",
                "X-Content-Type-Options": "nosniff",
            },
        )
        if _matches(request.headers.get("if-none-match"), response.headers["etag"]):
            return Response(status_code=304, headers=_validators(response))
        return response

    route = "/v1/files/{key:path}"
    app.add_api_route(
        route,
        read_stored_file,
        methods=["GET"],
        operation_id="getFile",
        tags=["files"],
        summary="A stored file (stem or manifest) behind a signed, expiring link",
        description="No bearer key: the link's `expires` and `sig` are the credential. "
        "Supports Range (206, 416), HEAD and If-None-Match (304).",
        response_class=Response,
        responses=_DOCUMENTED,
    )
    # HEAD apart and out of the schema: one route with both methods would give the OpenAPI
    # document two operations with the same id.
    app.add_api_route(route, read_stored_file, methods=["HEAD"], include_in_schema=False)


def media_type(name: str) -> str:
    """The Content-Type for a stored file name: audio types pinned, others from ``mimetypes``."""
    suffix = Path(name).suffix.lower()
    if suffix in MEDIA_TYPES:
        return MEDIA_TYPES[suffix]
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _refused(key: str, exc: UrlRefused) -> JSONResponse:
    log.info("file link refused (%s): %s", exc.reason, json.dumps(key[:200]))
    if isinstance(exc, UrlExpired):
        job_id = key.split("/", 1)[0]
        return _error(
            403,
            "url_refused",
            f"this link has expired: ask GET /v1/jobs/{job_id} for a fresh one",
        )
    return _error(
        403,
        "url_refused",
        f"this link is not valid ({exc.reason}): use the URL from GET /v1/jobs/{{id}} unchanged",
    )


def _locate(base: Path, key: str) -> tuple[Path, os.stat_result] | None:
    """The regular file ``key`` names under ``base``, or None; never anything outside ``base``."""
    try:
        check_key(key)
        resolved = (base / key).resolve(strict=True)
        relative = resolved.relative_to(base)  # ValueError: a symlink leads outside the root
        if not relative.parts or any(part.startswith(".") for part in relative.parts):
            return None
        stat_result = resolved.stat()
    except (UrlRefused, ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop
        return None
    if not stat.S_ISREG(stat_result.st_mode):
        return None
    return resolved, stat_result


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _validators(response: Response) -> dict[str, str]:
    names = ("etag", "last-modified", "cache-control", "accept-ranges")
    return {name: response.headers[name] for name in names if name in response.headers}


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=status,
        headers={**_NO_STORE, **headers},
    )


class _StoredFile(FileResponse):
    """FileResponse whose own range refusals (plain text 400 and 416) come out as JSON."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, _RangeErrorsAsJson(send))


class _RangeErrorsAsJson:
    """Rewrites a 400 or 416 answer (only range parsing makes those here) into the JSON shape."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.replacement: JSONResponse | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] in (400, 416):
            self.replacement = self._replacement(message)
            await self.send(
                {
                    "type": "http.response.start",
                    "status": self.replacement.status_code,
                    "headers": self.replacement.raw_headers,
                }
            )
            return
        if self.replacement is None:
            await self.send(message)
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            await self.send({"type": "http.response.body", "body": self.replacement.body})

    @staticmethod
    def _replacement(message: Message) -> JSONResponse:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message["headers"]}
        if message["status"] == 400:
            return _error(
                400, "invalid_range", "the Range header is malformed: send e.g. bytes=0-1023"
            )
        content_range = headers.get("content-range", "bytes */0")
        size = content_range.rsplit("/", 1)[-1]
        return _error(
            416,
            "range_not_satisfiable",
            f"the range starts at or beyond the end of the file ({size} bytes)",
            **{"Content-Range": content_range},
        )
