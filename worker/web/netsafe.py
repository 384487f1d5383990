"""Where this service may send requests on a caller's say-so (server-side request forgery).

Callers name a webhook URL; the worker then POSTs to it from inside the network. Without a
guard that is an open door to loopback services, cloud metadata endpoints and private networks.
A URL is checked when the job is enqueued (scheme, credentials, literal addresses, local names)
and again just before each delivery, when every address its host resolves to must be public.
``VIDGO_STEMS_ALLOW_PRIVATE_WEBHOOK_HOSTS=true`` lifts the address rules (receivers on a private
network, tests on loopback); the scheme and credential rules always hold.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from worker.errors import InvalidRequest

MAX_URL_LENGTH = 2048
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain")


class BlockedAddress(ValueError):
    """Raised when a URL's host is, or resolves to, an address the rules do not allow."""


def is_public(address: str) -> bool:
    """True for a globally routable unicast address (IPv4-mapped IPv6 judged as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_webhook_url(url: object, *, allow_private: bool) -> str:
    """Return ``url`` when it may receive webhooks; else InvalidRequest saying what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest("webhook_url must be a non-empty http(s) URL")
    url = url.strip()
    shown = url if len(url) <= 100 else url[:100] + "..."
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(f"webhook_url is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"webhook_url {shown!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"webhook_url {shown!r} must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest(
            "webhook_url must not carry a user name or password; webhooks are signed instead"
        )
    if port == 0:
        raise InvalidRequest(f"webhook_url {shown!r} has port 0")
    if not allow_private:
        try:
            check_host(parts.hostname)
        except BlockedAddress as exc:
            raise InvalidRequest(
                f"webhook_url {shown!r} {exc}; webhooks go to public hosts only "
                "(set VIDGO_STEMS_ALLOW_PRIVATE_WEBHOOK_HOSTS=true for receivers on a private "
                "network)"
            ) from None
    return url


def check_host(host: str) -> None:
    """Refuse a literal private address or a local-only name (no DNS lookup)."""
    name = host.lower().rstrip(".")
    try:
        literal = ipaddress.ip_address(name)
    except ValueError:
        if name == "localhost" or name.endswith(_LOCAL_SUFFIXES) or "." not in name:
            raise BlockedAddress(f"names a local host ({host})") from None
        return
    if not is_public(str(literal)):
        raise BlockedAddress(f"points at a non-public address ({host})")


def resolve_public(host: str, port: int) -> list[str]:
    """Resolve ``host`` and return its addresses; BlockedAddress if any of them is not public.

    Checking every address (not only the first) stops a name that resolves to both a public and
    a private address. A DNS answer that changes between this check and the connection (DNS
    rebinding) is not covered; put receivers behind an egress proxy where that matters.
    """
    check_host(host)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise BlockedAddress(f"could not be resolved ({exc})") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    private = [a for a in addresses if not is_public(a)]
    if private:
        raise BlockedAddress(f"resolves to a non-public address ({', '.join(private)})")
    return addresses
