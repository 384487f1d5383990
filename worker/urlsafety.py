"""One URL policy for every URL this service takes from outside or fetches on a caller's say-so.

Callers name a source track (``audio_url``, fetched by Vidgo and again by post-processing to
check the stems) and a webhook URL (which the worker POSTs to from inside the network); Vidgo
names the stem URLs. Without a guard each is an open door to loopback services, cloud metadata
endpoints and private networks. Every path (enqueue, a subscription to an existing job, retry,
batch rows, enqueue by task name, webhook delivery, the source fetch, the stem fetch) goes
through the same two steps:

1. :func:`parse_url`: strict parsing. http(s) only; a host; a port from 1 to 65535; no white
   space, control characters or backslashes anywhere; no user name or password and no
   percent-escapes in the authority (``%40`` and ``\\`` are how ``user@host`` tricks hide);
   an ASCII host name (punycode for international ones) or an IP address in its one standard
   spelling (never ``127.1`` or ``0x7f.0.0.1``).
2. :meth:`AddressPolicy.judge`: every address is put in one of four kinds, an IPv6 address
   that carries an IPv4 one (mapped, compatible, translated ``::ffff:0:0:0/96``, NAT64, 6to4,
   Teredo) as the IPv4 it carries. Public addresses are always allowed; private ones
   (loopback, RFC 1918, unique local, shared ``100.64/10``, unspecified) only where a
   ``VIDGO_STEMS_ALLOW_PRIVATE_*`` setting opens them; link-local ones, cloud metadata
   addresses included, only with ``VIDGO_STEMS_DANGEROUSLY_ALLOW_LINK_LOCAL_HOSTS``; the rest
   (multicast, documentation, reserved) never. A literal address is judged when the URL is
   taken; every address a name resolves to is judged again just before each connection.

Stem URLs from Vidgo are also held to the configured stem origins (:func:`check_stem_url`).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

from vidgo_stems.errors import InvalidRequest, StemHostNotAllowed, shown
from vidgo_stems.text import problem_in

if TYPE_CHECKING:
    from vidgo_stems.settings import Settings

MAX_URL_LENGTH = 2048
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain")
_HOST_NAME = re.compile(r"[a-z0-9_.-]+")
LINK_LOCAL_SETTING = "VIDGO_STEMS_DANGEROUSLY_ALLOW_LINK_LOCAL_HOSTS"
WEBHOOK_SETTING = "VIDGO_STEMS_ALLOW_PRIVATE_WEBHOOK_HOSTS"
SOURCE_SETTING = "VIDGO_STEMS_ALLOW_PRIVATE_SOURCE_HOSTS"


class BadUrl(ValueError):
    """Raised by :func:`parse_url`; the message says what is wrong, quoting the URL safely."""


class BlockedAddress(ValueError):
    """Raised when a URL's host is, or resolves to, an address the policy does not open."""


class Kind(IntEnum):
    """What an address is, from least to most dangerous to reach on a caller's say-so."""

    PUBLIC = 0
    PRIVATE = 1  # loopback, RFC 1918, unique local, shared address space, unspecified
    LINK_LOCAL = 2  # 169.254/16, fe80::/10, cloud metadata endpoints
    NEVER = 3  # multicast, documentation, reserved, broadcast


