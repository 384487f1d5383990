"""The JSON bodies the emulator sends: Query Music Detail data and callback bodies."""

from __future__ import annotations

import json
import time
from typing import Any

from emulator.state import EmulatorState, EmuTask

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
        urls = {
            f"{name}{pad if i % 2 == 0 else ''}": (
                f"{folder}/{name}.{task.stem_format}?g={task.url_generation}"
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


def callback_body(state: EmulatorState, task: EmuTask, base_url: str) -> dict[str, Any]:
    """A callback body, flat (newest docs) or wrapped in ``{code, data}`` per the config."""
    data = task_data(state, task, base_url)
    return {"code": 200, "data": data} if state.config.callback_shape == "wrapped" else data
