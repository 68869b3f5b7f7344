"""A raw v3 protocol client for tests: send exact bytes, read exact messages.

Used to compare, byte for byte, what Postgres answers directly and through the
proxy, and to send input no driver would produce (garbage, bad lengths).
"""

from __future__ import annotations

import socket
import struct
import time

from proxy import protocol as p
from proxy.config import Upstream


def startup_packet(user: str = "postgres", database: str = "postgres",
                   version: int = p.PROTOCOL_3_0, **params: str) -> bytes:
    body = struct.pack("!I", version)
    for key, value in {"user": user, "database": database, **params}.items():
        body += p.cstr(key) + p.cstr(value)
    body += b"\x00"
    return struct.pack("!I", len(body) + 4) + body


class RawConn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(20)
        self.buf = b""

    @classmethod
    def to_proxy(cls, proxy) -> "RawConn":
        return cls(socket.create_connection((proxy.host, proxy.port)))

    @classmethod
    def to_upstream(cls, upstream: Upstream) -> "RawConn":
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(upstream.socket_path)
        return cls(sock)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_byte(self) -> bytes:
        while not self.buf:
            if not self._fill():
                return b""
        out, self.buf = self.buf[:1], self.buf[1:]
        return out

    def read_message(self) -> tuple[bytes, bytes] | None:
        """Next (type, body), or None at EOF."""
        while len(self.buf) < 5:
            if not self._fill():
                return None
        length = struct.unpack_from("!I", self.buf, 1)[0]
        while len(self.buf) < 1 + length:
            if not self._fill():
                return None
        msg_type, body = self.buf[:1], self.buf[5:1 + length]
        self.buf = self.buf[1 + length:]
        return msg_type, body

    def read_until_ready(self, count: int = 1) -> list[tuple[bytes, bytes]]:
        out = []
        while count:
            msg = self.read_message()
            if msg is None:
                raise ConnectionError(f"EOF after {out!r}")
            out.append(msg)
            if msg[0] == b"Z":
                count -= 1
        return out

    def read_all(self, settle: float = 0.3, then: float | None = None) -> list[tuple[bytes, bytes]]:
        """Read messages until EOF or `settle` seconds of silence (`then` seconds,
        if given, once a first message has come: a server's replies to one write
        come together, so a shorter silence after them ends the read as surely)."""
        out = []
        self.sock.settimeout(settle)
        try:
            while (msg := self.read_message()) is not None:
                out.append(msg)
                if then is not None and len(out) == 1:
                    self.sock.settimeout(then)
        except (socket.timeout, ConnectionResetError):
            pass
        finally:
            self.sock.settimeout(20)
        return out

    def login(self, user: str = "postgres", database: str = "postgres") -> list[tuple[bytes, bytes]]:
        self.send(startup_packet(user, database))
        return self.read_until_ready()

    def is_closed(self, wait: float = 5.0) -> bool:
        deadline = time.monotonic() + wait
        self.sock.settimeout(wait)
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False

    def close(self) -> None:
        self.sock.close()


def error_fields(msg: tuple[bytes, bytes]) -> dict[str, str]:
    assert msg[0] in (b"E", b"N"), msg
    return p.parse_fields(msg[1])
