"""Shared fixtures: a scrubbed environment and factories for settings and fake Redis."""

from __future__ import annotations

import os

import pytest

from worker.settings import Settings, get_settings

_OURS = ("VIDGO_", "REDIS_URL", "STEMS_DIR")


@pytest.fixture(autouse=True)
def _scrub_environment(monkeypatch):
    """No test sees the developer's Vidgo key, Redis or settings."""
    for name in list(os.environ):
        if name.startswith(_OURS) and not name.startswith("VIDGO_TEST_"):
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
        }
        values.update(overrides)
        return Settings(**values)

    return make
