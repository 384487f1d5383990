"""An operator's mistakes, through the real command line: one line saying what to set or fix,
exit status 2, never a traceback. Nothing here needs a running Redis (an unreachable one is the
point of some cases)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vidgo_stems.devstack.redis_server import free_port

pytestmark = pytest.mark.integration


def run(*args: str, env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VIDGO_", "REDIS_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "vidgo_stems.cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def assert_one_line(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ")
    for fragment in fragments:
        assert fragment in line, line


UNREACHABLE = f"redis://127.0.0.1:{free_port()}/0"
SENTINELS = f"sentinel://127.0.0.1:{free_port()}/0;sentinel://127.0.0.1:{free_port()}"


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (("stats",), {"REDIS_URL": "foo://x"}, ("REDIS_URL", "redis://")),
        (("stats",), {"REDIS_URL": UNREACHABLE}, ("cannot reach Redis (REDIS_URL)",)),
        (("separate", "https://cdn.example.com/a.mp3"), {"REDIS_URL": UNREACHABLE}, ("REDIS_URL",)),
        (("status", "j1"), {}, ("REDIS_URL is not set",)),
        (("worker",), {"REDIS_URL": "foo://x", "VIDGO_API_KEY": "k"}, ("REDIS_URL",)),
        (("worker",), {"REDIS_URL": UNREACHABLE}, ("VIDGO_API_KEY is not set",)),
        (("worker",), {"REDIS_URL": UNREACHABLE, "VIDGO_API_KEY": "k"}, ("REDIS_URL",)),
        (("gateway",), {"REDIS_URL": UNREACHABLE}, ("VIDGO_STEMS_GATEWAY_API_KEYS",)),
        (("gateway",), {"REDIS_URL": "foo://x"}, ("REDIS_URL",)),
        (
            ("gateway",),
            {"REDIS_URL": UNREACHABLE, "VIDGO_STEMS_GATEWAY_API_KEYS": " , "},
            ("VIDGO_STEMS_GATEWAY_API_KEYS is not set",),
        ),
        (("stats",), {"REDIS_URL": UNREACHABLE, "VIDGO_STEMS_POLL_MAX_S": "soon"}, ("POLL_MAX_S",)),
        (("purge", "--older-than", "soon"), {"REDIS_URL": UNREACHABLE}, ("e.g. 30d",)),
        (
            ("worker",),
            {"REDIS_URL": SENTINELS, "VIDGO_API_KEY": "k"},
            ("VIDGO_STEMS_REDIS_SENTINEL_MASTER is not set",),
        ),
        (("stats",), {"REDIS_URL": "sentinel://s1:port"}, ("port that is not a number",)),
        (
            ("stats",),
            {
                "REDIS_URL": SENTINELS,
                "VIDGO_STEMS_REDIS_SENTINEL_MASTER": "vidgo",
                "VIDGO_STEMS_REDIS_RETRIES": "0",
            },
            ("know no primary for 'vidgo'", "VIDGO_STEMS_REDIS_SENTINEL_MASTER"),
        ),
    ],
)
def test_operator_mistakes_get_one_line_and_status_2(args, env, says):
    assert_one_line(run(*args, env=env), *says)


@pytest.mark.parametrize(
    ("content", "name", "says"),
    [
        (None, "missing.csv", ("cannot read the catalog", "missing.csv")),
        (b"audio_url,ti\xfftle\nhttps://cdn.example.com/a.mp3,x\n", "bad.csv", ("UTF-8",)),
        (b"\x00\x01binary", "c.csv", ("looks binary",)),
        (b"", "empty.csv", ("is empty",)),
    ],
)
def test_unreadable_catalogs_get_one_line_in_a_dry_run(tmp_path, content, name, says):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert_one_line(run("batch", str(path), "--dry-run", env={}), *says)


def test_hostile_catalog_rows_are_reported_by_line_in_a_dry_run(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(
        '{"audio_url": "https://cdn.example.com/1.mp3", "n": '
        + "9" * 5000
        + "}\n"
        + "[" * 100_000
        + "]" * 100_000
        + "\n"
        + '{"audio_url": "https://cdn.example.com/2.mp3", "title": "ok"}\n'
    )
    done = run("batch", str(path), "--dry-run", env={})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{path}:1: holds an integer of 5000 digits" in done.stderr
    assert f"{path}:2: nested 100000 levels deep" in done.stderr
    assert "3 rows, 1 valid, 2 bad" in done.stderr
