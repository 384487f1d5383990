"""The deployment checks run offline: every schema they read ships with an installed package."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Every check here reads packaged schemas: any network use is a failure."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the deployment checks must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
