"""The systemd units in deploy/systemd: hardened, the worker stopping warm, the gateway on
loopback, and (where systemd-analyze is installed) passing its checks."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import PurePosixPath

import pytest

from tests.deploy.files import GATEWAY_UNIT, WORKER_UNIT, _needed_stop_s, _seconds, _unit

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
}


@pytest.mark.parametrize("path", [WORKER_UNIT, GATEWAY_UNIT], ids=lambda p: p.name)
def test_units_are_hardened(path):
    unit = _unit(path)
    for key, value in HARDENING.items():
        assert unit.get(key, [None])[-1] == value, f"{path.name}: {key}={value} expected"
    assert unit["User"][-1] not in ("", "root", "0")
    assert unit["Restart"][-1] == "always"
    assert any("@system-service" in v for v in unit.get("SystemCallFilter", []))
    # Secrets come from a root-only file, never from the unit.
    assert unit.get("EnvironmentFile")
    assert not any("VIDGO_API_KEY" in v for v in unit.get("Environment", []))


def test_worker_unit_runs_unsupervised_and_stops_warm():
    unit = _unit(WORKER_UNIT)
    exec_start = shlex.split(unit["ExecStart"][-1])
    assert exec_start[1] == "worker" and "--no-supervise" in exec_start
    # SIGTERM to Celery's main process alone; its pool children finish their stages.
    assert unit["KillMode"][-1] == "mixed"
    assert unit.get("KillSignal", ["SIGTERM"])[-1] == "SIGTERM"
    env = dict(v.split("=", 1) for v in unit.get("Environment", []))
    assert _seconds(unit["TimeoutStopSec"][-1]) > _needed_stop_s(env)
    writable = [PurePosixPath(p) for v in unit.get("ReadWritePaths", []) for p in v.split()] + [
        PurePosixPath("/run") / d for v in unit.get("RuntimeDirectory", []) for d in v.split()
    ]
    for path in (
        PurePosixPath(env["VIDGO_STEMS_HEARTBEAT_FILE"]).parent,
        PurePosixPath(env["PROMETHEUS_MULTIPROC_DIR"]),
    ):
        assert any(path == w or w in path.parents for w in writable), path


def test_gateway_unit_listens_on_loopback_with_its_own_settings():
    unit = _unit(GATEWAY_UNIT)
    exec_start = shlex.split(unit["ExecStart"][-1])
    assert exec_start[1] == "gateway"
    assert exec_start[exec_start.index("--host") + 1] == "127.0.0.1"
    assert unit["EnvironmentFile"] != _unit(WORKER_UNIT)["EnvironmentFile"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("path", [WORKER_UNIT, GATEWAY_UNIT], ids=lambda p: p.name)
def test_units_pass_systemd_analyze(path, tmp_path):
    unit = tmp_path / path.name
    unit.write_text(path.read_text())
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (verify.stdout + verify.stderr).splitlines()
        # The program is installed on the host, not here.
        if line.strip() and "is not executable" not in line
    ]
    assert not problems, "\n".join(problems)
    # Exposure 0.0 (locked down) to 10.0 (unprotected), times ten.
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr[-2000:]
