"""PostgreSQL v3 protocol vocabulary: message codes, limits, and message builders.

Pure functions over bytes (no IO). The relay never re-encodes messages it forwards;
these builders exist for the few messages the proxy speaks itself (errors, notices,
the replies of intercepted statements).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .errors import PROTOCOL_VIOLATION, PgError
from .observe.stats import STATS

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
#: The same once authentication is over: Postgres' main loop refuses a PasswordMessage
#: ('p') by its type byte alone (FATAL "invalid frontend message type 112").
SESSION_LIMITS: dict[int, int] = {t: n for t, n in FRONTEND_LIMITS.items() if t != F_PASSWORD}
#: What Postgres reads during COPY FROM STDIN; any other type byte is refused on its
#: own (08P01 "unexpected message type 0x.. during COPY from stdin", then FATAL).
COPY_IN_TYPES = frozenset((F_COPY_DATA, F_COPY_DONE, F_COPY_FAIL, F_FLUSH, F_SYNC))

_HEADER = struct.Struct("!cI")


def message(msg_type: bytes, body: bytes = b"") -> bytes:
    """Frame one typed message: type byte, int32 length (incl. itself), body."""
    return _HEADER.pack(msg_type, len(body) + 4) + body


def cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


#: the statement and portal of mlproxy's own queries (upstream_ops.collect)
_OWN = cstr("__mlproxy_collect")
_CLOSE_OWN = message(b"C", b"S" + _OWN) + message(b"C", b"P" + _OWN)


def own_query(statements: str | Sequence[str]) -> bytes:
    """The messages that run `statements` (one SQL statement each) for mlproxy, in
    one implicit transaction as one simple Query of them would run: Parse, Bind,
    Describe, Execute of each under a name of mlproxy's own, then one Sync. Not a
    simple Query, which would drop the client's unnamed statement and portal
    (exec_simple_query). Each name is closed before use (a failure left it open:
    Postgres skips to the Sync) and after."""
    if isinstance(statements, str):
        statements = (statements,)
    out = [_CLOSE_OWN]
    for sql in statements:
        out += (message(b"P", _OWN + cstr(sql) + b"\x00\x00"),
                message(b"B", _OWN + _OWN + b"\x00\x00\x00\x00\x00\x00"),
                message(b"D", b"P" + _OWN), message(b"E", _OWN + b"\x00\x00\x00\x00"),
                _CLOSE_OWN)
    out.append(message(b"S"))
    return b"".join(out)


#: What fails the client's transaction block upstream when mlproxy failed a statement
#: of the block where Postgres did not (a model call's result, tracker.fail_block; an
#: error mlproxy answered a Query with, Takeover.query_ends): an error of Postgres'
#: own, in its log with this text; the client never sees it. (A query of mlproxy's
#: own, which leaves the client's unnamed statement alone.)
FAIL_BLOCK_QUERY = own_query(
    "SELECT 'mlproxy: a statement failed in this transaction block; it is aborted'::int")


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


def row_description(columns: Sequence[tuple[str, int]],
                    formats: Sequence[int] | None = None) -> bytes:
    """RowDescription for (name, type oid) columns, in text format unless `formats`
    gives each column's format code."""
    body = [struct.pack("!h", len(columns))]
    for index, (name, oid) in enumerate(columns):
        code = formats[index] if formats else 0
        body.append(cstr(name) + struct.pack("!ihihih", 0, 0, oid, -1, -1, code))
    return message(b"T", b"".join(body))


def data_row(values: Iterable[str | bytes | None]) -> bytes:
    """DataRow of text values, or of values already encoded (bytes); None is SQL NULL."""
    parts: list[bytes] = []
    count = 0
    for value in values:
        count += 1
        if value is None:
            parts.append(b"\xff\xff\xff\xff")
        else:
            raw = value if type(value) is bytes else value.encode()
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
    STATS.error("mlproxy", err.sqlstate)  # (every error mlproxy itself answers is built here)
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
    """The SQL text of a Query message body (validated as Postgres does)."""
    return decode_query(body)


