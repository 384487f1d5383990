"""Building blocks of whole-stack tests: the emulator's admin API, worker environments, a Stack.

Everything runs on this machine: a private redis-server, the emulator on a free port, and real
``celery worker`` subprocesses, each test with its own Redis key prefix and queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from vidgo_stems.celery_app import Producer, app, make_ledger
from vidgo_stems.devstack.local import WorkerProcess, wait_for
from vidgo_stems.devstack.redis_server import free_port
from vidgo_stems.producer import enqueue, get_job
from vidgo_stems.settings import Settings

API_KEY = "sk-test-" + secrets.token_hex(8)
#: The bearer key of gateways the tests build in process.
GATEWAY_KEY = "k-" + secrets.token_hex(8)

#: Settings that make whole jobs take seconds instead of minutes.
FAST = {
    "VIDGO_STEMS_POLL_INITIAL_S": "0.3",
    "VIDGO_STEMS_POLL_MIN_INTERVAL_S": "0.2",
    "VIDGO_STEMS_POLL_MAX_S": "0.5",
    "VIDGO_STEMS_POLL_BACKOFF_FACTOR": "1.2",
    "VIDGO_STEMS_RETRY_BACKOFF_BASE_S": "0.2",
    "VIDGO_STEMS_RETRY_BACKOFF_MAX_S": "2",
    "VIDGO_STEMS_RESUBMIT_BACKOFF_BASE_S": "0.2",
    "VIDGO_STEMS_RESUBMIT_BACKOFF_MAX_S": "1",
    "VIDGO_STEMS_RATE_LIMIT_COOLDOWN_S": "0.3",
    "VIDGO_STEMS_VIDGO_SUBMIT_RATE_PER_S": "500",
    "VIDGO_STEMS_VIDGO_SUBMIT_BURST": "500",
    "VIDGO_STEMS_VIDGO_QUERY_RATE_PER_S": "1000",
    "VIDGO_STEMS_VIDGO_QUERY_BURST": "1000",
    "VIDGO_STEMS_MAX_IN_FLIGHT": "100000",
    "VIDGO_STEMS_IN_FLIGHT_WAIT_S": "0.3",
    # The test tracks are served on loopback: let post-processing fetch them as sources.
    "VIDGO_STEMS_ALLOW_PRIVATE_SOURCE_HOSTS": "true",
    # Workers serve no metrics unless a test gives them a port of their own.
    "VIDGO_STEMS_METRICS_PORT": "0",
}


def fetch(url: str) -> bytes:
    """The bytes behind a link a job view hands out: file:// (single-host storage) or http(s)."""
    if url.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return Path(unquote(urlsplit(url).path)).read_bytes()
    response = httpx.get(url, timeout=30)
    response.raise_for_status()
    return response.content


_CONVENTIONAL = {"REDIS_URL", "STEMS_DIR", "VIDGO_API_KEY", "VIDGO_BASE_URL"}


def settings_from_env(env: dict[str, str]) -> Settings:
    """The Settings a process with exactly this environment would read."""
    values = {}
    for name, value in env.items():
        if name in _CONVENTIONAL:
            values[name.lower()] = value
        elif name.startswith("VIDGO_STEMS_"):
            values[name.removeprefix("VIDGO_STEMS_").lower()] = value
    return Settings(**values)


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

    def close(self) -> None:
        self.http.close()


