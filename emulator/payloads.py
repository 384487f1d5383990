"""The JSON bodies the emulator sends: Query Music Detail data and callback bodies, and the
hostile answers of ``FaultConfig.hostile_detail``."""

from __future__ import annotations

import json
import time
from typing import Any

from vidgo_stems.emulator.state import EmulatorState, EmuTask

ALL_STEMS = ["bass", "drums", "piano", "guitar", "vocals", "other"]


def stems_for(output_type: str) -> list[str]:
    """The stem keys Vidgo returns for an output type: all six, or the one named."""
    return list(ALL_STEMS) if output_type == "general" else [output_type]


def task_data(state: EmulatorState, task: EmuTask, base_url: str) -> dict[str, Any]:
    """The ``data`` object of Query Music Detail (and of callbacks) for ``task``."""
    status = task.status(state.config, time.monotonic())
    files: list[dict[str, Any]] = []
    if status == "finished" and task.output_fault == "malformed":
        files = [{"vocal_removal": "{'bass': 'https://storage.vidgo.ai/audio/bass.mp3'"}]
    elif status == "finished" and task.output_fault is None:
        pad = " " if state.config.messy_stem_keys else ""
        folder = f"{base_url}/storage/{task.task_id}"
        suffix = state.config.faults.stem_url_suffix or task.stem_format
        urls = {
            f"{name}{pad if i % 2 == 0 else ''}": (
                f"{folder}/{name}.{suffix}?g={task.url_generation}"
            )
            for i, name in enumerate(task.stems)
        }
        files = [{"vocal_removal": json.dumps(urls)}]
    return {
        "task_id": task.task_id,
        "status": status,
        "files": files,
        "created_time": task.created_time,
        "error_message": task.fail_message if status == "failed" else None,
    }


#: How deep the "deep" answer nests, and how many digits the huge numbers have.
HOSTILE_DEPTH = 100_000
HOSTILE_DIGITS = 5_000


def hostile_detail(task: EmuTask, data: dict[str, Any]) -> bytes | None:
    """The raw bytes of a hostile Query Music Detail answer for ``task``; None when it has
    none (or, for ``huge_in_stems``, is not finished yet)."""
    kind = task.hostile_detail
    huge = "9" * HOSTILE_DIGITS
    if kind == "deep":
        body = json.dumps({"code": 200, "data": {"task_id": task.task_id, "files": 0}})
        nested = "[" * HOSTILE_DEPTH + "]" * HOSTILE_DEPTH
        return body.replace('"files": 0', f'"files": {nested}').encode()
    if kind == "huge_progress":
        body = json.dumps({"code": 200, "data": {**data, "progress": 0}})
        return body.replace('"progress": 0', f'"progress": {huge}').encode()
    if kind == "huge_in_stems" and data["status"] == "finished":
        stems = json.dumps({"bass": 0}).replace("0", huge)
        finished = {**data, "files": [{"vocal_removal": stems}]}
        return json.dumps({"code": 200, "data": finished}).encode()
    if kind == "surrogate_status":
        return json.dumps({"code": 200, "data": {**data, "status": "\udfff"}}).encode()
    return None


def callback_body(state: EmulatorState, task: EmuTask, base_url: str) -> dict[str, Any]:
    """A callback body, flat (newest docs) or wrapped in ``{code, data}`` per the config."""
    data = task_data(state, task, base_url)
    return {"code": 200, "data": data} if state.config.callback_shape == "wrapped" else data
