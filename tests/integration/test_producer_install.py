"""The package as a web backend installs and imports it: one public name (``vidgo_stems``), no
generic top-level names, and a base install without the worker's audio stack that enqueues
against a real worker and gets stem links."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: What only the worker needs: a web backend's process must never import these.
AUDIO_STACK = ("numpy", "scipy", "soundfile", "soxr", "lameenc", "mutagen", "fastapi", "uvicorn")


def test_every_folder_of_the_package_is_installed_under_the_public_name():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    for folder, name in config["package-dir"].items():
        for init in (ROOT / name).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            parts = init.parent.relative_to(ROOT / name).parts
            assert ".".join((folder, *parts)) in listed, f"{init.parent} is not installed"
    assert all(p == "vidgo_stems" or p.startswith("vidgo_stems.") for p in listed)


def test_the_public_api_imports_without_the_audio_stack():
    code = textwrap.dedent(
        f"""
        import sys
        from vidgo_stems import enqueue, get_job, list_jobs, retry, cancel, verify_webhook
        from vidgo_stems import Enqueued, JobView, InvalidRequest, JobConflict
        loaded = [m for m in {AUDIO_STACK!r} if m in sys.modules]
        assert not loaded, loaded
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.fixture
def stack(make_stack):
    return make_stack(worker="producer-install")


def _enqueue_and_wait(python: str, cwd: Path, env: dict[str, str], audio_url: str) -> dict:
    """Run, in ``python``, a backend script that enqueues and waits for the stems."""
    script = textwrap.dedent(
        f"""
        import json, sys, time
        import worker, tasks  # the web project's own packages
        from vidgo_stems import enqueue, get_job
        job = enqueue({audio_url!r}, output_type="vocals")
        for _ in range(600):
            view = get_job(job.job_id, subscription_id=job.subscription_id)
            if view.state.is_terminal:
                break
            time.sleep(0.1)
        print(json.dumps({{
            "own": [worker.OWN, tasks.OWN],
            "state": view.state.value,
            "subscription_id": job.subscription_id,
            "links": {{n: s.url for n, s in view.stems.items()}},
            "loaded": [m for m in {AUDIO_STACK!r} if m in sys.modules],
        }}))
        """
    )
    done = subprocess.run(
        [python, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _web_project(tmp_path: Path) -> Path:
    """A web project with its own ``worker`` and ``tasks`` packages, first on sys.path."""
    project = tmp_path / "webapp"
    for name in ("worker", "tasks"):
        (project / name).mkdir(parents=True)
        (project / name / "__init__.py").write_text(f"OWN = 'the web project {name}'\n")
    return project


def test_a_web_project_with_its_own_worker_and_tasks_packages_uses_the_api(stack, tmp_path):
    project = _web_project(tmp_path)
    env = {**stack.env, "PATH": os.environ["PATH"], "PYTHONPATH": str(project)}
    seen = _enqueue_and_wait(sys.executable, project, env, stack.track_url())
    assert seen["own"] == ["the web project worker", "the web project tasks"]
    assert seen["state"] == "DONE" and seen["subscription_id"]
    assert seen["links"]["vocals"].startswith("file://")


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory) -> Path:
    """A fresh venv with `pip install vidgo-stems` (no extra), as a web backend installs it."""
    venv = tmp_path_factory.mktemp("base") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return venv


def test_the_base_install_enqueues_against_a_real_worker_and_gets_links(stack, base_venv, tmp_path):
    """`pip install vidgo-stems` (no extra) in a fresh venv: no audio stack, and it works."""
    python = str(base_venv / "bin" / "python")
    missing = subprocess.run(
        [python, "-c", "import numpy"], capture_output=True, text=True, cwd=tmp_path
    )
    assert missing.returncode != 0, "the base install brought numpy"
    project = _web_project(tmp_path)
    env = {**stack.env, "PATH": os.environ["PATH"], "PYTHONPATH": str(project)}
    seen = _enqueue_and_wait(python, project, env, stack.track_url())
    assert seen["state"] == "DONE" and seen["loaded"] == []
    assert set(seen["links"]) == {"vocals"} and seen["links"]["vocals"]


def test_a_worker_command_in_the_base_install_says_which_extra_to_install(base_venv):
    venv = base_venv
    env = {"PATH": os.environ["PATH"], "REDIS_URL": "redis://127.0.0.1:9/0"}
    done = subprocess.run(
        [str(venv / "bin" / "vidgo-stems"), "gateway"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "pip install 'vidgo-stems[worker]'" in line and "Traceback" not in done.stderr
