"""Shared fixtures: a scrubbed environment, settings factories, and the session's private Redis."""

from __future__ import annotations

import os

import pytest
import redis

from tests.s3server import S3Server
from vidgo_stems.devstack import tracks
from vidgo_stems.devstack.local import FileServer
from vidgo_stems.devstack.redis_server import RedisServer
from vidgo_stems.settings import Settings, get_settings

_OURS = ("VIDGO_", "REDIS_URL", "STEMS_DIR", "AWS_")


@pytest.fixture(autouse=True)
def _scrub_environment(monkeypatch):
    """No test sees the developer's Vidgo key, Redis or settings."""
    for name in list(os.environ):
        if name.startswith(_OURS):
            monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def make_settings(tmp_path):
    def make(**overrides) -> Settings:
        values = {
            "vidgo_api_key": "test-key-123",
            "vidgo_base_url": "https://api.vidgo.ai",
            "stems_dir": tmp_path / "stems",
            "redis_url": "redis://unused:1/0",
            # Unit stages run without a source track to fetch; tests that check against one
            # turn it on.
            "validate_source": False,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
def redis_server():
    """A private redis-server for the whole session; nothing else uses it."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (moto's standalone server) for the whole session."""
    with S3Server(tmpdir=tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_client(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def tracks_url(tmp_path_factory):
    """Two short real tracks served over HTTP, for the emulator to fetch and split, and a
    longer one (``long.wav``) whose stems take long enough to process to overlap."""
    folder = tmp_path_factory.mktemp("tracks")
    for name in ("groove", "ballad"):
        tracks.write_track(folder / f"{name}.wav", name, seconds=2.0, rate=22050)
    tracks.write_track(folder / "long.wav", "groove", seconds=30.0, rate=44100)
    with FileServer(folder) as server:
        yield server.url
