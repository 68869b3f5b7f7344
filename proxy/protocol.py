"""PostgreSQL v3 protocol vocabulary: message codes, limits, and message builders.

Pure functions over bytes (no IO). The relay never re-encodes messages it forwards;
these builders exist for the few messages the proxy speaks itself (errors, notices,
the replies of intercepted statements).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence

from .errors import PgError

# First-packet request codes (the int32 after the length in an untyped packet).
PROTOCOL_3_0 = 196608  # 3 << 16
CANCEL_REQUEST_CODE = 80877102
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104

# Frontend message types (as ints: data[i] on bytes yields an int).
F_BIND = ord("B")
F_CLOSE = ord("C")
F_COPY_DATA = ord("d")
F_COPY_DONE = ord("c")
F_COPY_FAIL = ord("f")
F_DESCRIBE = ord("D")
F_EXECUTE = ord("E")
F_FLUSH = ord("H")
F_FUNCTION_CALL = ord("F")
F_PARSE = ord("P")
F_PASSWORD = ord("p")  # also SASLInitialResponse, SASLResponse, GSSResponse
F_QUERY = ord("Q")
F_SYNC = ord("S")
F_TERMINATE = ord("X")

FRONTEND_TYPES = frozenset(
    (F_BIND, F_CLOSE, F_COPY_DATA, F_COPY_DONE, F_COPY_FAIL, F_DESCRIBE, F_EXECUTE,
     F_FLUSH, F_FUNCTION_CALL, F_PARSE, F_PASSWORD, F_QUERY, F_SYNC, F_TERMINATE)
)

# Backend message types.
B_AUTHENTICATION = ord("R")
B_BACKEND_KEY_DATA = ord("K")
B_BIND_COMPLETE = ord("2")
B_CLOSE_COMPLETE = ord("3")
B_COMMAND_COMPLETE = ord("C")
B_COPY_BOTH = ord("W")
B_COPY_DATA = ord("d")
B_COPY_DONE = ord("c")
B_COPY_IN = ord("G")
B_COPY_OUT = ord("H")
B_DATA_ROW = ord("D")
B_EMPTY_QUERY = ord("I")
B_ERROR = ord("E")
B_NEGOTIATE_PROTOCOL = ord("v")
B_NO_DATA = ord("n")
B_NOTICE = ord("N")
B_NOTIFICATION = ord("A")
B_PARAMETER_DESCRIPTION = ord("t")
B_PARAMETER_STATUS = ord("S")
B_PARSE_COMPLETE = ord("1")
B_PORTAL_SUSPENDED = ord("s")
B_READY_FOR_QUERY = ord("Z")
B_ROW_DESCRIPTION = ord("T")

# Message size limits, mirroring the server's own (src/backend/tcop/postgres.c):
# messages that carry statements or data may be up to 1 GB, the rest are small.
LARGE_MESSAGE_LIMIT = 0x3FFFFFFF
SMALL_MESSAGE_LIMIT = 10000
AUTH_MESSAGE_LIMIT = 65535
STARTUP_PACKET_LIMIT = 10000
_LARGE_FRONTEND = frozenset((F_BIND, F_FUNCTION_CALL, F_PARSE, F_QUERY, F_COPY_DATA))


def frontend_length_limit(msg_type: int) -> int:
    """Largest length field the server would accept for a frontend message type."""
    if msg_type in _LARGE_FRONTEND:
        return LARGE_MESSAGE_LIMIT
    if msg_type == F_PASSWORD:
        return AUTH_MESSAGE_LIMIT
    return SMALL_MESSAGE_LIMIT


#: Frontend message type -> largest valid length field (types not here are invalid).
FRONTEND_LIMITS: dict[int, int] = {t: frontend_length_limit(t) for t in FRONTEND_TYPES}

_HEADER = struct.Struct("!cI")


def message(msg_type: bytes, body: bytes = b"") -> bytes:
    """Frame one typed message: type byte, int32 length (incl. itself), body."""
    return _HEADER.pack(msg_type, len(body) + 4) + body


def cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


def ready_for_query(status: bytes = b"I") -> bytes:
    return message(b"Z", status)


def command_complete(tag: str) -> bytes:
    return message(b"C", cstr(tag))


def empty_query_response() -> bytes:
    return message(b"I")


def parse_complete() -> bytes:
    return message(b"1")


def bind_complete() -> bytes:
    return message(b"2")


def no_data() -> bytes:
    return message(b"n")


def row_description(columns: Sequence[tuple[str, int]]) -> bytes:
    """RowDescription for (name, type oid) columns, all in text format."""
    body = [struct.pack("!h", len(columns))]
    for name, oid in columns:
        body.append(cstr(name) + struct.pack("!ihihih", 0, 0, oid, -1, -1, 0))
    return message(b"T", b"".join(body))


def data_row(values: Iterable[str | None]) -> bytes:
    """DataRow of text values (None is SQL NULL)."""
    parts: list[bytes] = []
    count = 0
    for value in values:
        count += 1
        if value is None:
            parts.append(b"\xff\xff\xff\xff")
        else:
            raw = value.encode()
            parts.append(struct.pack("!i", len(raw)) + raw)
    return message(b"D", struct.pack("!h", count) + b"".join(parts))


def _fields_body(fields: Mapping[str, str]) -> bytes:
    return b"".join(code.encode() + cstr(value) for code, value in fields.items()) + b"\x00"


def error_fields(err: PgError) -> dict[str, str]:
    """ErrorResponse/NoticeResponse fields of a PgError, in the server's order."""
    fields = {"S": err.severity, "V": err.severity, "C": err.sqlstate, "M": err.message}
    if err.detail:
        fields["D"] = err.detail
    if err.hint:
        fields["H"] = err.hint
    if err.position is not None:
        fields["P"] = str(err.position)
    fields.update(err.fields)
    return fields