def statement_text(frame_type: int, raw: bytes | memoryview) -> bytes:
    """The SQL text of a whole Query or Parse message (header included); raises
    MalformedMessage where Postgres would reject the message."""
    if frame_type == F_QUERY:
        return decode_query(memoryview(raw)[5:])
    return decode_parse(memoryview(raw)[5:]).query


# -- validated decoders of frontend messages -------------------------------------------
# Postgres reads a message's body with pq_getmsg* (src/backend/libpq/pqformat.c): each
# read past the end, a string without its NUL, or bytes left over is an ERROR with
# SQLSTATE 08P01 and one of these texts. The decoders below read the same fields in
# the same order, so a message they refuse is one Postgres refuses, with its words.
NO_DATA_LEFT = "no data left in message"
INSUFFICIENT_DATA = "insufficient data left in message"
INVALID_STRING = "invalid string in message"
INVALID_FORMAT = "invalid message format"


class MalformedMessage(PgError):
    """A frontend message whose body Postgres would refuse (an ERROR, not FATAL:
    the session goes on, skipping to Sync in the extended protocol)."""

    def __init__(self, message: str) -> None:
        super().__init__(PROTOCOL_VIOLATION, message)


class MessageReader:
    """pq_getmsg* over one message body: reads raise MalformedMessage as Postgres'."""

    __slots__ = ("raw", "pos")

    def __init__(self, body: bytes | memoryview) -> None:
        self.raw = body if type(body) is bytes else bytes(body)
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.raw):
            raise MalformedMessage(NO_DATA_LEFT)
        self.pos += 1
        return self.raw[self.pos - 1]

    def _take(self, size: int) -> bytes:
        if size < 0 or size > len(self.raw) - self.pos:
            raise MalformedMessage(INSUFFICIENT_DATA)
        self.pos += size
        return self.raw[self.pos - size:self.pos]

    def int16(self) -> int:
        return _I16.unpack(self._take(2))[0]

    def uint16(self) -> int:
        """A count: Postgres reads them as unsigned (0x8000 is 32768, not negative)."""
        return _U16.unpack(self._take(2))[0]

    def int32(self) -> int:
        return _I32.unpack(self._take(4))[0]

    def bytes(self, size: int) -> bytes:
        return self._take(size)

    def cstring(self) -> bytes:
        end = self.raw.find(b"\x00", self.pos)
        if end < 0:
            raise MalformedMessage(INVALID_STRING)
        text, self.pos = self.raw[self.pos:end], end + 1
        return text

    def end(self) -> None:
        if self.pos != len(self.raw):
            raise MalformedMessage(INVALID_FORMAT)


@dataclass(frozen=True, slots=True)
class ParseMessage:
    name: bytes
    query: bytes
    types: tuple[int, ...]
    tail: bytes  # the parameter type section as sent (count, then the OIDs)


@dataclass(frozen=True, slots=True)
class BindMessage:
    portal: bytes
    statement: bytes
    param_formats: tuple[int, ...]
    values: tuple[bytes | None, ...]
    result_formats: tuple[int, ...]
    result_section: int  # offset of the result-format section in the body

    @property
    def formats(self) -> list[int]:
        """One format code per parameter (the protocol's shorthand spelled out)."""
        codes, count = self.param_formats, len(self.values)
        return list(codes) * count if len(codes) == 1 else (list(codes) or [0] * count)


def decode_query(body: bytes | memoryview) -> bytes:
    """Query: the statement text."""
    reader = MessageReader(body)
    text = reader.cstring()
    reader.end()
    return text


def query_runs(raw: bytes | memoryview) -> bool:
    """Does Postgres run this whole Query message (exec_simple_query, which drops the
    unnamed statement first)? Not one it refuses as it reads it (PostgresMain): a
    malformed body (08P01), or text not valid in the client encoding (22021; taken
    to be UTF-8, as mlproxy's parsing of statements does)."""
    try:
        decode_query(memoryview(raw)[5:]).decode()
    except (MalformedMessage, UnicodeDecodeError):
        return False
    return True


