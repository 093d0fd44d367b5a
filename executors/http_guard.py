"""HTTP sessions for verification checks that refuse, once connected and before a byte is
sent, any connection that reached a metadata or link-local address (executors.addresses).

Checking a name before asking is not enough: a name can resolve to a public address for the
first look and to the metadata address for the connection (DNS rebinding). The address judged
here is the socket's peer, whatever the resolver said.
"""

from __future__ import annotations

import socket

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from executors.addresses import forbidden, parse


class BlockedAddress(Exception):
    """A connection reached an address checks may not ask; nothing was sent. Not an OSError,
    so urllib3 neither retries it nor dresses it up as a connection failure."""


def _refuse_forbidden_peer(sock: socket.socket | None, host: str) -> None:
    peer = parse(str(sock.getpeername()[0])) if sock is not None else None
    if peer is not None and forbidden(peer):
        sock.close()  # type: ignore[union-attr]
        raise BlockedAddress(
            f"{host} answered from {peer}, a link-local address (cloud metadata); not asked"
        )


class GuardedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _refuse_forbidden_peer(self.sock, self.host)


class GuardedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _refuse_forbidden_peer(self.sock, self.host)


class GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": GuardedHTTPPool,
            "https": GuardedHTTPSPool,
        }


def guarded_session() -> requests.Session:
    """A session whose every connection is judged by the address it reached."""
    session = requests.Session()
    adapter = GuardedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