def error_response(err: PgError) -> bytes:
    return message(b"E", _fields_body(error_fields(err)))


def notice_response(text: str, severity: str = "NOTICE", sqlstate: str = "00000",
                    detail: str | None = None) -> bytes:
    fields = {"S": severity, "V": severity, "C": sqlstate, "M": text}
    if detail:
        fields["D"] = detail
    return message(b"N", _fields_body(fields))


def parse_fields(body: bytes | memoryview) -> dict[str, str]:
    """Decode the body of an ErrorResponse or NoticeResponse into code -> value."""
    out: dict[str, str] = {}
    raw = bytes(body)
    pos = 0
    while pos < len(raw) and raw[pos] != 0:
        end = raw.index(b"\x00", pos + 1)
        out[chr(raw[pos])] = raw[pos + 1:end].decode(errors="replace")
        pos = end + 1
    return out


def query_text(body: bytes | memoryview) -> bytes:
    """The SQL text of a Query message body (without the terminating NUL)."""
    raw = bytes(body)
    end = raw.find(b"\x00")
    return raw if end < 0 else raw[:end]


def statement_text(frame_type: int, raw: bytes | memoryview) -> bytes:
    """The SQL text of a whole Query or Parse message (header included)."""
    if frame_type == F_QUERY:
        if isinstance(raw, bytes):
            end = raw.find(b"\x00", 5)
            return raw[5:end] if end >= 0 else raw[5:]
        return query_text(memoryview(raw)[5:])
    return parse_message_parts(memoryview(raw)[5:])[1]


_I32 = struct.Struct("!i")


def read_values(raw: bytes, pos: int, count: int) -> tuple[list[bytes | None], int]:
    """`count` length-prefixed values from `raw` at `pos` (a DataRow's fields, a
    Bind's parameters; length -1 is NULL -> None), and the position after them."""
    values: list[bytes | None] = []
    unpack = _I32.unpack_from
    for _ in range(count):
        size = unpack(raw, pos)[0]
        pos += 4
        if size < 0:
            values.append(None)
        else:
            values.append(raw[pos:pos + size])
            pos += size
    return values, pos


def parse_message_parts(body: bytes | memoryview) -> tuple[bytes, bytes, bytes]:
    """Split a Parse body into (statement name, query text, parameter type part)."""
    raw = bytes(body)
    name_end = raw.index(b"\x00")
    query_end = raw.index(b"\x00", name_end + 1)
    return raw[:name_end], raw[name_end + 1:query_end], raw[query_end + 1:]
