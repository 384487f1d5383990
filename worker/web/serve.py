"""Serving the gateway: the listening socket first, then uvicorn, with a deadline on headers.

``vidgo-stems gateway`` binds its socket itself before it says where it listens, so a busy
port is one line and exit 2 rather than a "gateway on ..." line followed by uvicorn's own
failure. Every connection must finish sending its request headers within
``VIDGO_STEMS_GATEWAY_HEADER_TIMEOUT_S`` of opening (or of the previous response on a kept-alive
connection): uvicorn has no such limit, so a client trickling header bytes would hold a
connection for as long as it likes. The body has its own deadline, in
:class:`vidgo_stems.web.gateway.BodyLimit`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import sys
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import Multiprocess

from vidgo_stems.errors import ConfigError
from vidgo_stems.settings import get_settings

#: uvicorn's exit status when the server could not start.
STARTUP_FAILURE = 3


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for uvicorn, or a ConfigError saying what to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"the gateway cannot listen on {host}:{port} ({reason}): stop what holds that "
            "port, or choose another with --port (and --host)"
        ) from None
    sock.set_inheritable(True)
    return sock


def serve(config: uvicorn.Config, sock: socket.socket) -> None:
    """Run uvicorn on the bound socket, in this process or in ``config.workers`` children."""
    if config.workers > 1:
        _multiprocess(config, sock).run()
        return
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _multiprocess(config: uvicorn.Config, sock: socket.socket) -> Any:
    # uvicorn 0.36 dropped Multiprocess's ``target`` argument; older releases require it.
    if "target" in inspect.signature(Multiprocess).parameters:
        server = uvicorn.Server(config)
        return Multiprocess(config, target=server.run, sockets=[sock])  # type: ignore[call-arg]
    return Multiprocess(config, sockets=[sock])


_TIMED_OUT = json.dumps(
    {
        "error": {
            "code": "header_timeout",
            "message": "the request headers did not arrive in time "
            "(VIDGO_STEMS_GATEWAY_HEADER_TIMEOUT_S); send the whole request at once",
        }
    }
).encode()


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers are not complete
    within the header timeout (a 408 is written first, as a courtesy)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = get_settings().gateway_header_timeout_s
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_deadline()  # the headers are in: the body has its own limit

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_header_deadline()  # the next request on this connection

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        head = (
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            f"content-length: {len(_TIMED_OUT)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + _TIMED_OUT)
        self.transport.close()
