"""Chaos stacks: a fresh emulator per test (faults set per test), real workers that get killed."""

from __future__ import annotations

import contextlib

import pytest

from vidgo_stems.emulator import EmulatorConfig
from vidgo_stems.emulator.server import BackgroundEmulator
from tests.support import API_KEY, Emulator, Stack
from vidgo_stems.devstack.redis_server import free_port

#: Workers recover quickly: short sweeps and time limits, patient retries.
CHAOS = {
    "VIDGO_STEMS_SWEEP_INTERVAL_S": "1",
    "VIDGO_STEMS_SWEEP_GRACE_S": "3",
    "VIDGO_STEMS_TASK_SOFT_TIME_LIMIT_S": "8",
    "VIDGO_STEMS_TASK_TIME_LIMIT_S": "10",
    "VIDGO_STEMS_TASK_MAX_RETRIES": "30",
    "VIDGO_STEMS_HTTP_READ_TIMEOUT_S": "1",
    "VIDGO_STEMS_DOWNLOAD_READ_TIMEOUT_S": "5",
    "VIDGO_STEMS_STALL_TIMEOUT_S": "4",
    "VIDGO_STEMS_AMBIGUOUS_SUBMIT_POLICY": "retry",
    "VIDGO_STEMS_AMBIGUOUS_SUBMIT_RETRIES": "10",
    "VIDGO_STEMS_MAX_URL_REFRESHES": "8",
}


@pytest.fixture
def chaos(redis_server, redis_client, tracks_url, tmp_path):
    """Build a stack with ``chaos(emulator_config=..., **env)``; everything stops afterwards."""
    with contextlib.ExitStack() as cleanup:

        def build(*, emulator: dict | None = None, redis=None, **env: str) -> Stack:
            defaults = {
                "api_key": API_KEY,
                "queue_s": 0.2,
                "run_s": 0.5,
                "sample_rate": 22050,
                "synth_duration_s": 1.0,
                "seed": 1234,
            }
            config = EmulatorConfig(**{**defaults, **(emulator or {})})
            server = cleanup.enter_context(BackgroundEmulator(config, free_port()))
            emu = Emulator(server.url)
            cleanup.callback(emu.close)
            client, url = redis or (redis_client, redis_server.url)
            stack = Stack(client, url, emu, tracks_url, tmp_path, **{**CHAOS, **env})
            cleanup.callback(stack.stop)
            return stack

        yield build
