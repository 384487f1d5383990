"""A private S3 for tests and benchmarks: moto's standalone server as a real process on a free
loopback port, with one bucket made for the run; stopped on exit.

    with S3Server() as s3:
        os.environ.update(s3.env())   # AWS_* for obstore, boto3 and the aws CLI alike
        ... f"s3://{s3.bucket}/prefix" ...
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from tests.waiting import wait_until
from vidgo_stems.devstack.redis_server import free_port


class S3Server:
    """moto_server on 127.0.0.1 with bucket ``.bucket``; use as a context manager."""

    def __init__(
        self, *, bucket: str | None = None, region: str = "us-east-1", tmpdir: Path | None = None
    ) -> None:
        self.bucket = bucket or f"vidgo-stems-{secrets.token_hex(4)}"
        self.region = region
        #: Where moto spills object bodies over 16 MB (TMPDIR); a tmpfs keeps disk out of timings.
        self.tmpdir = tmpdir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log_dir = Path(tempfile.mkdtemp(prefix="vidgo-stems-s3-"))
        self.log_path = self._log_dir / "moto.log"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The AWS_* variables that point a client at this server with dummy credentials.

        No AWS_ALLOW_HTTP: S3Storage allows plain http itself when AWS_ENDPOINT_URL is http.
        """
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def start(self, timeout_s: float = 30.0) -> S3Server:
        # free_port() can lose a race with another process; a server that exits at start
        # because of that is tried again on a new port.
        for _attempt in range(3):
            self.port = free_port()
            if self._launch(timeout_s):
                self._create_bucket()
                return self
        log = self.log_path.read_text(errors="replace").strip()
        raise RuntimeError(f"moto_server did not start; last log lines: {log[-500:]}")

    def _launch(self, timeout_s: float) -> bool:
        # The server gets no AWS_* of ours: it needs none, and a developer's must not leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        if self.tmpdir is not None:
            env["TMPDIR"] = str(self.tmpdir)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        with httpx.Client(timeout=1.0) as http:

            def up() -> str | None:
                if self.process.poll() is not None:
                    return "exited"
                with contextlib.suppress(httpx.TransportError):
                    if http.get(f"{self.endpoint_url}/moto-api/").status_code == 200:
                        return "answering"
                return None

            try:
                found = wait_until(
                    up, what=f"moto_server to answer on port {self.port}", timeout_s=timeout_s
                )
            except TimeoutError as exc:
                self.stop()
                raise RuntimeError(str(exc)) from None
        if found == "exited":
            self.process = None
            return False
        return True

    def _create_bucket(self) -> None:
        # moto does not check signatures, so a plain PUT makes the bucket.
        response = httpx.put(f"{self.endpoint_url}/{self.bucket}", timeout=10.0)
        response.raise_for_status()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            self.log_path.unlink()
            self._log_dir.rmdir()
