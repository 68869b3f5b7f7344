"""Sans-IO parsing of a client's first packet (untyped: int32 length, int32 code).

The first packet is one of SSLRequest, GSSENCRequest, CancelRequest or a
StartupMessage. The proxy answers the encryption requests itself, forwards cancels
to the upstream as they came, and forwards the StartupMessage's original bytes (so
protocol 3.2 and options it does not know pass through untouched).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .errors import FEATURE_NOT_SUPPORTED, PgError
from .framing import ProtocolViolation
from .protocol import (CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE,
                       STARTUP_PACKET_LIMIT)

_II = struct.Struct("!II")


@dataclass(frozen=True)
class SSLRequest:
    raw: bytes


@dataclass(frozen=True)
class GSSENCRequest:
    raw: bytes


@dataclass(frozen=True)
class CancelRequest:
    """Forwarded verbatim: its key may be longer than 4 bytes under protocol 3.2."""

    raw: bytes


@dataclass(frozen=True)
class StartupMessage:
    raw: bytes
    version: tuple[int, int]
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def user(self) -> str:
        return self.parameters.get("user", "")

    @property
    def database(self) -> str:
        return self.parameters.get("database") or self.user


FirstPacket = SSLRequest | GSSENCRequest | CancelRequest | StartupMessage


def parse_first_packet(buf: bytes | bytearray) -> tuple[FirstPacket | None, int]:
    """Parse one first packet from the start of buf.

    Returns (packet, bytes consumed), or (None, 0) if more bytes are needed.
    Raises ProtocolViolation for anything that is not a valid first packet (a
    PgError 0A000 for a protocol version other than 3).
    """
    if len(buf) < 8:
        if len(buf) >= 4:
            _check_length(struct.unpack_from("!I", buf)[0])
        return None, 0
    length, code = _II.unpack_from(buf)
    _check_length(length)
    if len(buf) < length:
        return None, 0
    raw = bytes(buf[:length])
    # (Postgres answers an encryption request of any valid length: the bytes after
    # the code are ignored)
    if code == SSL_REQUEST_CODE:
        return SSLRequest(raw), length
    if code == GSSENC_REQUEST_CODE:
        return GSSENCRequest(raw), length
    if code == CANCEL_REQUEST_CODE:
        if length < 16 or length > 16 + 256:
            raise ProtocolViolation(f"invalid length of CancelRequest packet: {length}")
        return CancelRequest(raw), length
    major, minor = code >> 16, code & 0xFFFF
    if major != 3:
        raise unsupported_protocol(code)
    return StartupMessage(raw, (major, minor), _parameters(raw[8:])), length


def unsupported_protocol(code: int) -> PgError:
    """Postgres' FATAL for a protocol version it does not speak (also what a second
    SSLRequest or GSSENCRequest gets: its code read as a version)."""
    return PgError(FEATURE_NOT_SUPPORTED,
                   f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: "
                   "server supports 3.0 to 3.2", severity="FATAL")


def _check_length(length: int) -> None:
    if length < 8 or length > STARTUP_PACKET_LIMIT:
        raise ProtocolViolation(f"invalid length of startup packet: {length}")


def _parameters(body: bytes) -> dict[str, str]:
    if not body.endswith(b"\x00"):
        raise ProtocolViolation("invalid startup packet layout: expected terminator as last byte")
    # name\0value\0 ... \0: after dropping the final terminator every string
    # still ends in a NUL, so a valid layout splits into pairs plus one empty piece.
    parts = body[:-1].split(b"\x00")
    if parts[-1] != b"":
        raise ProtocolViolation("invalid startup packet layout: expected terminator as last byte")
    parts.pop()
    if len(parts) % 2:
        raise ProtocolViolation("invalid startup packet layout: expected terminator as last byte")
    # Postgres takes any bytes here and applies its own encoding rules (the packet
    # goes upstream as it came); the proxy only names and logs them
    return {parts[i].decode(errors="backslashreplace"): parts[i + 1].decode(errors="backslashreplace")
            for i in range(0, len(parts), 2)}