class Stack:
    """One isolated pipeline on a shared Redis: its own prefix, queue, stems folder and workers."""

    def __init__(
        self,
        redis_client,
        redis_url: str,
        emulator: Emulator,
        tracks_url: str,
        folder: Path,
        **overrides: str,
    ) -> None:
        self.prefix = f"vidgo-stems-test-{secrets.token_hex(4)}"
        self.queue = f"vidgo-test-{secrets.token_hex(4)}"
        self.stems_dir = folder / "stems"
        self.folder = folder
        self.emulator = emulator
        self.tracks_url = tracks_url
        self.env = {
            "REDIS_URL": redis_url,
            "VIDGO_API_KEY": API_KEY,
            "VIDGO_BASE_URL": emulator.url,
            "STEMS_DIR": str(self.stems_dir),
            "VIDGO_STEMS_REDIS_KEY_PREFIX": self.prefix,
            "VIDGO_STEMS_QUEUE_NAME": self.queue,
            **FAST,
            **overrides,
        }
        settings = self.settings = settings_from_env(self.env)
        self.ledger = make_ledger(redis_client, settings)
        self.producer = Producer(settings, redis_client, self.ledger)
        self.workers: list[WorkerProcess] = []
        self._logs: list = []
        app.conf.update(
            broker_url=redis_url, result_backend=redis_url, task_default_queue=self.queue
        )
        app.close()  # drop connection pools to an earlier test's broker

    @property
    def post_queue(self) -> str:
        return self.env.get("VIDGO_STEMS_POSTPROCESS_QUEUE", self.queue)

    def start_worker(
        self,
        *,
        concurrency: int = 2,
        name: str = "w",
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> WorkerProcess:
        log_path = self.folder / f"worker-{len(self.workers)}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        worker = WorkerProcess(
            {**self.env, **(env or {})},
            concurrency=concurrency,
            log=log,
            loglevel="INFO",
            name=name,
            extra_args=args,
        ).start()
        self.workers.append(worker)
        ready = f"{worker.hostname}@".encode()

        def started() -> bool:
            assert worker.alive, log_path.read_text(errors="replace")[-3000:]
            return any(
                ready in line and b" ready." in line for line in log_path.read_bytes().splitlines()
            )

        wait_for(started, timeout_s=60, what=f"worker {name} to say it is ready")
        return worker

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``vidgo-stems ARGS`` against this stack's ledger, as an operator would (no key)."""
        env = {
            "REDIS_URL": self.env["REDIS_URL"],
            "PATH": "/usr/bin:/bin",
            "VIDGO_STEMS_REDIS_KEY_PREFIX": self.prefix,
        }
        return subprocess.run(
            [sys.executable, "-m", "vidgo_stems.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def cli_worker(self, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """``vidgo-stems worker`` with this stack's environment plus ``env``, for a start that
        is expected to be refused (it must exit by itself)."""
        return subprocess.run(
            [sys.executable, "-m", "vidgo_stems.cli", "worker", "--concurrency", "1"],
            env={**os.environ, **self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(timeout_s=20)
        for log in self._logs:
            log.close()

    def worker_logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:] for p in sorted(self.folder.glob("worker-*.log"))
        )

    def track_url(self, name: str = "groove") -> str:
        """A unique URL of a real track, so every job of every test is its own."""
        return f"{self.tracks_url}/{name}.wav?case={uuid.uuid4().hex[:12]}"

    def enqueue(self, audio_url: str, **kwargs) -> str:
        return enqueue(audio_url, producer=self.producer, **kwargs).job_id

    def job(self, job_id: str):
        return get_job(job_id, producer=self.producer)

    def wait_terminal(self, job_id: str, timeout_s: float = 60.0):
        return self.wait_all([job_id], timeout_s=timeout_s)[0]

    def wait_all(self, job_ids: list[str], timeout_s: float = 60.0) -> list:
        def ended():
            views = [self.job(j) for j in job_ids]
            return views if all(v is not None and v.state.is_terminal for v in views) else None

        try:
            return wait_for(
                ended, timeout_s=timeout_s, interval_s=0.25, what=f"{len(job_ids)} jobs to end"
            )
        except TimeoutError:
            views = [self.job(j) for j in job_ids]
            stuck = [(v.job_id, v.state.value) for v in views if v and not v.state.is_terminal]
            print(self.worker_logs())
            raise TimeoutError(
                f"{len(stuck)} of {len(job_ids)} jobs did not end within {timeout_s:.0f}s; "
                f"still active (job, state): {stuck[:20]}"
            ) from None


class GatewayProcess:
    """``vidgo-stems gateway`` as a subprocess on a free port, logging to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vidgo_stems.cli",
                "--log-level",
                "INFO",
                "gateway",
                "--port",
                str(self.port),
            ],
            env={**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

        def healthy() -> bool:
            assert self.proc.poll() is None, self.log_path.read_text(errors="replace")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_for(healthy, timeout_s=30, what="the gateway to answer /healthz")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


class Receiver:
    """A webhook receiver on loopback: records every request, answers from a script of codes."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    code = receiver.script.pop(0) if receiver.script else 200
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "body": body,
                            "answered": code,
                        }
                    )
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def for_job(self, job_id: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if job_id.encode() in r["body"]]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def host(stack: Stack, name: str) -> dict[str, str]:
    """The environment of one host: its own scratch folder, nothing on a shared disk."""
    scratch = stack.folder / f"host-{name}" / "scratch"
    return {"VIDGO_STEMS_SCRATCH_DIR": str(scratch), "STEMS_DIR": str(scratch.parent / "stems")}


def call(app: object, method: str, path: str, **kwargs: object) -> httpx.Response:
    """One request to an ASGI app in process (httpx's ASGITransport)."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.request(method, path, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(go())
