"""The job commands as an operator runs them, against a real worker, Redis and the emulator."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import Stack
from vidgo_stems.models import ALL_STEMS
from vidgo_stems.pipeline.states import JobState

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
        [sys.executable, "-m", "vidgo_stems.cli", *args],
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


def test_purge_dry_run_without_an_age_lists_every_ended_job_and_says_how_to_remove(stack):
    job_id = stack.enqueue(stack.track_url(), output_type="vocals")
    assert stack.wait_terminal(job_id).state is JobState.DONE
    listed = cli(stack, "purge", "--dry-run")
    assert listed.returncode == 0, listed.stderr
    *jobs, summary = listed.stdout.splitlines()
    assert any(line.startswith(f"would remove {job_id} (ended ") for line in jobs), jobs
    assert all(line.endswith(" files)") or line.endswith(" 1 file)") for line in jobs), jobs
    count = f"{len(jobs)} job" + ("" if len(jobs) == 1 else "s")
    assert summary == (
        f"would remove {count}, every ended job in file://{stack.stems_dir}; "
        "to remove, pass --older-than (e.g. --older-than 30d)"
    )
    assert stack.job(job_id).state is JobState.DONE  # nothing removed

    recent = cli(stack, "purge", "--dry-run", "--older-than", "1d")
    assert recent.returncode == 0, recent.stderr
    assert (
        recent.stdout
        == f"would remove 0 jobs that ended more than 1d ago from file://{stack.stems_dir}\n"
    )


def test_purge_without_an_age_removes_nothing_and_says_what_to_pass(stack):
    refused = cli(stack, "purge")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "error: say how old: --older-than 30d removes jobs that ended more than 30 days ago "
        "(--dry-run without it lists every ended job)"
    ]
