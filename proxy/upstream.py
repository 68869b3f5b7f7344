"""Opening connections to the upstream server (TCP or unix socket, optional TLS).

The proxy speaks to the upstream as a client would: for sslmode prefer/require it
sends an SSLRequest first and upgrades the transport in place when the server says
'S'. What travels afterwards is the client's own StartupMessage and auth exchange.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from collections.abc import Callable

from .config import Upstream
from .protocol import SSL_REQUEST_CODE

_SSL_REQUEST = struct.pack("!II", 8, SSL_REQUEST_CODE)


class UpstreamUnavailable(ConnectionError):
    """The upstream server could not be reached or refused the transport."""


class _Negotiator(asyncio.Protocol):
    """Waits for the server's one-byte answer to SSLRequest."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(UpstreamUnavailable("upstream closed during SSL negotiation"))


def _client_ssl_context() -> ssl.SSLContext:
    # libpq's sslmode=require encrypts without verifying the server certificate.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def open_upstream(upstream: Upstream, protocol_factory: Callable[[], asyncio.Protocol],
                        timeout: float = 10.0) -> tuple[asyncio.Transport, asyncio.Protocol]:
    """Connect to the upstream and return (transport, protocol) ready for startup."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            if upstream.sslmode == "disable" or upstream.is_unix:
                if upstream.is_unix:
                    transport, proto = await loop.create_unix_connection(
                        protocol_factory, upstream.socket_path)
                else:
                    transport, proto = await loop.create_connection(
                        protocol_factory, upstream.host, upstream.port)
                _tune(transport)
                return transport, proto
            transport, negotiator = await loop.create_connection(
                _Negotiator, upstream.host, upstream.port)
            transport.write(_SSL_REQUEST)
            answer = await negotiator.answer
            if answer[:1] == b"S" and len(answer) == 1:
                proto = protocol_factory()
                tls = await loop.start_tls(transport, proto, _client_ssl_context(),
                                           server_hostname=upstream.host)
                if tls is None:
                    raise UpstreamUnavailable("TLS handshake with upstream failed")
                proto.connection_made(tls)
                return tls, proto
            if answer[:1] == b"N" and len(answer) == 1 and upstream.sslmode == "prefer":
                proto = protocol_factory()
                transport.set_protocol(proto)
                proto.connection_made(transport)
                _tune(transport)
                return transport, proto
            transport.close()
            raise UpstreamUnavailable("upstream server does not support SSL, but sslmode=require")
    except TimeoutError as exc:
        raise UpstreamUnavailable(f"timeout connecting to upstream {upstream.describe()}") from exc
    except OSError as exc:
        raise UpstreamUnavailable(
            f"could not connect to upstream {upstream.describe()}: {exc.strerror or exc}") from exc


def _tune(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (2, 10):  # AF_INET, AF_INET6
        import socket
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
