"""The console's HTTP side: sign-in, pages, JSON reads, live updates and actions.

Pages are one static shell (the script draws each page from the JSON reads); every route
but the sign-in form needs a session: pages send the browser to the form, reads answer 401.
Actions (POST) also need the session's CSRF token in ``X-CSRF-Token`` and a key that may act.
None of these routes is in the OpenAPI document: they are for a browser, not for programs.
"""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from vidgo_stems.celery_app import Producer, worker_queues
from vidgo_stems.errors import InvalidRequest
from vidgo_stems.web.console import figures
from vidgo_stems.web.console.access import COOKIE, COOKIE_PATH, Access, Session, csrf_ok
from vidgo_stems.web.console.actions import Selection, confirm, preview
from vidgo_stems.web.console.batches import Batches
from vidgo_stems.web.console.jobs import job_page, peaks
from vidgo_stems.web.console.search import Query, search
from vidgo_stems.web.replies import error_response

log = logging.getLogger("vidgo_stems.console")

STATIC = Path(__file__).parent / "static"
#: Seconds between two live updates of the overview, and the longest a stream stays open (the
#: browser reconnects by itself).
PUSH_EVERY_S = 2.0
STREAM_FOR_S = 300.0
_PAGES = ("batches", "failures", "jobs")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "media-src 'self' https: http:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


REFUSED = (
    '<p class="error" role="alert">That is not a console key: use a key from '
    "VIDGO_STEMS_GATEWAY_API_KEYS or VIDGO_STEMS_CONSOLE_READONLY_KEYS.</p>"
)


class NeedsSignIn(Exception):
    """A page was asked for without a session: the browser goes to the sign-in form."""


def add_console(app: FastAPI, producer: Producer) -> None:
    """Mount the console on ``app`` under /console."""
    access = Access(producer.redis, producer.settings)
    router = APIRouter(prefix="/console", include_in_schema=False)

    def session_of(request: Request) -> Session | None:
        return access.find(request.cookies.get(COOKIE))

    def page_session(request: Request) -> Session:
        session = session_of(request)
        if session is None:
            raise NeedsSignIn
        return session

    def api_session(request: Request) -> Session:
        session = session_of(request)
        if session is None:
            raise HTTPException(401, "sign in to the console first (/console/login)")
        return session

    def acting_session(
        request: Request, session: Annotated[Session, Depends(api_session)]
    ) -> Session:
        if not csrf_ok(session, request.headers.get("x-csrf-token")):
            raise HTTPException(403, "this action lacks its CSRF token: reload the page and retry")
        if not session.may_act:
            raise HTTPException(403, f"{session.who} is a read-only key: it may look, not act")
        return session

    @app.exception_handler(NeedsSignIn)
    async def to_sign_in(_: Request, __: NeedsSignIn) -> Response:
        return RedirectResponse("/console/login", status_code=303, headers=HEADERS)

    _add_sign_in(router, access)
    _add_pages(router, page_session)
    _add_reads(router, producer, api_session)
    _add_actions(router, producer, acting_session)
    app.include_router(router)


def _add_sign_in(router: APIRouter, access: Access) -> None:
    @router.get("/login")
    def login_form() -> Response:
        return _login_page("", 200)

    @router.get("/static/console.css")
    def stylesheet() -> Response:
        return _static("console.css")  # the sign-in form's look: the one file served to all

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode(errors="replace"), max_num_fields=5)
        given = (form.get("key") or [""])[0].strip()
        opened = await run_in_threadpool(access.open, given) if given else None
        if opened is None:
            log.warning("console sign-in refused: unknown key")
            return _login_page(REFUSED, 401)
        sid, session = opened
        log.info("console sign-in by %s (%s)", session.who, session.kind)
        response = RedirectResponse("/console", status_code=303, headers=HEADERS)
        secure = access.secure_always or _over_tls(request)
        response.set_cookie(
            COOKIE,
            sid,
            max_age=access.ttl_s,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=secure,
        )
        return response

    @router.post("/logout")
    def logout(request: Request) -> Response:
        session = access.find(request.cookies.get(COOKIE))
        if session is None or not csrf_ok(session, request.headers.get("x-csrf-token")):
            raise HTTPException(403, "sign-out needs the session's CSRF token: reload the page")
        access.close(request.cookies.get(COOKIE))
        log.info("console sign-out by %s", session.who)
        response = Response(status_code=204, headers=HEADERS)
        response.delete_cookie(COOKIE, path=COOKIE_PATH)
        return response


def _add_pages(router: APIRouter, page_session: Any) -> None:
    guard = [Depends(page_session)]

    @router.get("", dependencies=guard)
    def overview_page() -> Response:
        return _static("app.html")

    @router.get("/jobs/{job_id}", dependencies=guard)
    def job_shell(job_id: str) -> Response:
        return _static("app.html")

    for name in _PAGES:
        router.add_api_route(f"/{name}", overview_page, methods=["GET"], dependencies=guard)

    @router.get("/static/{name}", dependencies=guard)
    def asset(name: str) -> Response:
        return _static(name)