_net = ipaddress.ip_network
_PRIVATE_V4_NETS = "0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 127.0.0.0/8 172.16.0.0/12 192.168.0.0/16"
_PRIVATE_V4 = tuple(_net(n) for n in _PRIVATE_V4_NETS.split())
#: Metadata endpoints that live outside link-local ranges (Alibaba Cloud, AWS over IPv6).
_METADATA = frozenset(ipaddress.ip_address(a) for a in ("100.100.100.200", "fd00:ec2::254"))
_LINK_LOCAL = (_net("169.254.0.0/16"), _net("fe80::/10"))
_PRIVATE_V6 = (_net("fc00::/7"),)
#: IPv6 prefixes that carry an IPv4 address in their last 32 bits: compatible (deprecated),
#: translated (RFC 2765), NAT64 (RFC 6052, RFC 8215).
_LAST_32_BITS = (
    _net("::/96"),
    _net("::ffff:0:0:0/96"),
    _net("64:ff9b::/96"),
    _net("64:ff9b:1::/48"),
)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address carries: mapped, compatible, translated, NAT64,
    6to4, Teredo."""
    found = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if any(ip in net for net in _LAST_32_BITS):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def kind_of(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> Kind:
    """The kind of an address; an IPv6 one carrying IPv4 addresses is the worst of them."""
    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    if ip in _METADATA or any(ip in net for net in _LINK_LOCAL):
        return Kind.LINK_LOCAL
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_loopback or ip.is_unspecified:
            return Kind.PRIVATE
        inner = embedded_ipv4(ip)
        if inner:
            return max(kind_of(v4) for v4 in inner)
        if any(ip in net for net in _PRIVATE_V6):
            return Kind.PRIVATE
    elif any(ip in net for net in _PRIVATE_V4):
        return Kind.PRIVATE
    return Kind.PUBLIC if ip.is_global and not ip.is_multicast else Kind.NEVER


def is_public(address: str) -> bool:
    """True for a globally routable unicast address (see :func:`kind_of`)."""
    return kind_of(address) is Kind.PUBLIC


@dataclass(frozen=True)
class AddressPolicy:
    """Which kinds of address one path may reach, and the settings that open more."""

    private: bool = False
    link_local: bool = False
    #: The setting that opens private addresses on this path, named in refusals.
    setting: str = WEBHOOK_SETTING

    def allows(self, kind: Kind) -> bool:
        if kind is Kind.PRIVATE:
            return self.private
        if kind is Kind.LINK_LOCAL:
            return self.link_local
        return kind is Kind.PUBLIC

    def judge(self, address: str) -> None:
        """BlockedAddress unless this policy opens ``address``."""
        kind = kind_of(address)
        if self.allows(kind):
            return
        if kind is Kind.PRIVATE:
            hint = f"set {self.setting}=true for hosts on a private network"
        elif kind is Kind.LINK_LOCAL:
            hint = f"link-local and cloud metadata addresses open only with {LINK_LOCAL_SETTING}"
        else:
            hint = "no setting opens multicast, documentation or reserved addresses"
        raise BlockedAddress(
            f"points at a {kind.name.lower().replace('_', '-')} address ({address}); {hint}"
        )

    def check_host(self, host: str) -> None:
        """Judge a host without a DNS lookup: a literal address, or a name that can only be
        local (``localhost``, ``*.local``, a single label), which counts as private."""
        name = check_spelling(host)
        try:
            literal = ipaddress.ip_address(name)
        except ValueError:
            if not self.private and (
                name == "localhost" or name.endswith(_LOCAL_SUFFIXES) or "." not in name
            ):
                raise BlockedAddress(
                    f"names a local host ({name}); set {self.setting}=true for hosts on a "
                    "private network"
                ) from None
            return
        self.judge(str(literal))

    def resolve(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` and return its addresses; BlockedAddress if any is not opened.

        Checking every address (not only the first) stops a name that resolves to both a
        public and a private address. A DNS answer that changes between this check and the
        connection (DNS rebinding) is not covered; put receivers behind an egress proxy
        where that matters.
        """
        self.check_host(host)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError) as exc:
            raise BlockedAddress(f"could not be resolved ({type(exc).__name__})") from None
        addresses = sorted({str(info[4][0]) for info in infos})
        for address in addresses:
            self.judge(address)
        return addresses


def connectable(url: str, policy: AddressPolicy) -> tuple[SplitResult, list[str]]:
    """What the webhook delivery and the source fetch run just before they connect: ``url``
    parsed under the strict rules, and every address its host resolves to judged by
    ``policy``. BlockedAddress (a ValueError) saying why otherwise."""
    try:
        parts = parse_url(url, "")
    except BadUrl as exc:
        raise BlockedAddress(f"is not a URL this service fetches ({exc})") from None
    return parts, policy.resolve(parts.hostname or "", default_port(parts))


def webhook_policy(settings: Settings) -> AddressPolicy:
    """The addresses webhook receivers may have under ``settings``."""
    return AddressPolicy(
        private=settings.allow_private_webhook_hosts,
        link_local=settings.dangerously_allow_link_local_hosts,
        setting=WEBHOOK_SETTING,
    )


def source_policy(settings: Settings) -> AddressPolicy:
    """The addresses a job's source track may have under ``settings``."""
    return AddressPolicy(
        private=settings.allow_private_source_hosts,
        link_local=settings.dangerously_allow_link_local_hosts,
        setting=SOURCE_SETTING,
    )


