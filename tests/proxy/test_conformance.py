"""Raw-message conformance: the same bytes to Postgres directly and through the proxy
must get the same replies, byte for byte."""

from __future__ import annotations

import struct

import pytest

from proxy import protocol as p
from tests.support.wire import RawConn


def parse(sql: str, name: str = "", types: tuple[int, ...] = ()) -> bytes:
    return p.message(b"P", p.cstr(name) + p.cstr(sql) + struct.pack(f"!h{len(types)}i", len(types), *types))


def bind(params: tuple[bytes | None, ...] = (), portal: str = "", stmt: str = "",
         result_formats: tuple[int, ...] = ()) -> bytes:
    body = p.cstr(portal) + p.cstr(stmt) + struct.pack("!hh", 0, len(params))
    for value in params:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    body += struct.pack(f"!h{len(result_formats)}h", len(result_formats), *result_formats)
    return p.message(b"B", body)


def execute(portal: str = "", max_rows: int = 0) -> bytes:
    return p.message(b"E", p.cstr(portal) + struct.pack("!i", max_rows))


def describe(kind: bytes, name: str = "") -> bytes:
    return p.message(b"D", kind + p.cstr(name))


def query(sql: str) -> bytes:
    return p.message(b"Q", p.cstr(sql))


SYNC = p.message(b"S")
FLUSH = p.message(b"H")

# Each scenario: list of (bytes to send, how many messages to read or "Z<n>" to read
# up to the n-th ReadyForQuery).
SCENARIOS = {
    "flush_relays_partial_results": [
        (parse("SELECT 1") + FLUSH, 1),
        (bind() + execute() + FLUSH, 3),
        (SYNC, "Z1"),
    ],
    "bind_without_parse": [(bind(stmt="nope") + execute() + SYNC, "Z1"),
                           (query("SELECT 'still in sync'"), "Z1")],
    "error_discards_until_sync": [
        (parse("SELEC 1") + bind() + describe(b"P") + execute() + SYNC + query("SELECT 2"), "Z2"),
    ],
    "simple_query_after_parse": [(parse("SELECT 1", "s1") + query("SELECT 3"), "Z1"),
                                 (bind(stmt="s1") + execute() + SYNC, "Z1")],
    "execute_with_row_limit_then_continue": [
        (parse("SELECT g FROM generate_series(1, 7) g") + bind(portal="p1")
         + describe(b"P", "p1") + execute("p1", 3) + execute("p1", 3) + execute("p1", 0)
         + SYNC, "Z1"),
    ],
    "named_statements_and_close": [
        (parse("SELECT $1::int + 1", "inc", (23,)) + describe(b"S", "inc") + SYNC, "Z1"),
        (bind((b"41",), stmt="inc") + execute() + bind((b"1",), stmt="inc", result_formats=(1,))
         + execute() + p.message(b"C", b"Sinc\x00") + SYNC, "Z1"),
        (bind((b"1",), stmt="inc") + execute() + SYNC, "Z1"),
    ],
    "pipelined_transactions": [
        (query("BEGIN") + parse("SELECT 1/0") + bind() + execute() + SYNC
         + query("SELECT 1") + query("ROLLBACK"), "Z4"),
    ],
    "multi_statement_with_error": [
        (query("SELECT 1; SELECT 1/0; SELECT 3"), "Z1"),
        (query(""), "Z1"),
        (query("BEGIN; SELECT 1; COMMIT"), "Z1"),
    ],
    "copy_in_with_bad_row": [
        (query("CREATE TEMP TABLE ct (a int, b text)"), "Z1"),
        (query("COPY ct FROM STDIN"), 1),
        (p.message(b"d", b"1\tone\n2\ttwo\n") + p.message(b"d", b"x\tbad\n")
         + p.message(b"c"), "Z1"),
        (query("SELECT count(*) FROM ct"), "Z1"),
    ],
    "copy_in_fail_and_sync_ignored": [
        (query("CREATE TEMP TABLE cf (a int)"), "Z1"),
        (query("COPY cf FROM STDIN"), 1),
        (p.message(b"d", b"1\n") + SYNC + FLUSH + p.message(b"f", b"client gave up\x00"), "Z1"),
        (query("SELECT count(*) FROM cf"), "Z1"),
    ],
    "copy_out": [(query("COPY (SELECT g, g * 2 FROM generate_series(1, 1000) g) TO STDOUT"), "Z1")],
    "large_parse_and_bind": [
        (parse("SELECT length($1::text) + length('" + "y" * 300_000 + "')")
         + bind((b"z" * 500_000,)) + execute() + SYNC, "Z1"),
    ],
    "notice_and_warning": [(query("DO $$BEGIN RAISE NOTICE 'hello'; RAISE WARNING 'careful'; END$$"), "Z1")],
    "syntax_error_position": [(query("SELECT * FORM t"), "Z1")],
}


def run(conn: RawConn, steps) -> list[tuple[bytes, bytes]]:
    replies = []
    for data, expect in steps:
        conn.send(data)
        if isinstance(expect, int):
            for _ in range(expect):
                replies.append(conn.read_message())
        else:
            replies.extend(conn.read_until_ready(int(expect[1:])))
    return replies


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_same_replies_as_postgres(name, proxy, upstream):
    direct = RawConn.to_upstream(upstream)
    via = RawConn.to_proxy(proxy)
    try:
        direct.login()
        via.login()
        expected = run(direct, SCENARIOS[name])
        got = run(via, SCENARIOS[name])
    finally:
        direct.close()
        via.close()
    assert got == expected
    assert got[-1][0] == b"Z"


def test_startup_relays_auth_parameters_and_key(proxy):
    conn = RawConn.to_proxy(proxy)
    replies = conn.login()
    types = [m[0] for m in replies]
    assert types[0] == b"R" and b"K" in types and types[-1] == b"Z"
    params = dict(m[1][:-1].split(b"\x00", 1) for m in replies if m[0] == b"S")
    assert params[b"server_encoding"] == b"UTF8"
    conn.close()