def _add_reads(router: APIRouter, producer: Producer, api_session: Any) -> None:
    settings = producer.settings
    queues = worker_queues(settings)

    def overview() -> dict[str, Any]:
        return figures.overview(producer.redis, producer.ledger, settings, queues)

    @router.get("/api/session")
    def who(session: Annotated[Session, Depends(api_session)]) -> dict[str, Any]:
        return {"who": session.who, "kind": session.kind, "csrf": session.csrf}

    guard = [Depends(api_session)]

    @router.get("/api/overview", dependencies=guard)
    def overview_now() -> dict[str, Any]:
        return overview()

    @router.get("/api/events", dependencies=guard)
    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            until = time.monotonic() + STREAM_FOR_S
            yield b"retry: 2000\n\n"
            while time.monotonic() < until and not await request.is_disconnected():
                data = await run_in_threadpool(overview)
                yield f"event: overview\ndata: {json.dumps(data)}\n\n".encode()
                await asyncio.sleep(PUSH_EVERY_S)

        headers = {**HEADERS, "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    _add_batch_reads(router, producer, guard)
    _add_job_reads(router, producer, guard)


def _add_batch_reads(router: APIRouter, producer: Producer, guard: list[Any]) -> None:
    batches = Batches(producer.ledger, producer.settings.credits_per_task)

    @router.get("/api/batches", dependencies=guard)
    def batch_list() -> dict[str, Any]:
        return {"batches": [b.to_json() for b in batches.listed()]}

    @router.get("/api/batches/{batch_id}/{which}", dependencies=guard)
    def batch_file(batch_id: str, which: str) -> Response:
        path = batches.files(batch_id).get(which)
        if path is None or not path.is_file():
            return error_response(
                404,
                "not_found",
                f"no {which} file of batch {batch_id} on this gateway's host: read it where "
                "the batch ran, or keep batch manifests on a folder both can see",
            )
        return FileResponse(path, filename=path.name, headers=HEADERS)

    @router.get("/api/failures", dependencies=guard)
    def failures(batch: str | None = None, since: str | None = None) -> dict[str, Any]:
        scope = figures.Scope.parse(batch, since)
        groups = figures.failure_groups(producer.ledger, scope)
        return {
            "scope": scope.describe(),
            "total": sum(g.count for g in groups),
            "groups": [g.__dict__ for g in groups],
        }


def _add_job_reads(router: APIRouter, producer: Producer, guard: list[Any]) -> None:
    @router.get("/api/jobs", dependencies=guard)
    def jobs(request: Request) -> dict[str, Any]:
        return search(producer.ledger, Query.parse(dict(request.query_params)))

    @router.get("/api/jobs/{job_id}", dependencies=guard)
    def job(job_id: str) -> dict[str, Any]:
        found = job_page(producer, job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id} in the ledger")
        return found

    @router.get("/api/jobs/{job_id}/peaks/{stem}", dependencies=guard)
    def waveform(job_id: str, stem: str) -> dict[str, Any]:
        found = peaks(producer, job_id, stem)
        if found is None:
            raise HTTPException(404, f"no waveform of stem {stem} of job {job_id}")
        return found


def _add_actions(router: APIRouter, producer: Producer, acting_session: Any) -> None:
    @router.post("/api/preview")
    async def preview_action(
        request: Request, session: Annotated[Session, Depends(acting_session)]
    ) -> dict[str, Any]:
        body = await _json(request)
        action = body.get("action")
        if action not in ("retry", "cancel"):
            raise InvalidRequest("action must be retry or cancel")
        selection = Selection(
            job_ids=[str(j) for j in body.get("job_ids") or []][:1000],
            scope=figures.Scope.parse(body.get("batch"), body.get("since")),
            codes=[str(c) for c in body.get("codes") or []],
        )
        shown = await run_in_threadpool(preview, producer, action, selection, session.who)
        return shown.to_json()

    @router.post("/api/confirm")
    async def confirm_action(
        request: Request, session: Annotated[Session, Depends(acting_session)]
    ) -> dict[str, Any]:
        body = await _json(request)
        outcome = await run_in_threadpool(
            confirm, producer, str(body.get("plan_id") or ""), session.who
        )
        return outcome.__dict__


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise InvalidRequest("send a JSON object")
    return body


def _static(name: str) -> Response:
    path = STATIC / name
    if path.suffix not in _TYPES or path.parent != STATIC or not path.is_file():
        raise HTTPException(404, f"no console file {name}")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=HEADERS)


def _login_page(message: str, status: int) -> Response:
    page = (STATIC / "login.html").read_text().replace("<!--message-->", message)
    return HTMLResponse(page, status_code=status, headers=HEADERS)


def _over_tls(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "")
    return request.url.scheme == "https" or forwarded.split(",")[0].strip() == "https"
