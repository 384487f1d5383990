"""Pieces of a whole local stack, shared by the demo and the integration tests.

A static file server for input tracks, and a Celery worker run as a real subprocess with an
explicit environment. (The private Redis is :mod:`vidgo_stems.devstack.redis_server`; the emulator is
:mod:`vidgo_stems.emulator.server`.)
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from vidgo_stems.devstack.redis_server import free_port


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class FileServer:
    """Serve a folder over HTTP on 127.0.0.1 from a background thread."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class WorkerProcess:
    """``vidgo-stems worker`` (a supervised Celery worker) as a subprocess with this environment."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        concurrency: int = 2,
        pool: str = "prefork",
        name: str = "vidgo",
        log: IO[bytes] | None = None,
        loglevel: str = "WARNING",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.env = {**os.environ, **env}
        self.hostname = f"{name}-{os.getpid()}-{free_port()}"
        self.args = [
            sys.executable,
            "-m",
            "vidgo_stems.cli",
            "worker",
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
            "--loglevel",
            loglevel,
            "--hostname",
            f"{self.hostname}@%h",
            "--without-gossip",
            "--without-mingle",
            *extra_args,
        ]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.process = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=self.log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self.log else subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL to the whole process group if it lingers."""
        if not self.alive or self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate: Any, *, timeout_s: float, interval_s: float = 0.1, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting {timeout_s:.0f}s for {what or predicate}")
        time.sleep(interval_s)
