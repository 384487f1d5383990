"""Background life of an emulated task: render its stems, then call back when it ends.

Stems come from the submitted ``audio_url`` when it can be fetched and decoded (served from the
stem cache when the same source was split the same way before), else they are synthesised.
The task stays ``running`` until its stems exist, so ``finished`` means they can be fetched.
An ``audio_url`` that cannot be fetched at all (a port out of range, no host) fails the task
with an ``error_message``, as Vidgo reports a failed fetch, instead of leaving it running.
The callback is POSTed when the task reaches ``finished`` or ``failed``, flat or wrapped per
the config, and retried on the old (1/2/4 s) or new (5 tries, backoff) schedule.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette

from vidgo_stems.emulator import audio
from vidgo_stems.emulator.cache import RenderKey
from vidgo_stems.emulator.payloads import callback_body, stems_for
from vidgo_stems.emulator.state import EmulatorState, EmuTask

log = logging.getLogger(__name__)
SCHEDULES = {"old": [1.0, 2.0, 4.0], "new": [2.0, 4.0, 8.0, 16.0, 32.0], "none": []}


def start(app: Starlette, task: EmuTask) -> None:
    """Schedule the task's background work on the running loop, keeping a reference to it."""
    job = asyncio.get_running_loop().create_task(_life(app, task))
    app.state.background.add(job)
    job.add_done_callback(app.state.background.discard)


async def _life(app: Starlette, task: EmuTask) -> None:
    state: EmulatorState = app.state.emulator
    if task.fail_message is None:
        try:
            await _render(state, task)
        except Exception as exc:  # whatever broke, the task fails as Vidgo's tasks do
            log.info("task %s: rendering failed (%r)", task.task_id, exc)
            task.fail_message = f"Failed to fetch the audio from audio_url: {_reason(exc)}"
    finish = task.finish_mono(state.config)
    if finish is None:
        return  # a task that never finishes never calls back
    await asyncio.sleep(max(0.0, finish - time.monotonic()))
    if task.callback_url:
        await _call_back(app, state, task)


def _reason(exc: BaseException) -> str:
    """The innermost message of ``exc`` (anyio wraps a connect's error in a group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be fetched at all (no host, a port out of range); None when it can
    be tried."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return str(exc)
    if not parts.hostname:
        return "the URL has no host"
    return "port 0 cannot be connected to" if port == 0 else None


async def _render(state: EmulatorState, task: EmuTask) -> None:
    """Make the task's stems while it is running: its finish waits for them (``ready_mono``).
    An unfetchable URL fails the task instead."""
    config = state.config
    names = stems_for(task.output_type)
    problem = url_problem(task.audio_url)
    if problem is not None:
        task.fail_message = f"Failed to fetch the audio from audio_url: {problem}"
        return
    try:
        async with httpx.AsyncClient(timeout=config.fetch_timeout_s) as client:
            response = await client.get(task.audio_url)
            response.raise_for_status()
        source = response.content
        key = await asyncio.to_thread(RenderKey.of, source, config, names, task.model_name)

        def render() -> dict[str, bytes]:
            samples, rate = audio.decode(source, max_s=config.max_input_s)
            lost = frozenset(config.faults.lost_stems)
            return audio.split(samples, rate, names, task.model_name, config.stem_format, lost)

        rendered, task.stem_cache = await state.stem_cache.obtain(key, config, render)
        task.set_stems(rendered.stems, "input", config.stem_format, rendered.sha256)
    except (httpx.HTTPError, ValueError) as exc:
        log.info("task %s: input not usable (%s); synthesising stems", task.task_id, exc)
        stems = await asyncio.to_thread(
            audio.synthesise,
            task.task_id,
            names,
            sample_rate=config.sample_rate,
            duration_s=config.synth_duration_s,
            fmt=config.stem_format,
        )
        task.set_stems(stems, "synthesised", config.stem_format)


async def _call_back(app: Starlette, state: EmulatorState, task: EmuTask) -> None:
    base_url = state.config.public_url or app.state.base_url
    faults = state.config.faults
    if state.chance(faults.callback_drop_rate):
        state.record("callback_dropped", task_id=task.task_id)
        return
    await asyncio.sleep(faults.callback_delay_s)
    body = callback_body(state, task, base_url)
    for _ in range(faults.callback_duplicates):
        await _deliver(state, task, body)
    await _deliver(state, task, body)


async def _deliver(state: EmulatorState, task: EmuTask, body: dict[str, object]) -> None:
    """POST one callback, retrying on the configured schedule until 2xx or 4xx."""
    delays = [0.0, *SCHEDULES[state.config.callback_retries]]
    async with httpx.AsyncClient(timeout=state.config.callback_timeout_s) as client:
        for attempt, delay in enumerate(delays, start=1):
            await asyncio.sleep(delay)
            try:
                response = await client.post(task.callback_url or "", json=body)
                status: int | str = response.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            state.record(
                "callback",
                task_id=task.task_id,
                attempt=attempt,
                status=status,
                shape=state.config.callback_shape,
            )
            if isinstance(status, int) and (200 <= status < 300 or 400 <= status < 500):
                return
