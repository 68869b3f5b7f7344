"""Running SQL on the client's own upstream session during a takeover.

ML statements are carried out on the session of the client that issued them, so
Postgres applies that client's privileges, search_path and settings. These helpers
send SQL through a `Takeover` and either collect its result (for the proxy's own
use; extended-protocol messages under a name of mlproxy's own, which leave the
client's unnamed statement alone) or relay it to the client (a simple Query, for a
client's Query; with command tags and error positions adjusted to what the client
wrote).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .. import protocol as p
from ..errors import PgError
from ..intercept import Takeover


def sql_literal(value: str | None) -> str:
    """A string constant that means `value` whatever standard_conforming_strings is."""
    if value is None:
        return "NULL"
    if "\\" in value:
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + value.replace("'", "''") + "'"


def sql_text_array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(sql_literal(v) for v in values) + "]::text[]"


def decode_data_row(body: bytes | memoryview) -> list[str | None]:
    raw = bytes(body)
    values, _ = p.read_values(raw, 2, struct.unpack_from("!h", raw)[0])
    return [None if v is None else v.decode() for v in values]


def decode_row_description(body: bytes | memoryview) -> list[tuple[str, int, int]]:
    """(name, type oid, type modifier) of each column."""
    raw = bytes(body)
    count = struct.unpack_from("!h", raw)[0]
    pos, out = 2, []
    for _ in range(count):
        end = raw.index(b"\x00", pos)
        name = raw[pos:end].decode()
        _table, _col, oid, _size, typmod, _fmt = struct.unpack_from("!ihihih", raw, end + 1)
        out.append((name, oid, typmod))
        pos = end + 1 + 18
    return out


def error_from_fields(fields: dict[str, str]) -> PgError:
    known = {"S", "V", "C", "M", "D", "H", "P"}
    return PgError(fields.get("C", "XX000"), fields.get("M", ""),
                   position=int(fields["P"]) if fields.get("P") else None,
                   hint=fields.get("H"), detail=fields.get("D"),
                   severity=fields.get("V", fields.get("S", "ERROR")),
                   fields={k: v for k, v in fields.items() if k not in known})


@dataclass
class QueryResult:
    columns: list[tuple[str, int, int]] = field(default_factory=list)
    rows: list[list[str | None]] = field(default_factory=list)
    tag: str = ""
    error: PgError | None = None
    notices: list[bytes] = field(default_factory=list)


async def collect(takeover: Takeover, statements: str | Sequence[str]) -> QueryResult:
    """Run `statements` (`protocol.own_query`) and collect the result (the last one's);
    notices are kept to relay later. Reads through the ReadyForQuery."""
    takeover.send_server(p.own_query(statements))
    result = QueryResult()
    while True:
        msg = await takeover.server_message()
        t = msg.type
        if t == p.B_DATA_ROW:
            result.rows.append(decode_data_row(msg.body))
        elif t == p.B_ROW_DESCRIPTION:
            result.columns = decode_row_description(msg.body)
        elif t == p.B_COMMAND_COMPLETE:
            result.tag = bytes(msg.body).rstrip(b"\x00").decode()
        elif t == p.B_ERROR:
            result.error = error_from_fields(p.parse_fields(msg.body))
        elif t == p.B_NOTICE:
            result.notices.append(bytes(msg.raw))
        elif t == p.B_READY_FOR_QUERY:
            return result
        elif t == p.B_COPY_IN:  # cannot happen for our queries; never leave the server waiting
            takeover.send_server(p.message(b"f", p.cstr("mlproxy does not send COPY data here")))


#: the replies to own_query's messages themselves, not to its statement
_OWN_QUERY_REPLIES = frozenset((p.B_PARSE_COMPLETE, p.B_BIND_COMPLETE, p.B_CLOSE_COMPLETE, p.B_NO_DATA))


async def relay(takeover: Takeover, sql: str, *, tag: str | None = None,
                rows: bool = True, position: Callable[[int], int] | None = None,
                hide_context: bool = False, extended: bool = False) -> bool:
    """Run `sql` and relay its replies to the client (not the ReadyForQuery).

    `tag` replaces the CommandComplete tag, `rows=False` drops the result rows (a
    utility-statement reply), `position` maps error positions into the client's text,
    `hide_context` drops the error context (it would show mlproxy's internals).
    `extended`: for a client's extended-protocol statement (one SQL statement), sent
    as `own_query`, not as a simple Query, which would drop the client's unnamed
    statement. Returns False when the statement failed.
    """
    takeover.send_server(p.own_query(sql) if extended else p.message(b"Q", p.cstr(sql)))
    ok = True
    while True:
        msg = await takeover.server_message()
        t = msg.type
        if t == p.B_READY_FOR_QUERY:
            return ok
        if extended and t in _OWN_QUERY_REPLIES:
            continue
        if t == p.B_ERROR:
            ok = False
            if position is not None or hide_context:
                err = error_from_fields(p.parse_fields(msg.body))
                if err.position is not None and position is not None:
                    err.position = position(err.position)
                if hide_context:  # the PL/pgSQL lines of mlproxy's own catalog functions
                    err.fields.pop("W", None)
                takeover.send_client(p.error_response(err))
                continue
        elif t == p.B_COMMAND_COMPLETE and tag is not None:
            takeover.send_client(p.command_complete(tag))
            continue
        elif not rows and t in (p.B_ROW_DESCRIPTION, p.B_DATA_ROW):
            continue
        takeover.send_client(msg.raw)
        if t == p.B_COPY_IN:  # COPY FROM STDIN in a multi-statement string: pump the data
            while True:
                data = await takeover.client_message()
                takeover.send_server(data.raw)
                # CopyDone and CopyFail end it; Postgres ignores Flush and Sync here,
                # and any other message fails the COPY (08P01 "unexpected message type")
                if data.type not in (p.F_COPY_DATA, p.F_FLUSH, p.F_SYNC):
                    break
