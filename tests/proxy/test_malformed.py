"""Malformed messages: what a client sees through the proxy is what Postgres answers
directly (its 08P01 and its words, then its continuation: the session goes on,
skips to Sync, or closes), including when the message would be intercepted (an ML
keyword, a model call) and when valid messages precede it in the same write."""

from __future__ import annotations

import struct

import pytest

from proxy import protocol as p
from tests.support.wire import RawConn

from .test_conformance import SYNC, bind, describe, execute, parse, query

TERMINATE = p.message(b"X")
ALIVE = query("SELECT 'still in sync'")


def raw_message(msg_type: bytes, body: bytes) -> bytes:
    return p.message(msg_type, body)


def comparable(replies: list[tuple[bytes, bytes]]) -> list[tuple]:
    """Replies with errors reduced to severity, SQLSTATE and message (the proxy's
    own errors carry no source file/line fields); the rest byte for byte."""
    out = []
    for msg_type, body in replies:
        if msg_type == b"E":
            fields = p.parse_fields(body)
            out.append((msg_type, fields.get("S"), fields.get("C"), fields.get("M")))
        else:
            out.append((msg_type, body))
    return out


def converse(conn: RawConn, writes: list[bytes], settle: float = 0.5,
             expect: list[int] | None = None) -> tuple[list, bool]:
    """Send each write, reading what comes after it (until EOF or `settle` seconds
    of silence; but first, if `expect` says how many replies the write got from
    Postgres, that many, however slowly they come); the replies, and whether the
    connection is closed at the end."""
    replies, closed = converse_per_write(conn, writes, settle, expect)
    return [r for per_write in replies for r in per_write], closed


#: after the replies a write is known to get, how long a silence shows nothing more comes
#: (an extra message the proxy sends comes right behind the expected ones)
EXTRA_SETTLE = 0.2


def converse_per_write(conn: RawConn, writes: list[bytes], settle: float = 0.5,
                       expect: list[int] | None = None) -> tuple[list[list], bool]:
    replies: list[list] = []
    for index, data in enumerate(writes):
        try:
            conn.send(data)
        except (BrokenPipeError, ConnectionResetError):
            break
        got: list = []
        for _ in range(expect[index] if expect and index < len(expect) else 0):
            try:
                msg = conn.read_message()
            except (ConnectionResetError, OSError):
                msg = None
            if msg is None:
                break
            got.append(msg)
        known = expect is not None and index < len(expect)
        got += conn.read_all(min(settle, EXTRA_SETTLE) if known else settle, then=EXTRA_SETTLE)
        replies.append(comparable(got))
    return replies, conn.is_closed(0.2)


def same_as_postgres(via: RawConn, direct: RawConn, writes: list[bytes]) -> list:
    """Log both in, run `writes` on each; assert equal answers; return them."""
    direct.login()
    via.login()
    try:
        expected, expected_closed = converse_per_write(direct, writes)
        got, got_closed = converse_per_write(via, writes, expect=[len(r) for r in expected])
    finally:
        direct.close()
        via.close()
    assert (got, got_closed) == (expected, expected_closed)
    return [r for per_write in expected for r in per_write]


def errors_of(replies: list) -> list[tuple]:
    return [r[1:] for r in replies if r[0] == b"E"]


NO_NUL_PARSE = raw_message(b"P", b"set search_path = public")


COPY_REFUSED = (query("CREATE TEMP TABLE fz_copy (a int)") + query("COPY fz_copy FROM STDIN")
                + p.message(b"d", b"not a number\n"))