def decode_parse(body: bytes | memoryview) -> ParseMessage:
    """Parse: statement name, text, parameter type OIDs (as exec_parse_message reads them)."""
    reader = MessageReader(body)
    name = reader.cstring()
    query = reader.cstring()
    start = reader.pos
    count = reader.uint16()
    types = tuple(reader.int32() & 0xFFFFFFFF for _ in range(count))
    tail = reader.raw[start:reader.pos]
    reader.end()
    return ParseMessage(name, query, types, tail)


def bind_names(body: bytes | memoryview) -> tuple[bytes, bytes]:
    """Bind: (portal, statement) names, the part Postgres reads first."""
    reader = MessageReader(body)
    return reader.cstring(), reader.cstring()


def decode_bind(body: bytes | memoryview, *, statement_params: int | None = None) -> BindMessage:
    """Bind, read as exec_bind_message reads it. `statement_params`: the statement's
    parameter count, when known (a mismatch is then Postgres' own error)."""
    reader = MessageReader(body)
    portal = reader.cstring()
    statement = reader.cstring()
    nformats = reader.uint16()
    formats = tuple(reader.int16() for _ in range(nformats))
    count = reader.uint16()
    if nformats > 1 and nformats != count:
        raise MalformedMessage(f"bind message has {nformats} parameter formats but {count} parameters")
    if statement_params is not None and count != statement_params:
        raise MalformedMessage(
            f"bind message supplies {count} parameters, but prepared statement "
            f"\"{statement.decode(errors='replace')}\" requires {statement_params}")
    values: list[bytes | None] = []
    for _ in range(count):
        size = reader.int32()
        values.append(None if size == -1 else reader.bytes(size))
    section = reader.pos
    nresults = reader.uint16()
    results = tuple(reader.int16() for _ in range(nresults))
    reader.end()
    return BindMessage(portal, statement, formats, tuple(values), results, section)


def decode_target(body: bytes | memoryview) -> tuple[bytes, bytes]:
    """Describe or Close: (kind byte, name); the kind is checked by the caller."""
    reader = MessageReader(body)
    kind = reader.byte()
    name = reader.cstring()
    reader.end()
    return bytes((kind,)), name


def decode_execute(body: bytes | memoryview) -> tuple[bytes, int]:
    """Execute: (portal, row limit)."""
    reader = MessageReader(body)
    portal = reader.cstring()
    limit = reader.int32()
    reader.end()
    return portal, limit


def decode_empty(body: bytes | memoryview) -> None:
    """Sync, Flush, Terminate, CopyDone: nothing may follow the header."""
    MessageReader(body).end()


def _decode_describe(body: bytes | memoryview) -> tuple[bytes, bytes]:
    kind, name = decode_target(body)
    if kind not in (b"S", b"P"):
        raise MalformedMessage(f"invalid DESCRIBE message subtype {kind[0]}")
    return kind, name


def _decode_close(body: bytes | memoryview) -> tuple[bytes, bytes]:
    kind, name = decode_target(body)
    if kind not in (b"S", b"P"):
        raise MalformedMessage(f"invalid CLOSE message subtype {kind[0]}")
    return kind, name


def check_frontend(msg_type: int, body: bytes | memoryview) -> None:
    """Raise MalformedMessage if Postgres would refuse this message's body for a
    reason it can see without the session's state (whether the statement a Bind
    names takes that many parameters is judged where it is known)."""
    decoder = _DECODERS.get(msg_type)
    if decoder is not None:
        decoder(body)


_DECODERS = {F_QUERY: decode_query, F_PARSE: decode_parse, F_BIND: decode_bind,
             F_DESCRIBE: _decode_describe, F_CLOSE: _decode_close, F_EXECUTE: decode_execute,
             F_SYNC: decode_empty, F_FLUSH: decode_empty, F_COPY_DONE: decode_empty}


_I32 = struct.Struct("!i")
_I16 = struct.Struct("!h")
_U16 = struct.Struct("!H")


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
    """Split a Parse body into (statement name, query text, parameter type part);
    raises MalformedMessage where Postgres would refuse it."""
    parsed = decode_parse(body)
    return parsed.name, parsed.query, parsed.tail