def parse_url(url: object, what: str) -> SplitResult:
    """``url`` parsed under the strict rules (module docstring); BadUrl saying what is wrong,
    prefixed with ``what`` (``"webhook_url"``)."""
    prefix = f"{what} " if what else ""
    if not isinstance(url, str) or not url.strip():
        raise BadUrl(f"{prefix}must be a non-empty http(s) URL")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise BadUrl(f"{prefix}is longer than {MAX_URL_LENGTH} characters")
    problem = problem_in(url)
    if problem:
        raise BadUrl(f"{prefix}{problem}")
    if any(ch.isspace() for ch in url) or "\\" in url:
        raise BadUrl(f"{prefix}{shown(url)} holds white space or a backslash: percent-encode it")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise BadUrl(f"{prefix}must be an http:// or https:// URL with a host, got {shown(url)}")
    if "@" in parts.netloc or "%" in parts.netloc:
        raise BadUrl(
            f"{prefix}must not carry a user name, password or percent-escape before its host "
            f"({shown(parts.scheme + '://' + parts.netloc, 60)}): put credentials elsewhere"
        )
    try:
        port = parts.port
    except ValueError:
        raise BadUrl(
            f"{prefix}{shown(url)} has a port that is not a number from 1 to 65535"
        ) from None
    if port == 0 or not parts.hostname:
        raise BadUrl(f"{prefix}{shown(url)} needs a host and a port from 1 to 65535")
    try:
        check_spelling(parts.hostname)
    except BlockedAddress as exc:
        raise BadUrl(f"{prefix}{exc}") from None
    return parts


def default_port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme.lower() == "https" else 80)


def check_spelling(host: str) -> str:
    """The host in the one spelling every resolver reads the same way; BlockedAddress for
    non-ASCII hosts, stray characters and IPv4 addresses in legacy forms (``127.1``)."""
    name = host.lower().rstrip(".")
    if not name.isascii():
        raise BlockedAddress(
            f"spells its host with non-ASCII characters ({shown(host)}): write it in ASCII "
            "(punycode for international names)"
        )
    try:
        ipaddress.ip_address(name)
    except ValueError:
        if not _HOST_NAME.fullmatch(name):
            raise BlockedAddress(
                f"has a host with characters no host name holds ({shown(host)})"
            ) from None
        if _legacy_ipv4(name):
            raise BlockedAddress(
                f"writes an IPv4 address in a non-standard form ({shown(host)}): use four "
                "decimal numbers, e.g. 203.0.113.7"
            ) from None
    return name


def _legacy_ipv4(name: str) -> bool:
    """Whether the C resolver would read ``name`` as an IPv4 address although it is not one in
    dotted-quad form: ``127.1``, ``0x7f.0.0.1``, ``0177.0.0.1``, ``2130706433``."""
    try:
        socket.inet_aton(name)
    except (OSError, ValueError):
        return all(part.isdigit() or part.startswith("0x") for part in name.split(".") if part)
    return True


def check_webhook_url(url: object, policy: AddressPolicy) -> str:
    """Return ``url`` when it may receive webhooks; else InvalidRequest saying what is wrong."""
    try:
        parts = parse_url(url, "webhook_url")
        policy.check_host(parts.hostname or "")
    except BadUrl as exc:
        raise InvalidRequest(str(exc)) from None
    except BlockedAddress as exc:
        raise InvalidRequest(f"webhook_url {exc}") from None
    return str(url).strip()


def check_source_url(url: str, policy: AddressPolicy) -> None:
    """InvalidRequest when ``url`` (a job's ``audio_url``, already parsed) names a host this
    policy does not open; names are judged again, resolved, when the source is fetched."""
    try:
        policy.check_host(parse_url(url, "audio_url").hostname or "")
    except BadUrl as exc:
        raise InvalidRequest(str(exc)) from None
    except BlockedAddress as exc:
        raise InvalidRequest(f"audio_url {exc}") from None


def check_stem_url(url: str, allowed: frozenset[tuple[str, str, int]]) -> str:
    """The URL's host when it parses under the strict rules and its scheme, host and port are
    an allowed origin; else StemHostNotAllowed (nothing is fetched)."""
    try:
        parts = parse_url(url, "")
    except BadUrl as exc:
        raise StemHostNotAllowed(
            f"refusing to download a stem from a malformed URL: {exc}"
        ) from None
    scheme, host, port = parts.scheme.lower(), (parts.hostname or "").lower(), default_port(parts)
    if (scheme, host, port) not in allowed:
        raise StemHostNotAllowed(
            f"refusing to download a stem from {scheme}://{host or '?'}:{port}: that origin is "
            "not in VIDGO_STEMS_ALLOWED_STEM_HOSTS (a bare host means https on port 443)"
        )
    return host