@pytest.mark.parametrize("name, writes", [
    # the reproduction: one write, Postgres answers the Query, then 08P01 for
    # the Parse, and skips the rest (the Query and the Terminate) waiting for a Sync
    ("pipelined_query_bad_parse_query", [query("select 1") + NO_NUL_PARSE + query("select 2") + TERMINATE]),
    ("separate_writes", [query("select 1"), NO_NUL_PARSE, query("select 2"), TERMINATE]),
    ("bad_parse_then_sync", [query("select 1") + NO_NUL_PARSE + query("select 2") + SYNC, ALIVE]),
    ("query_without_nul_ml_keyword", [raw_message(b"Q", b"show model pm"), ALIVE]),
    ("query_without_nul_search_path", [raw_message(b"Q", b"set search_path = public"), ALIVE]),
    ("query_with_bytes_after_nul", [raw_message(b"Q", b"show model pm\x00junk"), ALIVE]),
    ("parse_types_cut", [raw_message(b"P", b"s\x00select 1 -- model\x00\x00\x02\x00\x00") + SYNC, ALIVE]),
    ("parse_trailing_bytes", [raw_message(b"P", b"\x00select 1 -- model\x00\x00\x00junk") + SYNC, ALIVE]),
    ("bad_type_after_query", [query("select 1") + b"Y\x00\x00\x00\x04"]),
    ("bad_length_after_query", [query("select 1") + b"Q" + struct.pack("!I", 2) + b"xx"]),
    ("huge_describe_after_parse", [parse("select 1 -- model") + b"D" + struct.pack("!I", 20000)]),
    # (found by the fuzzer: psql_copy#72665) a CopyData Postgres refuses ends the COPY
    # before it reads the next message, the start of a Query the next write completes:
    # Postgres runs it. The proxy, which cannot know that yet, had judged the Query
    # a message during COPY, sent its start on and stopped reading the client: a hang
    *((f"copy_data_refused_then_query_cut_at_{cut}",
       [COPY_REFUSED + query("SELECT 2")[:cut], query("SELECT 2")[cut:] + TERMINATE]) for cut in (1, 3, 7)),
])
def test_malformed_like_postgres(name, writes, proxy, upstream):
    same_as_postgres(RawConn.to_proxy(proxy), RawConn.to_upstream(upstream), writes)


#: abs(-5) by FunctionCall (pg_proc oid 1397, one text argument, a text result)
FUNCTION_CALL = p.message(b"F", struct.pack("!IhhI", 1397, 0, 1, 2) + b"-5" + struct.pack("!h", 0))
#: a Bind of `SELECT 1` with a parameter it does not take: 08P01, then Postgres skips to Sync
BAD_BIND = bind((b"1",))
PIPELINE = parse("SELECT 1") + bind() + execute()
#: a statement the proxy answers itself: it waits until every earlier request has been
#: answered, so that one counted in flight that Postgres never answers would hang it
INTERCEPTED = query("show model nosuch_model")


@pytest.mark.parametrize("name, writes", [
    # Postgres runs a Query or FunctionCall sent after extended-protocol messages with no
    # Sync between once their replies are out; after an error among them it skips it,
    # with no ReadyForQuery, up to the Sync
    ("bad_bind_then_function_call", [parse("SELECT 1") + BAD_BIND + execute() + FUNCTION_CALL + SYNC]),
    ("bad_bind_then_query", [parse("SELECT 1") + BAD_BIND + execute() + query("SELECT 2") + SYNC]),
    ("pipeline_then_function_call", [PIPELINE + FUNCTION_CALL + SYNC]),
    ("pipeline_then_query", [PIPELINE + query("SELECT 2") + SYNC]),
    ("pipeline_then_function_call_in_the_next_write", [PIPELINE, FUNCTION_CALL + SYNC]),
    ("pipeline_then_query_in_the_next_write", [PIPELINE, query("SELECT 2") + SYNC]),
    ("bad_bind_then_function_call_in_the_next_write", [parse("SELECT 1") + BAD_BIND, FUNCTION_CALL + SYNC]),
    # a Flush with a body is refused (08P01) like a failing extended message, then
    # skipped to the next Sync; a Sync with a body fails as a Sync (its ReadyForQuery)
    ("flush_with_body_then_query", [raw_message(b"H", b"x") + query("SELECT 2") + SYNC]),
    ("sync_with_body_then_query", [raw_message(b"S", b"x") + query("SELECT 2") + SYNC]),
    ("sync_with_body_then_query_in_the_next_write", [raw_message(b"S", b"x"), query("SELECT 2") + SYNC]),
    ("pipeline_then_flush_with_body", [PIPELINE + raw_message(b"H", b"xy"), FUNCTION_CALL + SYNC]),
])
def test_query_or_function_call_in_a_pipeline_like_postgres(name, writes, proxy, upstream):
    """What Postgres answers, and the session stays in sync: a statement the proxy
    answers itself comes next and is answered (the session had counted the skipped
    request in flight, and waited for its ReadyForQuery forever)."""
    same_as_postgres(RawConn.to_proxy(proxy), RawConn.to_upstream(upstream), writes + [ALIVE])
    conn = RawConn.to_proxy(proxy)
    conn.login()
    try:
        replies, closed = converse(conn, writes + [INTERCEPTED, ALIVE])
    finally:
        conn.close()
    assert ("ERROR", "42704", 'model "nosuch_model" does not exist') in errors_of(replies)
    assert replies[-1] == (b"Z", b"I") and not closed


