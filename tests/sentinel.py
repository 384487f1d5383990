"""A real Redis Sentinel set-up on free ports: a primary, a replica and three sentinels.

Every process is ``redis-server`` (the sentinels run it in sentinel mode), started in its own
throw-away folder and stopped at the end; nothing is shared with any other Redis.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.waiting import wait_until
from vidgo_stems.devstack.redis_server import find_redis_server, free_port

MASTER = "vidgo-test"
#: Sentinels call the primary down after this long without an answer.
DOWN_AFTER_MS = 1000


class Node:
    def __init__(self, folder: Path, name: str, args: list[str]) -> None:
        self.port = free_port()
        self.dir = folder / name
        self.dir.mkdir(parents=True)
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> Node:
        log = open(self.dir / "stderr.log", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [
                find_redis_server(),
                *extra,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "redis.log"),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=1)

    def wait_ping(self, timeout_s: float = 15.0) -> None:
        with contextlib.closing(self.client()) as client:

            def answers() -> bool:
                assert self.process is not None and self.process.poll() is None, self.log()
                with contextlib.suppress(redis.RedisError):
                    return bool(client.ping())
                return False

            wait_until(
                answers, what=f"redis on {self.port} to answer", timeout_s=timeout_s, seen=self.log
            )

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process cannot handle TERM
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


class SentinelSet:
    """``with SentinelSet() as s: s.url`` (a sentinel:// REDIS_URL for ``s.master_name``)."""

    master_name = MASTER

    def __init__(self, sentinels: int = 3) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="vidgo-stems-sentinel-"))
        common = ["--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"]
        self.primary = Node(self.folder, "primary", common)
        self.replica = Node(self.folder, "replica", common)
        self.sentinels = [Node(self.folder, f"sentinel-{n}", []) for n in range(sentinels)]

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{s.port}/0" for s in self.sentinels)

    def start(self) -> SentinelSet:
        self.primary.start().wait_ping()
        self.replica.args += ["--replicaof", "127.0.0.1", str(self.primary.port)]
        self.replica.start().wait_ping()
        self.wait_replicated()
        quorum = len(self.sentinels) // 2 + 1
        for node in self.sentinels:
            conf = node.dir / "sentinel.conf"  # sentinel rewrites it: it must be writable
            conf.write_text(
                f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} {quorum}\n"
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER} 10000\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            node.start(str(conf), "--sentinel").wait_ping()
        self.wait_for_master(("127.0.0.1", self.primary.port), timeout_s=15)
        return self

    def wait_replicated(self, timeout_s: float = 15.0) -> None:
        with contextlib.closing(self.replica.client()) as client:

            def link() -> str | None:
                return client.info("replication").get("master_link_status")

            wait_until(
                lambda: link() == "up",
                what="the replica to sync with the primary",
                timeout_s=timeout_s,
                seen=link,
            )

    def master_address(self) -> tuple[str, int] | None:
        for node in self.sentinels:
            with contextlib.suppress(redis.RedisError), contextlib.closing(node.client()) as c:
                found = c.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
                if found:
                    host, port = found
                    return (host.decode() if isinstance(host, bytes) else host, int(port))
        return None

    def wait_for_master(self, address: tuple[str, int], timeout_s: float = 30.0) -> float:
        """Seconds until every sentinel names ``address`` as the primary."""
        started = time.monotonic()

        def named() -> set[tuple[str, int]]:
            agreed = set()
            for node in self.sentinels:
                with contextlib.suppress(redis.RedisError), contextlib.closing(node.client()) as c:
                    found = c.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
                    if found:
                        agreed.add((found[0].decode(), int(found[1])))
            return agreed

        wait_until(
            lambda: named() == {address},
            what=f"the sentinels to agree on {address} as primary",
            timeout_s=timeout_s,
            interval_s=0.1,
            seen=named,
        )
        return time.monotonic() - started

    def stop(self) -> None:
        for node in [*self.sentinels, self.replica, self.primary]:
            node.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> SentinelSet:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
