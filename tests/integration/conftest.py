"""One stack for the integration suite: the emulator over HTTP and one real prefork worker."""

from __future__ import annotations

import secrets

import pytest

from tests.steps import StepLog
from tests.support import API_KEY, GATEWAY_KEY, Emulator, Stack
from vidgo_stems.celery_app import Producer
from vidgo_stems.devstack.redis_server import free_port
from vidgo_stems.emulator import EmulatorConfig
from vidgo_stems.emulator.server import BackgroundEmulator
from vidgo_stems.pipeline.ledger import Ledger
from vidgo_stems.settings import Settings
from vidgo_stems.web.gateway import create_app


@pytest.fixture(scope="session")
def emulator():
    config = EmulatorConfig(
        api_key=API_KEY, queue_s=0.3, run_s=0.6, sample_rate=22050, synth_duration_s=1.0
    )
    with BackgroundEmulator(config, free_port()) as server:
        emu = Emulator(server.url)
        yield emu
        emu.close()


@pytest.fixture(scope="session")
def stack(redis_server, redis_client, emulator, tracks_url, tmp_path_factory):
    pipeline = Stack(
        redis_client, redis_server.url, emulator, tracks_url, tmp_path_factory.mktemp("stack")
    )
    pipeline.start_worker(concurrency=2, name="integration")
    yield pipeline
    pipeline.stop()


@pytest.fixture
def make_stack(redis_client, redis_server, emulator, tracks_url, tmp_path):
    """Build stacks on the session's Redis and emulator (``make_stack(**env)``, with a
    worker named ``worker`` when given); each is stopped after the test."""
    made: list[Stack] = []

    def make(*, worker: str | None = None, **env: str) -> Stack:
        stack = Stack(redis_client, redis_server.url, emulator, tracks_url, tmp_path, **env)
        made.append(stack)
        if worker:
            stack.start_worker(concurrency=1, name=worker)
        return stack

    yield make
    for stack in made:
        stack.stop()


@pytest.fixture
def s3_stack(redis_client, redis_server, emulator, tracks_url, tmp_path, s3_server, monkeypatch):
    prefix = f"runs/{secrets.token_hex(4)}"
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)  # this process mints the links callers get
    stack = Stack(
        redis_client,
        redis_server.url,
        emulator,
        tracks_url,
        tmp_path,
        VIDGO_STEMS_STORAGE_URL=f"s3://{s3_server.bucket}/{prefix}",
        VIDGO_STEMS_POSTPROCESS_QUEUE=f"post-{secrets.token_hex(4)}",
        **s3_server.env(),
    )
    yield stack
    stack.stop()


@pytest.fixture
def inprocess_gateway(redis_server, redis_client):
    """The gateway app built around a ledger under a private prefix of the session's Redis,
    with the messages it sends logged instead of run: (app, producer, sent)."""
    prefix = f"gw-{secrets.token_hex(4)}"
    settings = Settings(
        redis_url=redis_server.url, redis_key_prefix=prefix, gateway_api_keys=[GATEWAY_KEY]
    )
    sent = StepLog(redis_client, prefix)
    producer = Producer(
        settings,
        redis_client,
        Ledger(redis_client, prefix=prefix, encode=sent),
        dispatch_webhook=lambda job_id, delay: None,
    )
    yield create_app(producer=producer), producer, sent
    for key in redis_client.scan_iter(f"{prefix}:*"):
        redis_client.delete(key)