def test_bad_parse_in_one_write_is_08P01_after_the_first_result(proxy, upstream):
    replies = same_as_postgres(RawConn.to_proxy(proxy), RawConn.to_upstream(upstream),
                               [query("select 1") + NO_NUL_PARSE + query("select 2") + TERMINATE])
    assert [r[0] for r in replies] == [b"T", b"D", b"C", b"Z", b"E"]
    assert errors_of(replies) == [("ERROR", "08P01", "invalid string in message")]


def test_query_without_nul_is_refused_not_run(proxy, upstream):
    replies = same_as_postgres(RawConn.to_proxy(proxy), RawConn.to_upstream(upstream),
                               [raw_message(b"Q", b"show model pm"), ALIVE])
    assert errors_of(replies) == [("ERROR", "08P01", "invalid string in message")]
    assert replies[-1][0] == b"Z"


@pytest.mark.parametrize("bad", [
    raw_message(b"B", b"\x00m1\x00\x00\x00\x00\x05"),  # 5 parameters, none sent
    raw_message(b"B", b"\x00m1\x00\x00\x00\x00\x00\x7f\xff"),  # 32767 result formats, none sent
    raw_message(b"B", b"\x00m1"),  # no NUL after the statement name
    raw_message(b"D", b"Sm1"),
    raw_message(b"D", b"Xm1\x00"),
    raw_message(b"C", b"Pm1\x00extra"),
    raw_message(b"E", b"\x00\x00\x00"),
    raw_message(b"H", b"x"),
])
def test_utility_statement_of_the_proxy_refuses_what_postgres_refuses(bad, proxy, upstream):
    """DROP MODEL prepared through the proxy (answered by mlproxy itself) refuses a
    malformed Bind/Describe/Close/Execute/Flush as Postgres refuses it for any
    statement without parameters (compared with `SELECT 1` prepared directly)."""
    via, direct = RawConn.to_proxy(proxy), RawConn.to_upstream(upstream)
    via.login()
    direct.login()
    try:
        expected = converse(direct, [parse("select 1", "m1") + bad + execute() + SYNC, ALIVE])
        got = converse(via, [parse("drop model if exists nosuch_model", "m1") + bad + execute() + SYNC,
                             ALIVE], expect=[1, 4])
    finally:
        via.close()
        direct.close()
    assert errors_of(got[0]) == errors_of(expected[0]) and errors_of(got[0])[0][1] == "08P01"
    assert got[0][-5:] == expected[0][-5:]  # then the session goes on: T D C Z of ALIVE
    assert not got[1]


