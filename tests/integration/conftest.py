"""A whole local stack per test session: private Redis, the emulator over HTTP, a real worker.

The worker is ``celery worker --pool prefork`` in a subprocess with its own environment; the
test process talks to the same Redis through an explicit Ledger and Celery app configuration.
"""

from __future__ import annotations

import contextlib
import secrets
import time
import uuid

import httpx
import pytest
import redis

from emulator import EmulatorConfig
from emulator.server import BackgroundEmulator
from worker import tracks
from worker.api import enqueue, get_job
from worker.app import app
from worker.ledger import Ledger
from worker.local import FileServer, WorkerProcess, wait_for
from worker.redis_server import RedisServer, free_port

API_KEY = "sk-test-" + secrets.token_hex(8)


class Emulator:
    """The emulator seen over HTTP, through its admin API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def record(self, kind: str | None = None) -> list[dict]:
        return self.http.get("/_emulator/record", params={"kind": kind} if kind else None).json()

    def tasks(self) -> dict[str, dict]:
        return self.http.get("/_emulator/tasks").json()

    def configure(self, **changes) -> dict:
        response = self.http.post("/_emulator/config", json=changes)
        response.raise_for_status()
        return response.json()

    @contextlib.contextmanager
    def configured(self, **changes):
        before = self.http.get("/_emulator/config").json()
        self.configure(**changes)
        try:
            yield self
        finally:
            self.configure(**{k: before[k] for k in changes})


class Stack:
    """Handles tests use: enqueue, wait, and read the ledger."""

    def __init__(self, ledger: Ledger, emulator: Emulator, tracks_url: str, stems_dir, worker_log):
        self.ledger = ledger
        self.emulator = emulator
        self.tracks_url = tracks_url
        self.stems_dir = stems_dir
        self.worker_log = worker_log

    def track_url(self, name: str = "groove") -> str:
        """A unique URL of a real track, so every test has its own jobs."""
        return f"{self.tracks_url}/{name}.wav?case={uuid.uuid4().hex[:12]}"

    def enqueue(self, audio_url: str, **kwargs) -> str:
        return enqueue(audio_url, ledger=self.ledger, **kwargs)

    def job(self, job_id: str):
        return get_job(job_id, ledger=self.ledger)

    def wait_terminal(self, job_id: str, timeout_s: float = 60.0):
        def ended():
            view = self.job(job_id)
            return view if view is not None and view.state.is_terminal else None

        try:
            return wait_for(ended, timeout_s=timeout_s, what=f"job {job_id} to end")
        except TimeoutError:
            print(self.worker_log.read_text()[-4000:])
            raise


@pytest.fixture(scope="session")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def emulator():
    config = EmulatorConfig(
        api_key=API_KEY, queue_s=0.3, run_s=0.6, sample_rate=22050, synth_duration_s=1.0
    )
    with BackgroundEmulator(config, free_port()) as server:
        emu = Emulator(server.url)
        yield emu
        emu.http.close()


@pytest.fixture(scope="session")
def tracks_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tracks")
    for name in ("groove", "ballad"):
        tracks.write_track(folder / f"{name}.wav", name, seconds=2.0, rate=22050)
    with FileServer(folder) as server:
        yield server.url


@pytest.fixture(scope="session")
def stack(redis_server, emulator, tracks_url, tmp_path_factory):
    prefix = f"vidgo-stems-test-{secrets.token_hex(4)}"
    queue = f"vidgo-test-{secrets.token_hex(4)}"
    stems_dir = tmp_path_factory.mktemp("stems")
    env = {
        "REDIS_URL": redis_server.url,
        "VIDGO_API_KEY": API_KEY,
        "VIDGO_BASE_URL": emulator.url,
        "STEMS_DIR": str(stems_dir),
        "VIDGO_STEMS_REDIS_KEY_PREFIX": prefix,
        "VIDGO_STEMS_QUEUE_NAME": queue,
        "VIDGO_STEMS_POLL_INITIAL_S": "0.3",
        "VIDGO_STEMS_POLL_MIN_INTERVAL_S": "0.2",
        "VIDGO_STEMS_POLL_MAX_S": "0.5",
        "VIDGO_STEMS_POLL_BACKOFF_FACTOR": "1.2",
        "VIDGO_STEMS_RETRY_BACKOFF_BASE_S": "0.2",
        "VIDGO_STEMS_RETRY_BACKOFF_MAX_S": "2",
    }
    app.conf.update(
        broker_url=redis_server.url, result_backend=redis_server.url, task_default_queue=queue
    )
    client = redis.Redis.from_url(redis_server.url)
    log_path = tmp_path_factory.mktemp("logs") / "worker.log"
    with (
        open(log_path, "wb") as log,
        WorkerProcess(env, concurrency=2, log=log, loglevel="INFO") as worker,
    ):
        wait_for(
            lambda: worker.alive and app.control.ping(timeout=0.5),
            timeout_s=60,
            what="the Celery worker to answer a ping",
        )
        yield Stack(Ledger(client, prefix=prefix), emulator, tracks_url, stems_dir, log_path)
    client.close()


@pytest.fixture
def deadline():
    return time.monotonic() + 60
