"""The image: deploy/Dockerfile runs unprivileged with the worker's healthcheck, and
.dockerignore keeps secrets and clutter out of the build context but the sources in."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import PurePosixPath

from tests.deploy.files import DOCKERIGNORE, IMAGE_UID, ROOT, _dockerfile_instructions, _image_env
from vidgo_stems.heartbeat import HEARTBEAT_INTERVAL_S

# --- .dockerignore ----------------------------------------------------------------------------


def _dockerignore_patterns() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def _dockerignored(path: str) -> bool:
    """Whether Docker leaves `path` (relative to the context) out: a path is out when it or a
    folder above it matches; the last matching pattern wins, `!` brings a path back."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in _dockerignore_patterns():
        negate = raw.startswith("!")
        pattern = raw.lstrip("!").strip("/")
        regex = _pattern_regex(pattern)
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


# --- Dockerfile and .dockerignore -------------------------------------------------------------


def test_image_runs_unprivileged_with_the_worker_healthcheck():
    (user,) = _dockerfile_instructions("USER")
    uid, _, gid = user.partition(":")
    assert uid == str(IMAGE_UID) and gid in ("", str(IMAGE_UID))
    (healthcheck,) = _dockerfile_instructions("HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    assert command[:2] == ["vidgo-stems", "healthcheck"]
    assert float(command[command.index("--max-age") + 1]) >= 3 * HEARTBEAT_INTERVAL_S
    (cmd,) = _dockerfile_instructions("CMD")
    assert json.loads(cmd)[:2] == ["vidgo-stems", "worker"]
    assert _dockerfile_instructions("STOPSIGNAL") == ["SIGTERM"]
    env = _image_env()
    run = " ".join(_dockerfile_instructions("RUN"))
    for path in (
        env["VIDGO_STEMS_SCRATCH_DIR"],
        str(PurePosixPath(env["VIDGO_STEMS_HEARTBEAT_FILE"]).parent),
    ):
        assert re.search(rf"chown {IMAGE_UID}:{IMAGE_UID} [^&]*{re.escape(path)}\b", run), path


def test_dockerignore_keeps_secrets_and_clutter_out_but_the_sources_in():
    for path in (
        ".git/config",
        ".venv/bin/python",
        ".env",
        "deploy/.env",
        "prod.env",
        "tests/unit/test_deploy.py",
        "benchmarks/results.json",
        "stems/job/vocals.wav",
        "demo-out/x.flac",
        "worker/__pycache__/settings.cpython-311.pyc",
        "worker/settings.pyc",
        ".pytest_cache/v",
        ".mypy_cache/x",
        ".ruff_cache/x",
        "vidgo_stems.egg-info/PKG-INFO",
    ):
        assert _dockerignored(path), f"{path} would be sent to the build"
    for copy in _dockerfile_instructions("COPY"):
        *sources, _ = shlex.split(copy)
        for source in sources:
            if source.startswith("--"):
                continue
            assert not _dockerignored(source), f"COPY {source} is excluded by .dockerignore"
            for file in (ROOT / source).rglob("*.py") if (ROOT / source).is_dir() else []:
                rel = file.relative_to(ROOT).as_posix()
                assert not _dockerignored(rel), f"{rel} is excluded by .dockerignore"
