"""Which addresses verification checks may never ask: cloud metadata services.

Metadata services (169.254.169.254 on AWS, GCP, Azure and Oracle, fd00:ec2::254 on AWS over
IPv6, 100.100.100.200 on Alibaba Cloud) hand out the machine's credentials to whoever asks, so
a check must never reach them, however the address is spelled: IPv6 forms that carry an IPv4
address inside (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, 6to4 `2002::/16`, Teredo
`2001::/32`, NAT64 `64:ff9b::/96`) are judged by the address they carry too. A name is judged
by every address it resolves to (`blocked_address`); `executors.http_guard` judges the address
a connection actually reached. Only the standard library, so validating a service's config
stays light.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

BLOCKED_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),  # IPv4 link-local, metadata on most clouds
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def carried(address: Address) -> Iterator[Address]:
    """The address itself and every IPv4 address an IPv6 form of it carries."""
    yield address
    if not isinstance(address, ipaddress.IPv6Address):
        return
    if address.ipv4_mapped:
        yield address.ipv4_mapped
    if address.sixtofour:
        yield address.sixtofour
    if address.teredo:
        yield from address.teredo  # (server, client); Python undoes the client's inversion
    if any(address in network for network in _NAT64) or int(address) >> 32 == 0:
        yield ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def forbidden(address: Address) -> bool:
    return any(inner in network for inner in carried(address) for network in BLOCKED_NETWORKS)


def parse(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None


def named_address_forbidden(url: str) -> bool:
    """Whether the URL's host is, written out, an address checks may not ask (names are
    resolved when the check runs)."""
    address = parse(urlsplit(url).hostname or "")
    return address is not None and forbidden(address)


def blocked_address(url: str) -> str | None:
    """Why a check may not ask `url`: its host is, or resolves to, a metadata or link-local
    address. None when it may."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None  # the request itself will say the name does not resolve
    for info in infos:
        address = parse(str(info[4][0]))
        if address is not None and forbidden(address):
            return f"{host} is {address}, a link-local address (cloud metadata); not asked"
    return None
