"""More of an operator's mistakes through the real command line: every malformed REDIS_URL is
one line and exit 2 in every command, connects nowhere and never shows its password; the
gateway refuses to start on a busy port or without Redis; catalogs that are devices or name a
column twice; an empty STEMS_DIR; and a client that trickles its headers is cut."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.integration.test_operator_errors import assert_one_line, run
from vidgo_stems.devstack.redis_server import free_port

pytestmark = pytest.mark.integration

SECRET = "pw-" + "7" * 12
GATEWAY_KEYS = {"VIDGO_STEMS_GATEWAY_API_KEYS": "k" * 32}


class Listener:
    """A TCP port this test owns: it counts the connections made to it and closes each."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def owned_port():
    listener = Listener()
    yield listener
    listener.close()


COMMANDS = {
    "worker": (("worker", "--no-supervise"), {"VIDGO_API_KEY": "k"}),
    "gateway": (("gateway", "--port", "0"), GATEWAY_KEYS),
    "status": (("status", "j1"), {}),
    "separate": (("separate", "https://cdn.example.com/a.mp3"), {}),
    "stats": (("stats",), {}),
}

#: REDIS_URL mistakes, as text with {port} (a port this test owns) and what the line says.
MISTAKES = {
    "port not a number": (f"redis://:{SECRET}@127.0.0.1:notaport/0", "port of 127.0.0.1"),
    "port out of range": (f"redis://:{SECRET}@127.0.0.1:99999/0", "port of 127.0.0.1"),
    "option not a number": (
        f"redis://:{SECRET}@127.0.0.1:{{port}}/0?socket_timeout=abc",
        "socket_timeout must be a number",
    ),
    "unknown option": (f"redis://:{SECRET}@127.0.0.1:{{port}}/0?timeout_s=5", "no option"),
    "database not a number": (f"redis://:{SECRET}@127.0.0.1:{{port}}/abc", "database"),
    # redis-py reads a missing host as localhost: here localhost on the port this test owns.
    "no host": (f"redis://:{SECRET}@:{{port}}/0", "names no host"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_malformed_redis_url_is_one_line_in_every_command_and_connects_nowhere(
    owned_port, command, mistake
):
    args, env = COMMANDS[command]
    url, says = MISTAKES[mistake]
    done = run(*args, env={**env, "REDIS_URL": url.format(port=owned_port.port)})
    assert_one_line(done, "REDIS_URL", says)
    assert SECRET not in done.stderr + done.stdout
    assert owned_port.accepted == 0


@pytest.mark.parametrize("command", ["worker", "gateway", "status"])
def test_rediss_against_a_redis_without_tls_says_so_instead_of_hanging(redis_server, command):
    args, env = COMMANDS[command]
    url = f"rediss://127.0.0.1:{redis_server.port}/0?ssl_cert_reqs=none"
    # The subprocess timeout is a hang guard: before, nothing was printed for as long as it ran.
    done = run(*args, env={**env, "REDIS_URL": url, "VIDGO_STEMS_REDIS_SOCKET_TIMEOUT_S": "1"})
    assert_one_line(done, "REDIS_URL is rediss://", "write redis://")


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        ("worker", "VIDGO_BASE_URL"),
        ("gateway", "VIDGO_STEMS_PUBLIC_BASE_URL"),
        ("stats", "VIDGO_STEMS_PUBLIC_CALLBACK_BASE_URL"),
    ],
)
@pytest.mark.parametrize(
    "value",
    [f"ftp://admin:{SECRET}@host.example.com", f"https://admin:{SECRET}@host.example.com:port"],
)
def test_a_url_setting_in_error_is_named_without_its_credentials(command, variable, value):
    args, env = COMMANDS[command]
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    # With the link secret set, only the URL itself can be what is wrong.
    env = {**env, "REDIS_URL": redis_url, "VIDGO_STEMS_FILE_URL_SECRET": "s" * 32}
    done = run(*args, env={**env, variable: value})
    assert_one_line(done, variable)
    assert SECRET not in done.stderr + done.stdout


@pytest.mark.parametrize("command", ["worker", "gateway", "stats"])
def test_an_empty_stems_dir_is_refused_not_read_as_the_current_folder(owned_port, command):
    args, env = COMMANDS[command]
    redis_url = f"redis://127.0.0.1:{owned_port.port}/0"
    done = run(*args, env={**env, "REDIS_URL": redis_url, "STEMS_DIR": ""})
    assert_one_line(done, "STEMS_DIR", "is empty")
    assert owned_port.accepted == 0


def test_the_gateway_does_not_start_without_redis(tmp_path):
    env = {**GATEWAY_KEYS, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = run("gateway", "--port", str(free_port()), env={**env, "STEMS_DIR": str(tmp_path)})
    assert_one_line(done, "cannot reach Redis (REDIS_URL)")


def test_the_gateway_on_a_busy_port_is_one_line_and_never_says_it_listens(redis_server, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        env = {**GATEWAY_KEYS, "REDIS_URL": redis_server.url, "STEMS_DIR": str(tmp_path)}
        done = run("gateway", "--port", str(port), env=env)
    assert_one_line(done, f"cannot listen on 127.0.0.1:{port}", "--port")
    assert "gateway on" not in done.stderr


def test_a_device_as_catalog_is_refused_at_once():
    # The subprocess timeout is a hang guard: before, /dev/zero was hashed for ever.
    assert_one_line(run("batch", "/dev/zero", "--dry-run", env={}), "not a regular file")


def test_a_csv_column_named_twice_is_one_line_naming_it(tmp_path):
    path = tmp_path / "twice.csv"
    path.write_text(
        "audio_url,title,audio_url\nhttps://cdn.example.com/a.mp3,x,https://cdn.example.com/b\n"
    )
    assert_one_line(run("batch", str(path), "--dry-run", env={}), "'audio_url' is named twice")


def test_a_client_that_trickles_its_headers_is_cut(redis_server, tmp_path):
    port = free_port()
    env = {
        **GATEWAY_KEYS,
        "REDIS_URL": redis_server.url,
        "STEMS_DIR": str(tmp_path),
        "VIDGO_STEMS_GATEWAY_HEADER_TIMEOUT_S": "1",
    }
    gateway = subprocess.Popen(
        [sys.executable, "-m", "vidgo_stems.cli", "gateway", "--port", str(port)],
        env={**_clean_env(), **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "gateway on" in gateway.stderr.readline()
        answer = _trickle_headers(port, guard_s=60)
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
        gateway.stderr.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"VIDGO_STEMS_GATEWAY_HEADER_TIMEOUT_S" in answer


def _trickle_headers(port: int, guard_s: float) -> bytes:
    """Send a request's headers one byte at a time and never finish them; return what the
    server sent before it closed the connection (``guard_s`` only stops a hang)."""
    client = _connect_when_up(port, guard_s)
    answer = b""
    deadline = time.monotonic() + guard_s
    with client:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n")
        while time.monotonic() < deadline:
            readable, _, _ = select.select([client], [], [], 0.2)
            if readable:
                try:
                    chunk = client.recv(65536)
                except ConnectionResetError:
                    return answer
                if not chunk:
                    return answer
                answer += chunk
                continue
            try:
                client.sendall(b"x")
            except OSError:
                return answer
    pytest.fail(f"the connection was still open after {guard_s}s of trickled headers")


def _connect_when_up(port: int, guard_s: float) -> socket.socket:
    deadline = time.monotonic() + guard_s
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("VIDGO_", "REDIS_URL"))}
