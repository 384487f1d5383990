"""The job commands as an operator runs them, against a real worker, Redis and the emulator."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import Stack
from worker.models import ALL_STEMS
from worker.pipeline.states import JobState

pytestmark = pytest.mark.integration


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """``vidgo-stems ARGS`` as a producer host runs it: Redis, storage, the prefix, the queue and the
    test tracks' loopback host allowed, nothing else."""
    env = {
        "PATH": "/usr/bin:/bin",
        **{
            name: stack.env[name]
            for name in (
                "REDIS_URL",
                "STEMS_DIR",
                "VIDGO_STEMS_REDIS_KEY_PREFIX",
                "VIDGO_STEMS_QUEUE_NAME",
                "VIDGO_STEMS_ALLOW_PRIVATE_SOURCE_HOSTS",
            )
        },
    }
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_separate_wait_prints_every_stem_link_and_the_manifest_link(stack):
    done = cli(stack, "separate", stack.track_url(), "--wait", "--timeout", "60")
    assert done.returncode == 0, done.stderr
    job_id, *links = done.stdout.splitlines()
    view = stack.job(job_id)
    assert view.state is JobState.DONE
    printed = dict(line.split(" ", 1) for line in links)
    assert set(printed) == {*ALL_STEMS, "manifest"}
    # file:// storage on one host: the links are the stored files' paths, the same on every read.
    assert printed == {
        "manifest": view.manifest_url,
        **{name: stem.url for name, stem in view.stems.items()},
    }
