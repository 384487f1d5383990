"""A real Redis Sentinel set-up on free ports: a primary, one or more replicas and three
sentinels.

Every process is ``redis-server`` (the sentinels run it in sentinel mode), started in its own
throw-away folder and stopped at the end; nothing is shared with any other Redis.

Waits on the set take their deadlines from its configuration (:attr:`SentinelSet.failover_s`),
never from a guessed constant, times :data:`MARGIN` for a machine whose cores are busy.
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
#: Sentinel's failover-timeout: a failover not done by then is given up, and the next try
#: waits twice as long.
FAILOVER_TIMEOUT_MS = 3000
#: Sentinels read each replica's INFO this often (Redis' SENTINEL_INFO_PERIOD).
INFO_PERIOD_S = 10.0
#: Deadlines derived from the configuration are multiplied by this: on a 2-core machine
#: running other work, each step (a ping, an election, a promotion) may take twice as long.
MARGIN = 2.0


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
        """The end of its log, and of its stderr (where a refused configuration goes)."""
        ends = []
        for name in ("stderr.log", "redis.log"):
            path = self.dir / name
            if path.exists():
                ends.append(path.read_text(errors="replace")[-2000:])
        return "\n".join(ends)


class SentinelSet:
    """``with SentinelSet() as s: s.url`` (a sentinel:// REDIS_URL for ``s.master_name``)."""

    master_name = MASTER

    def __init__(
        self, sentinels: int = 3, replicas: int = 1, down_after_ms: int = DOWN_AFTER_MS
    ) -> None:
        self.down_after_ms = down_after_ms
        self.folder = Path(tempfile.mkdtemp(prefix="vidgo-stems-sentinel-"))
        common = [
            *("--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"),
            # A replica that falls far behind (the tests stop them) is not cut off for it.
            *("--client-output-buffer-limit", "replica", "0", "0", "0"),
        ]
        self.primary = Node(self.folder, "primary", list(common))
        self.replicas = [Node(self.folder, f"replica-{n}", list(common)) for n in range(replicas)]
        self.sentinels = [Node(self.folder, f"sentinel-{n}", []) for n in range(sentinels)]

    @property
    def replica(self) -> Node:
        return self.replicas[0]

    @property
    def failover_s(self) -> float:
        """How long an automatic failover may take here: down-after, then a failover that may
        fail once (split votes) and is tried again after twice the failover-timeout, times
        :data:`MARGIN`."""
        return MARGIN * (self.down_after_ms + 3 * FAILOVER_TIMEOUT_MS) / 1000

    @property
    def demotion_s(self) -> float:
        """How long sentinels may take to turn an old primary that came back into a replica:
        they read a replica's INFO every ten seconds, and reconfigure one that calls itself a
        primary once it has done so, and answered, for the failover-timeout; times MARGIN."""
        return MARGIN * (INFO_PERIOD_S + 1.0 + 2 * FAILOVER_TIMEOUT_MS / 1000)

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{s.port}/0" for s in self.sentinels)

    def start(self) -> SentinelSet:
        self.primary.start().wait_ping()
        for replica in self.replicas:
            replica.args += ["--replicaof", "127.0.0.1", str(self.primary.port)]
            replica.start().wait_ping()
        self.wait_replicated()
        quorum = len(self.sentinels) // 2 + 1
        for node in self.sentinels:
            conf = node.dir / "sentinel.conf"  # sentinel rewrites it: it must be writable
            conf.write_text(
                f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} {quorum}\n"
                f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}\n"
                f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            node.start(str(conf), "--sentinel").wait_ping()
        self.wait_for_master(("127.0.0.1", self.primary.port))
        return self

    def wait_replicated(self, timeout_s: float = 15.0) -> None:
        for replica in self.replicas:
            with contextlib.closing(replica.client()) as client:

                def link(client: redis.Redis = client) -> str | None:
                    return client.info("replication").get("master_link_status")

                wait_until(
                    lambda link=link: link() == "up",
                    what=f"the replica on {replica.port} to sync with the primary",
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

    def wait_for_master(
        self, address: tuple[str, int] | None = None, timeout_s: float | None = None
    ) -> float:
        """Seconds until every sentinel names ``address`` (None: any replica) as the primary;
        the deadline is :attr:`failover_s` unless given."""
        started = time.monotonic()

        def named() -> set[tuple[str, int]]:
            agreed = set()
            for node in self.sentinels:
                with contextlib.suppress(redis.RedisError), contextlib.closing(node.client()) as c:
                    found = c.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
                    if found:
                        agreed.add((found[0].decode(), int(found[1])))
            return agreed

        wanted = [address] if address else [("127.0.0.1", r.port) for r in self.replicas]
        wait_until(
            lambda: len(agreed := named()) == 1 and agreed <= set(wanted),
            what=f"the sentinels to agree on one of {wanted} as primary",
            timeout_s=self.failover_s if timeout_s is None else timeout_s,
            interval_s=0.1,
            seen=lambda: {"sentinels name": named(), "roles": self.roles()},
        )
        return time.monotonic() - started

    def roles(self) -> dict[int, str]:
        """Each data node's own view of its role, by port ("?" when it does not answer)."""
        roles = {}
        for node in [self.primary, *self.replicas]:
            roles[node.port] = "?"
            with contextlib.suppress(redis.RedisError), contextlib.closing(node.client()) as c:
                roles[node.port] = str(c.info("replication").get("role"))
        return roles

    def node_at(self, address: tuple[str, int]) -> Node:
        return next(n for n in [self.primary, *self.replicas] if n.port == address[1])

    def wait_demoted(self, node: Node) -> float:
        """Seconds until ``node`` (an old primary that came back) calls itself a replica."""
        started = time.monotonic()
        wait_until(
            lambda: self.roles()[node.port] == "slave",
            what=f"the old primary on {node.port} to be made a replica",
            timeout_s=self.demotion_s,
            interval_s=0.1,
            seen=self.roles,
        )
        return time.monotonic() - started

    def stop(self) -> None:
        for node in [*self.sentinels, *self.replicas, self.primary]:
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
