"""Where this service may send requests on a caller's say-so (server-side request forgery).

Callers name a webhook URL; the worker then POSTs to it from inside the network. Without a
guard that is an open door to loopback services, cloud metadata endpoints and private networks.
A URL is checked when the job is enqueued (scheme, credentials, literal addresses, local names)
and again just before each delivery, when every address its host resolves to must be public.
``VIDGO_STEMS_ALLOW_PRIVATE_WEBHOOK_HOSTS=true`` lifts the address rules (receivers on a private
network, tests on loopback); the scheme and credential rules always hold. The same address
rules guard the fetch of a job's source track; stem URLs from Vidgo are held to the configured
stem origins (:func:`check_stem_url`).
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from urllib.parse import urlsplit

from worker.errors import InvalidRequest, StemHostNotAllowed, shown
from worker.settings import origin_of

MAX_URL_LENGTH = 2048
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain")


class BlockedAddress(ValueError):
    """Raised when a URL's host is, or resolves to, an address the rules do not allow."""


#: IPv6 prefixes that carry an IPv4 address in their last 32 bits: NAT64 (RFC 6052, RFC 8215).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address carries: mapped, compatible, NAT64, 6to4, Teredo."""
    found = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip in _IPV4_COMPATIBLE or any(ip in net for net in _NAT64):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def is_public(address: str) -> bool:
    """True for a globally routable unicast address. An IPv6 address that carries an IPv4 one
    (mapped, compatible, NAT64, 6to4, Teredo) is public only if every IPv4 inside it is."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        return all(inner.is_global and not inner.is_multicast for inner in embedded_ipv4(ip))
    return True


def check_webhook_url(url: object, *, allow_private: bool) -> str:
    """Return ``url`` when it may receive webhooks; else InvalidRequest saying what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest("webhook_url must be a non-empty http(s) URL")
    url = url.strip()
    quoted = url if len(url) <= 100 else url[:100] + "..."
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(f"webhook_url is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"webhook_url {quoted!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"webhook_url {quoted!r} must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest(
            "webhook_url must not carry a user name or password; webhooks are signed instead"
        )
    if port == 0:
        raise InvalidRequest(f"webhook_url {quoted!r} has port 0")
    try:
        check_spelling(parts.hostname)
    except BlockedAddress as exc:
        raise InvalidRequest(f"webhook_url {exc}") from None
    if not allow_private:
        try:
            check_host(parts.hostname)
        except BlockedAddress as exc:
            raise InvalidRequest(
                f"webhook_url {quoted!r} {exc}; webhooks go to public hosts only "
                "(set VIDGO_STEMS_ALLOW_PRIVATE_WEBHOOK_HOSTS=true for receivers on a private "
                "network)"
            ) from None
    return url


def check_spelling(host: str) -> str:
    """The host in the one spelling every resolver reads the same way; BlockedAddress for
    non-ASCII hosts and IPv4 addresses in legacy forms (``127.1``, ``0x7f.0.0.1``)."""
    name = host.lower().rstrip(".")
    if not name.isascii() or unicodedata.normalize("NFKC", name) != name:
        raise BlockedAddress(
            f"spells its host with non-ASCII characters ({shown(host)}): write it in ASCII "
            "(punycode for international names)"
        )
    try:
        ipaddress.ip_address(name)
    except ValueError:
        if _legacy_ipv4(name):
            raise BlockedAddress(
                f"writes an IPv4 address in a non-standard form ({shown(host)}): use four "
                "decimal numbers, e.g. 203.0.113.7"
            ) from None
    return name


def check_host(host: str) -> None:
    """Refuse a literal private address, an address in a non-standard spelling, or a
    local-only name (no DNS lookup)."""
    name = check_spelling(host)
    try:
        literal = ipaddress.ip_address(name)
    except ValueError:
        if name == "localhost" or name.endswith(_LOCAL_SUFFIXES) or "." not in name:
            raise BlockedAddress(f"names a local host ({host})") from None
        return
    if not is_public(str(literal)):
        raise BlockedAddress(f"points at a non-public address ({host})")


def _legacy_ipv4(name: str) -> bool:
    """Whether the C resolver would read ``name`` as an IPv4 address although it is not one in
    dotted-quad form: ``127.1``, ``0x7f.0.0.1``, ``0177.0.0.1``, ``2130706433``."""
    try:
        socket.inet_aton(name)
    except OSError:
        return all(part.isdigit() or part.startswith("0x") for part in name.split(".") if part)
    return True


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


def check_stem_url(url: str, allowed: frozenset[tuple[str, str, int]]) -> str:
    """The URL's host when its scheme, host and port are an allowed origin and it carries no
    user name or password; else StemHostNotAllowed (nothing is fetched)."""
    try:
        parts = urlsplit(url)
        scheme, host, port = origin_of(url)
    except ValueError:
        raise StemHostNotAllowed("refusing to download a stem from a malformed URL") from None
    if parts.username is not None or parts.password is not None:
        raise StemHostNotAllowed(
            f"refusing to download a stem from a URL with a user name or password ({host})"
        )
    if scheme not in ("http", "https") or (scheme, host, port) not in allowed:
        raise StemHostNotAllowed(
            f"refusing to download a stem from {scheme}://{host or '?'}:{port}: that origin is "
            "not in VIDGO_STEMS_ALLOWED_STEM_HOSTS (a bare host means https on port 443)"
        )
    return host