@pytest.mark.parametrize("bad", [raw_message(b"B", b"\x00m1"), raw_message(b"E", b"\x00\x00\x00")])
def test_terminate_while_skipping_to_sync_ends_the_session_like_postgres(bad, proxy, upstream):
    """Postgres ends the session at a Terminate even while it skips to Sync after an
    error: so does the proxy when it answered the error itself (DROP MODEL prepared
    through it; corpus terminate_after_bad_string_then_cut_stream is the case of an
    error of Postgres' during a takeover). The proxy had dropped the Terminate with
    the skipped messages and waited for a Sync that never came."""
    via, direct = RawConn.to_proxy(proxy), RawConn.to_upstream(upstream)
    via.login()
    direct.login()
    try:
        expected = converse(direct, [parse("select 1", "m1") + bad + execute() + TERMINATE])
        got = converse(via, [parse("drop model if exists nosuch_model", "m1") + bad + execute() + TERMINATE])
    finally:
        via.close()
        direct.close()
    assert errors_of(got[0]) == errors_of(expected[0]) and errors_of(got[0])[0][1] == "08P01"
    assert expected[1] and got[1]  # both closed


def test_bad_type_after_an_intercepted_statement(proxy):
    """The statement the proxy answers itself is answered, then the bad type byte
    gets Postgres' FATAL and the connection closes (as Postgres does after it
    answered the messages in front of it)."""
    conn = RawConn.to_proxy(proxy)
    conn.login()
    replies, closed = converse(conn, [query("show model nosuch_model") + b"\x01"], expect=[3])
    assert replies[-2:] == [(b"Z", b"I"), (b"E", "FATAL", "08P01", "invalid frontend message type 1")]
    assert ("ERROR", "42704", 'model "nosuch_model" does not exist') in errors_of(replies)
    assert closed


def test_unexpected_message_during_copy_in_an_intercepted_query(proxy, upstream):
    """COPY FROM STDIN inside a query string the proxy splits (it holds an ML
    statement): a message other than CopyData/CopyDone/CopyFail/Flush/Sync fails
    the COPY and ends the connection as Postgres does (the proxy waited forever)."""
    setup = query("CREATE TEMP TABLE copy_target (a int)")
    copy_data = p.message(b"d", b"1\n") + SYNC + query("SELECT 1")
    via, direct = RawConn.to_proxy(proxy), RawConn.to_upstream(upstream)
    via.login()
    direct.login()
    try:
        got = converse(via, [setup, query("SHOW MODEL ALL; COPY copy_target FROM STDIN"), copy_data, ALIVE],
                       expect=[2, 1, 2])
        expected = converse(direct, [setup, query("SELECT 1; COPY copy_target FROM STDIN"), copy_data, ALIVE])
    finally:
        via.close()
        direct.close()
    assert errors_of(got[0]) == errors_of(expected[0]) == [
        ("ERROR", "08P01", "unexpected message type 0x51 during COPY from stdin"),
        ("FATAL", "08P01", "terminating connection because protocol synchronization was lost")]
    assert got[0][-3:] == expected[0][-3:] and got[1] and expected[1]


def test_nothing_escapes_a_session(proxy, upstream):
    """After the reproductions (run again here), the proxy's log has no exception
    that escaped a session (asyncio's reports of them) and no last-resort catch.
    Only what this test adds to the shared proxy's log is read: other tests end
    upstream backends, and the catalog pool's reconnection logs its own causes."""
    before = len(proxy.read_log())
    for writes in ([query("select 1") + NO_NUL_PARSE + query("select 2") + TERMINATE],
                   [raw_message(b"Q", b"show model pm"), ALIVE],
                   [query("show model nosuch_model") + b"\x01"],
                   [parse("drop model if exists nosuch_model", "m1")
                    + raw_message(b"B", b"\x00m1\x00\x00\x00\x00\x00\x7f\xff") + SYNC, ALIVE]):
        conn = RawConn.to_proxy(proxy)
        conn.login()
        converse(conn, writes)
        conn.close()
    log = proxy.read_log()[before:]
    for sign in ("Task exception was never retrieved", "Exception in callback", "Fatal error: protocol",
                 "internal error while", "Traceback"):
        assert sign not in log
