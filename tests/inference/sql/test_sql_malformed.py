"""Malformed messages about statements that call models: the client sees what
Postgres answers directly (its 08P01 and words, the session going on), where the
proxy rewrites the statement (select list), computes predictions per execution
(general path), or answers a simple Query itself."""

from __future__ import annotations

import pytest

from proxy import protocol as p
from tests.proxy.test_conformance import SYNC, bind, execute, parse, query
from tests.proxy.test_malformed import converse, converse_per_write, errors_of
from tests.support.wire import RawConn

from .conftest import DATABASE

STREAMING = "SELECT id, predict_price(rooms, area, city) FROM houses WHERE id < 4 ORDER BY id"
GENERAL = "SELECT id FROM houses WHERE id = $1 AND predict_price(rooms, area, city) > 0"
ALIVE = query("SELECT 'still in sync'")


def bind_raw(body: bytes) -> bytes:
    return p.message(b"B", body)


def side_by_side(suite, upstream, writes: list[bytes]) -> tuple:
    """What Postgres and the proxy answer to the same writes, asserted equal."""
    direct, via = RawConn.to_upstream(upstream), RawConn.to_proxy(suite.proxy)
    direct.login(database=DATABASE)
    via.login(database=DATABASE)
    try:
        expected = converse_per_write(direct, writes)
        got = converse_per_write(via, writes, expect=[len(r) for r in expected[0]])
    finally:
        direct.close()
        via.close()
    assert got == expected
    return got


def via_proxy(suite, writes: list[bytes], expect: list[int] | None = None) -> list[list]:
    """What the proxy answers to each write (`expect`: how many replies each gets, as
    converse_per_write takes it); the session must not have closed."""
    via = RawConn.to_proxy(suite.proxy)
    via.login(database=DATABASE)
    try:
        replies, closed = converse_per_write(via, writes, expect=expect)
    finally:
        via.close()
    assert not closed
    return replies


def compare(suite, upstream, writes: list[bytes]) -> list:
    got = side_by_side(suite, upstream, writes)
    assert not got[1]  # the session goes on
    return [r for per_write in got[0] for r in per_write]


CASES = {
    # the reproductions
    "result_format_count_without_formats": (
        [parse(STREAMING, "s1") + SYNC,
         bind_raw(b"\x00s1\x00\x00\x00\x00\x00\x7f\xff") + execute() + SYNC, ALIVE],
        "insufficient data left in message"),
    "describe_without_nul": (
        [parse(STREAMING, "s1") + SYNC, p.message(b"D", b"Ss1") + SYNC, ALIVE],
        "invalid string in message"),
    "general_bind_declares_5_sends_none": (
        [parse(GENERAL, "s1") + SYNC, bind_raw(b"\x00s1\x00\x00\x00\x00\x05") + execute() + SYNC, ALIVE],
        'bind message supplies 5 parameters, but prepared statement "s1" requires 1'),
    "query_without_nul": ([p.message(b"Q", STREAMING.encode()), ALIVE], "invalid string in message"),
    # the same class elsewhere
    "general_bind_declares_1_sends_none": (
        [parse(GENERAL, "s1") + SYNC, bind_raw(b"\x00s1\x00\x00\x00\x00\x01") + execute() + SYNC, ALIVE],
        "insufficient data left in message"),
    "general_unnamed_parse_with_bad_bind": (
        [parse(GENERAL) + bind_raw(b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x09") + execute() + SYNC, ALIVE],
        "insufficient data left in message"),
    "general_parse_types_cut": (
        [p.message(b"P", b"s1\x00" + GENERAL.encode() + b"\x00\x00\x01\x00") + SYNC, ALIVE],
        "insufficient data left in message"),
    "streaming_bind_trailing_bytes": (
        [parse(STREAMING, "s1") + SYNC, bind_raw(b"\x00s1\x00\x00\x00\x00\x00\x00\x00junk") + execute() + SYNC,
         ALIVE],
        "invalid message format"),
    "streaming_execute_cut": (
        [parse(STREAMING, "s1") + SYNC, bind_raw(b"\x00s1\x00\x00\x00\x00\x00\x00\x00")
         + p.message(b"E", b"\x00\x00") + SYNC, ALIVE],
        "insufficient data left in message"),
    "streaming_close_bad_subtype": (
        [parse(STREAMING, "s1") + SYNC, p.message(b"C", b"Qs1\x00") + SYNC, ALIVE],
        "invalid CLOSE message subtype 81"),
    "streaming_parse_and_bad_bind_in_one_write": (
        [parse(STREAMING, "s1") + bind_raw(b"\x00s1\x00\x00\x00\x00\x00\x7f\xff") + execute() + SYNC
         + query("SELECT 2"), ALIVE],
        "insufficient data left in message"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_model_statement_like_postgres(name, suite, upstream):
    writes, message = CASES[name]
    replies = compare(suite, upstream, writes)
    assert ("ERROR", "08P01", message) in errors_of(replies)
    assert replies[-1] == (b"Z", b"I")


def test_prediction_still_served_after_a_malformed_bind(suite):
    """After the 08P01 the prepared statement still works through the proxy."""
    via = RawConn.to_proxy(suite.proxy)
    via.login(database=DATABASE)
    try:
        replies, closed = converse(via, [
            parse(STREAMING, "s1") + SYNC,
            bind_raw(b"\x00s1\x00\x00\x00\x00\x00\x7f\xff") + execute() + SYNC,
            bind_raw(b"\x00s1\x00\x00\x00\x00\x00\x00\x00") + execute() + SYNC], expect=[2, 2, 6])
    finally:
        via.close()
    rows = [r for r in replies if r[0] == b"D"]
    assert len(rows) == 3 and not closed
    assert errors_of(replies) == [("ERROR", "08P01", "insufficient data left in message")]


@pytest.mark.parametrize("bad", [b"\x89", b"\xc3o", b"\xe2\x82", b"\xf8"])
def test_statement_not_utf8_gets_postgres_words(bad, suite, upstream):
    """Under client_encoding UTF8, a statement calling a model with invalid UTF-8 in
    it gets Postgres' own 22021 message (naming the same bytes), then goes on."""
    sql = STREAMING.replace("ORDER BY", "/* " + "x" + " */ ORDER BY").encode().replace(b"x", bad)
    replies = compare(suite, upstream, [p.message(b"Q", sql + b"\x00"), ALIVE])
    assert [e[1] for e in errors_of(replies)] == ["22021"]


def test_proxy_replies_stay_hidden_when_the_pipeline_closes_everything(suite, upstream):
    """Found by mutating sessions: in one write, a transaction, a general-path Parse
    and Bind (mlproxy's own messages run before the Bind, their replies hidden), a
    malformed Execute, a Close of the statement, Sync and COMMIT: the Close and the
    COMMIT left nothing rewritten, the tracking stopped while mlproxy's replies were
    still to come, and they reached the client (COPY 1, CloseComplete)."""
    write = (query("BEGIN") + parse(GENERAL, "g2") + bind_raw(b"\x00g2\x00\x00\x00\x00\x01\x00\x00\x00\x011\x00\x00")
             + p.message(b"E", b"\x00\x00\x00\x00\x00\x03") + p.message(b"C", b"Sg2\x00") + SYNC
             + query("COMMIT"))
    replies = compare(suite, upstream, [write, ALIVE])
    assert [r[0] for r in replies][:6] == [b"C", b"Z", b"1", b"2", b"E", b"Z"]
    assert errors_of(replies) == [("ERROR", "08P01", "invalid message format")]


# A model-call Query in the middle of an unsynced extended batch (found by mutating
# sessions): after an error there Postgres skips it up to the Sync; without one it
# runs it once the batch's replies are out, and it ends the batch as a Sync would.
@pytest.mark.parametrize("sql", [STREAMING, GENERAL.replace("$1", "2")])
@pytest.mark.parametrize("split", [False, True])
def test_model_query_while_skipping_to_sync_is_ignored_like_postgres(sql, split, suite, upstream):
    failing = parse("SELEC 1") + bind() + execute()
    writes = [failing, query(sql) + SYNC, ALIVE] if split else [failing + query(sql) + SYNC, ALIVE]
    replies = compare(suite, upstream, writes)
    assert [r[0] for r in replies] == [b"E", b"Z", b"T", b"D", b"C", b"Z"]
    assert errors_of(replies)[0][1] == "42601"


@pytest.mark.parametrize("sql, rows", [(STREAMING, 3), (GENERAL.replace("$1", "2"), 1)])
def test_unnamed_model_statement_outlives_a_query_skipped_to_sync(sql, rows, suite):
    """A Query Postgres ignores while skipping to Sync (its error already out)
    drops nothing: the unnamed model statement is still served after the Sync. The
    proxy had noted the ignored Query as run, forgot the statement it drops, and
    awaited a reply that never came."""
    via = RawConn.to_proxy(suite.proxy)
    via.login(database=DATABASE)
    try:
        replies, closed = converse_per_write(via, [
            parse(sql) + SYNC, execute("no_such_portal"), query("SELECT 2") + SYNC,
            bind() + execute() + SYNC, ALIVE])
    finally:
        via.close()
    assert [[r[0] for r in per_write] for per_write in replies] == [
        [b"1", b"Z"], [b"E"], [b"Z"], [b"2"] + [b"D"] * rows + [b"C", b"Z"], [b"T", b"D", b"C", b"Z"]]
    assert errors_of(replies[1]) == [("ERROR", "34000", 'portal "no_such_portal" does not exist')]
    assert not closed


@pytest.mark.parametrize("sql, rows", [(STREAMING, 3), (GENERAL.replace("$1", "2"), 1)])
def test_model_query_after_unsynced_messages_comes_after_their_replies(sql, rows, suite, upstream):
    """The replies owed to the batch (here binary rows, which mlproxy's own queries
    once read as theirs) reach the client first, exactly as Postgres sends them; then
    the Query's result and its ReadyForQuery; the Sync after it answers on its own."""
    batch = parse("SELECT g FROM generate_series(1, 3) g", "s1") + bind(stmt="s1", result_formats=(1,)) \
        + execute()
    direct = RawConn.to_upstream(upstream)
    direct.login(database=DATABASE)
    try:
        (expected,), _ = converse_per_write(direct, [batch + p.message(b"H")])
    finally:
        direct.close()
    via = RawConn.to_proxy(suite.proxy)
    via.login(database=DATABASE)
    try:
        (got, alive), closed = converse_per_write(via, [batch + query(sql) + SYNC, ALIVE],
                                                  expect=[len(expected) + rows + 4, 4])
    finally:
        via.close()
    assert got[:len(expected)] == expected
    assert [r[0] for r in got[len(expected):]] == [b"T"] + [b"D"] * rows + [b"C", b"Z", b"Z"]
    assert [r[0] for r in alive] == [b"T", b"D", b"C", b"Z"] and not closed


PREPARED = [(parse(STREAMING, "s1"), bind(stmt="s1") + execute() + SYNC),
            (parse(GENERAL, "g1"), bind((b"2",), stmt="g1") + execute() + SYNC)]
REFUSED_COPY = (query("CREATE TEMP TABLE fz_copy (a int)") + query("COPY fz_copy FROM STDIN")
                + p.message(b"d", b"not a number\n"))


@pytest.mark.parametrize("cut, replies", [
    (query("SELECT 2"), [b"T", b"D", b"C", b"Z"]),
    (parse("SELECT 2") + bind() + execute() + SYNC, [b"1", b"2", b"D", b"C", b"Z"])],
    ids=["query", "extended"])
@pytest.mark.parametrize("prepared, run", PREPARED, ids=["streaming", "general"])
def test_message_cut_after_a_refused_copy_data_in_a_rewriting_session(prepared, run, cut, replies,
                                                                      suite, upstream):
    """A CopyData Postgres refuses ends the COPY before Postgres reads the next
    message, which the next write completes: Postgres runs it, and so it does
    through a session with a model statement prepared (found by the fuzzer in a
    plain session, for a Query: the proxy judged it a message during COPY and
    stopped reading the client; a Parse, which the proxy may rewrite, kept doing
    so in a rewriting session). The statement is still served after it."""
    writes = [prepared + SYNC, REFUSED_COPY + cut[:3], cut[3:]]
    got, _ = side_by_side(suite, upstream, writes + [ALIVE])
    assert [r[0] for r in got[1] + got[2]] == [b"C", b"Z", b"G", b"E", b"Z", *replies]
    kinds = [r[0] for r in via_proxy(suite, writes + [run])[3]]
    assert kinds[0] == b"2" and set(kinds[1:-2]) == {b"D"} and kinds[-2:] == [b"C", b"Z"]


@pytest.mark.parametrize("at", [3, None], ids=["cut", "whole"])
@pytest.mark.parametrize("prepared, run", PREPARED, ids=["streaming", "general"])
def test_model_bind_in_a_copy_postgres_is_still_in_fails_it_like_postgres(prepared, run, at, suite, upstream):
    """A model statement's Bind right behind a COPY FROM STDIN and a CopyData Postgres
    takes: Postgres is still in the COPY and answers its type byte (08P01, then
    FATAL), as directly. Cut there, the type byte went ahead; whole, the takeover a
    general-path Bind begins gives it back when the COPY begins, to go on as sent
    (it was taken over again, and waited for the COPY's end: the session hung; found
    by the fuzzer's model_psycopg_copy seed). (The proxy closes the client's socket
    with nothing unread, so the last write still goes out where Postgres' reset
    refused it: the replies are compared.)"""
    copy = (query("CREATE TEMP TABLE fz_copy (a int)") + query("COPY fz_copy FROM STDIN")
            + p.message(b"d", b"1\n"))
    writes = [prepared + SYNC, copy + run[:at], run[at:]] if at else [prepared + SYNC, copy + run]
    direct, via = RawConn.to_upstream(upstream), RawConn.to_proxy(suite.proxy)
    try:
        direct.login(database=DATABASE)
        via.login(database=DATABASE)
        expected, _ = converse_per_write(direct, writes)
        got, closed = converse_per_write(via, writes)
    finally:
        direct.close()
        via.close()
    assert [r for per_write in got for r in per_write] == [r for per_write in expected for r in per_write]
    assert errors_of(got[1]) == [("ERROR", "08P01", "unexpected message type 0x42 during COPY from stdin"),
                                 ("FATAL", "08P01", "terminating connection because protocol synchronization was lost")]
    assert closed


def test_model_query_after_an_extended_protocol_copy_is_answered(suite):
    """libpq's way of sending COPY FROM STDIN by the extended protocol (PQexecParams):
    Parse, Bind, Execute and Sync together, then the data, CopyDone and a Sync of
    its own after it (Postgres ignores the first Sync inside the COPY, 'for the
    convenience of client libraries such as libpq'). A model Query after it must be
    answered."""
    writes = [query("CREATE TEMP TABLE fz_copy (a int)"),
              parse("COPY fz_copy FROM STDIN") + bind() + execute() + SYNC,
              p.message(b"d", b"1\n") + p.message(b"c") + SYNC,
              query(STREAMING)]
    replies = via_proxy(suite, writes)
    assert [[r[0] for r in per_write] for per_write in replies[1:3]] == [[b"1", b"2", b"G"], [b"C", b"Z"]]
    assert [r[0] for r in replies[3]] == [b"T", b"D", b"D", b"D", b"C", b"Z"]


def test_model_query_after_an_extended_protocol_copy_that_fails_as_it_begins(suite, upstream):
    """The same COPY into a view: Postgres sends the CopyInResponse and the error
    (42809) at once, before it reads on, so the first Sync is not inside the COPY:
    it ends the error's skip and is answered, as the second is. The proxy took the
    first back at the CopyInResponse; the answer it did not count answers nothing,
    and the session is in step again after the second: the model Query is answered."""
    writes = [query("CREATE TEMP TABLE fz_copy (a int)") + query("CREATE TEMP VIEW fz_view AS SELECT a FROM fz_copy"),
              parse("COPY fz_view FROM STDIN") + bind() + execute() + SYNC,
              p.message(b"d", b"1\n") + p.message(b"c") + SYNC]
    got, _ = side_by_side(suite, upstream, writes + [ALIVE])
    assert [[r[0] for r in per_write] for per_write in got[1:3]] == [[b"1", b"2", b"G", b"E", b"Z"], [b"Z"]]
    replies = via_proxy(suite, writes + [query(STREAMING)])
    assert [r[0] for r in replies[3]] == [b"T", b"D", b"D", b"D", b"C", b"Z"]


@pytest.mark.parametrize("ignored", [p.message(b"H", b"1\n"), SYNC], ids=["flush_with_a_body", "sync"])
@pytest.mark.parametrize("copy_began", [False, True], ids=["before_it_began", "after_it_began"])
def test_what_postgres_ignores_inside_a_copy_leaves_model_statements_served(ignored, copy_began, suite):
    """Postgres ignores a Sync and a Flush inside a COPY FROM STDIN (a Flush with a
    body it refuses elsewhere, then skips to the next Sync). Sent before the
    CopyInResponse reaches the proxy or after, they get no reply, and the model
    statement executed after the COPY is served as on a fresh session. Before, the
    reply rewrite took each for a request with a reply to come, and matched the
    statement's replies one off: its RowDescription went out unrewritten, with
    mlproxy's internal columns (found by the fuzzer's model_psycopg_copy seed)."""
    prepared, run = PREPARED[0]
    served = via_proxy(suite, [prepared + SYNC, run])[1]
    copy = query("CREATE TEMP TABLE fz_copy (a int)") + query("COPY fz_copy FROM STDIN")
    rest = ignored + p.message(b"d", b"1\n") + ignored + p.message(b"c") + run + ALIVE
    writes = [prepared + SYNC, copy, rest] if copy_began else [prepared + SYNC, copy + rest]
    got = via_proxy(suite, writes)[-1]
    copied = ([] if copy_began else [b"C", b"Z", b"G"]) + [b"C", b"Z"]  # (COPY 1)
    assert [r[0] for r in got[:len(copied)]] == copied
    assert got[len(copied):-4] == served
    assert [r[0] for r in got[-4:]] == [b"T", b"D", b"C", b"Z"]


@pytest.mark.parametrize("at", [1, 7])
def test_streaming_model_bind_cut_after_a_refused_copy_data_is_served(at, suite):
    """The model statement's own Bind, cut there: its type byte went upstream alone
    (Postgres judges a message during COPY by it), and the rest follows rewritten, so
    the execution is served as any other: the same rows and predictions."""
    prepared, run = PREPARED[0]
    served = via_proxy(suite, [prepared + SYNC, run])[1]
    assert [r[0] for r in served] == [b"2", b"D", b"D", b"D", b"C", b"Z"]
    got = via_proxy(suite, [prepared + SYNC, REFUSED_COPY + run[:at], run[at:], ALIVE])
    assert got[2] == served


def ends_on_the_cut_bind(proxy, writes: list[bytes]) -> None:
    """`writes` end with a refused COPY and a Bind cut after it (the last two): the
    session ends at the Bind's rest with 08P01, since serving it would take
    mlproxy's own messages ahead of the type byte already upstream."""
    via = RawConn.to_proxy(proxy)
    via.login(database=DATABASE)
    try:
        replies, closed = converse_per_write(via, writes)
    finally:
        via.close()
    assert [r[0] for r in replies[-2]] == [b"C", b"Z", b"G", b"E", b"Z"]
    assert errors_of(replies[-1]) == [
        ("FATAL", "08P01", "message type 0x42 sent during COPY from stdin names a statement "
                           "mlproxy serves by its own messages")]
    assert closed


def test_general_model_bind_cut_after_a_refused_copy_data_ends_the_session(suite):
    """A statement served per execution takes mlproxy's own messages before its
    Bind, which the type byte already upstream rules out: the session ends with
    08P01 rather than run Postgres' statement, which reads predictions never made
    (it answered 0 rows)."""
    prepared, run = PREPARED[1]
    ends_on_the_cut_bind(suite.proxy, [prepared + SYNC, REFUSED_COPY + run[:3], run[3:]])


def test_model_query_during_copy_in_fails_the_copy_like_postgres(suite, upstream):
    """A model-call Query sent (in the same write) behind COPY FROM STDIN reaches
    Postgres during the COPY: 08P01 and the connection closed, as directly."""
    writes = [query("CREATE TEMP TABLE fz_copy (a int)") + query("COPY fz_copy FROM STDIN")
              + query(STREAMING) + p.message(b"d", b"1\n") + p.message(b"c")]
    got = side_by_side(suite, upstream, writes)
    assert errors_of(got[0][0]) == [("ERROR", "08P01", "unexpected message type 0x51 during COPY from stdin"),
                                    ("FATAL", "08P01", "terminating connection because protocol synchronization was lost")]
    assert got[1]  # closed, as Postgres closes it


@pytest.mark.parametrize("again", ["SELECT 1", GENERAL.replace("> 0", "< 0")])
def test_rejected_duplicate_parse_keeps_the_general_statement(again, suite, upstream):
    """Re-preparing the name of a prepared general-path statement: Postgres refuses
    it (42P05) and the statement stays as it was; so do the proxy's predictions for
    it (its record was once replaced by the refused Parse: 0 rows, or 42P01)."""
    prepare = parse(GENERAL, "g1") + SYNC
    duplicate = parse(again, "g1") + SYNC
    direct = RawConn.to_upstream(upstream)
    direct.login(database=DATABASE)
    try:
        expected, _ = converse_per_write(direct, [prepare, duplicate])
    finally:
        direct.close()
    run = bind((b"2",), stmt="g1") + execute() + SYNC
    via = RawConn.to_proxy(suite.proxy)
    via.login(database=DATABASE)
    try:
        (*got, ran, again_ran), closed = converse_per_write(via, [prepare, duplicate, run, run],
                                                            expect=[*map(len, expected), 4, 4])
    finally:
        via.close()
    assert got == expected[:2] and not closed
    assert errors_of(got[1])[0][1] == "42P05"
    assert ran == again_ran
    assert [r[0] for r in ran] == [b"2", b"D", b"C", b"Z"]
    assert ran[1][1][2:] == b"\x00\x00\x00\x012"  # id 2 (its prediction is > 0)


def test_general_statement_bound_twice_and_executed_twice_without_sync(suite):
    """Found by mutating sessions: a general-path execution served with its Parse,
    the same statement prepared by name in the same pipeline, then bound twice before
    its Execute and executed twice before a Sync. The deferred COPY of mlproxy's own
    predictions read as the client's COPY IN: the named Parse went upstream
    unrewritten (its execution: 0A000 from the stub), or XX000."""
    sql = GENERAL.replace("$1", "$1::int")
    run = bind((b"2",), stmt="g1") + execute()
    writes = [parse(sql) + bind((b"2",)) + execute() + parse(sql, "g1") + SYNC,
              bind((b"3",), stmt="g1") + run + SYNC,
              run + run + SYNC, ALIVE]
    via = RawConn.to_proxy(suite.proxy)
    via.login(database=DATABASE)
    try:
        replies, closed = converse_per_write(via, writes, expect=[6, 5, 7, 4])
    finally:
        via.close()
    assert [[r[0] for r in w] for w in replies] == [
        [b"1", b"2", b"D", b"C", b"1", b"Z"], [b"2", b"2", b"D", b"C", b"Z"],
        [b"2", b"D", b"C", b"2", b"D", b"C", b"Z"], [b"T", b"D", b"C", b"Z"]]
    assert {r[1][2:] for w in replies[:3] for r in w if r[0] == b"D"} == {b"\x00\x00\x00\x012"}
    assert not closed


def test_bind_handed_to_a_refused_general_parse_is_the_streaming_statements(suite):
    """Found by mutating sessions: a streaming statement, a general-path Parse of the
    same name (Postgres refuses it with 42P05 and keeps the first) and a Bind of it,
    in one write. The Bind was handed to the general path while the Parse was in
    flight; when the 42P05 put the streaming statement back, the general path took
    it for its own (AttributeError, XX000). It is the streaming statement's Bind."""
    write = (parse(STREAMING, "s1") + SYNC + parse(GENERAL, "s1") + SYNC
             + bind((), stmt="s1") + execute() + SYNC)
    via = RawConn.to_proxy(suite.proxy)
    via.login(database=DATABASE)
    try:
        (replies, alive), closed = converse_per_write(via, [write, ALIVE], expect=[10, 4])
    finally:
        via.close()
    assert [r[0] for r in replies] == [b"1", b"Z", b"E", b"Z", b"2", b"D", b"D", b"D", b"C", b"Z"]
    assert [e[1] for e in errors_of(replies)] == ["42P05"] and not closed
    assert [r[0] for r in alive] == [b"T", b"D", b"C", b"Z"]



@pytest.mark.parametrize("sql", [STREAMING, GENERAL])
def test_the_proxys_own_queries_leave_the_unnamed_statement_alone(sql, suite, upstream):
    """The first model statement a session prepares has the proxy ask Postgres its
    search_path, on the client's session: asked by a simple Query, that dropped the
    client's unnamed statement (exec_simple_query), and a later Bind of it got 26000
    where Postgres runs it."""
    writes = [parse("SELECT 41 + 1") + SYNC, parse(sql, "s9") + SYNC, bind() + execute() + SYNC, ALIVE]
    replies = compare(suite, upstream, writes)
    assert [r[0] for r in replies[:8]] == [b"1", b"Z", b"1", b"Z", b"2", b"D", b"C", b"Z"]
    assert replies[5] == (b"D", b"\x00\x01\x00\x00\x00\x0242")


def test_unnamed_model_statement_outlives_the_failed_block_it_failed(suite, upstream):
    """A streaming statement Postgres ran and the proxy could not evaluate (a value
    the model cannot take) fails the client's transaction block upstream by a query
    of mlproxy's own: as Postgres' own error would, it leaves the unnamed statement,
    so its next Bind gets 25P02 (the block is aborted), not 26000."""
    failing = "SELECT id, predict_price(rooms, 'Infinity'::float8, city) FROM houses WHERE id <= 3"
    via = RawConn.to_proxy(suite.proxy)
    via.login(database=DATABASE)
    try:
        replies, closed = converse_per_write(via, [
            query("BEGIN"), parse(failing) + bind() + execute() + SYNC, bind() + execute() + SYNC,
            query("ROLLBACK"), ALIVE])
    finally:
        via.close()
    assert errors_of(replies[1])[0][1].startswith("22") and replies[1][-1] == (b"Z", b"E")
    assert errors_of(replies[2]) == [("ERROR", "25P02", "current transaction is aborted, "
                                      "commands ignored until end of transaction block")]
    assert replies[4][-1] == (b"Z", b"I") and not closed


@pytest.mark.parametrize("statement", [
    "CREATE MODEL",  # refused by mlproxy itself: nothing of it goes upstream
    "SHOW MODEL ALL",  # answered by a Query of mlproxy's
    GENERAL.replace("$1", "2"),  # mlproxy's own queries first, then the rewritten Query
    f"BEGIN; {GENERAL.replace('$1', '2')}; COMMIT",
])
def test_a_query_the_proxy_answers_drops_the_unnamed_statement(statement, suite):
    """Postgres drops the unnamed statement as any Query begins, one that fails too
    (exec_simple_query): a later Bind of it gets 26000. So does a Query the proxy
    takes over, whatever it sends upstream for it, if anything."""
    via = RawConn.to_proxy(suite.proxy)
    via.login(database=DATABASE)
    try:
        replies, closed = converse_per_write(via, [
            parse("SELECT 41 + 1") + SYNC, query(statement), bind() + execute() + SYNC, ALIVE])
    finally:
        via.close()
    assert [r[0] for r in replies[0]] == [b"1", b"Z"]
    assert replies[1][-1] == (b"Z", b"I") and b"3" not in [r[0] for r in replies[1]]
    assert replies[2] == [(b"E", "ERROR", "26000", "unnamed prepared statement does not exist"),
                          (b"Z", b"I")]
    assert replies[3][-1] == (b"Z", b"I") and not closed


@pytest.mark.parametrize("statement", ["CREATE MODEL", "SELECT 1; CREATE MODEL m FROM"])
def test_an_error_the_proxy_answers_a_query_with_fails_the_block(statement, suite):
    """An error fails the transaction block it happens in, as on Postgres (and
    Redshift): one that mlproxy answered itself too (here an ML statement it
    refused, with nothing sent upstream), so the block's next statement gets 25P02
    and its COMMIT rolls back."""
    via = RawConn.to_proxy(suite.proxy)
    via.login(database=DATABASE)
    try:
        replies, closed = converse_per_write(via, [
            query("BEGIN"), query(statement), query("SELECT 1"), query("COMMIT"), ALIVE])
    finally:
        via.close()
    assert errors_of(replies[1])[0][1] == "42601" and replies[1][-1] == (b"Z", b"E")
    assert replies[2] == [(b"E", "ERROR", "25P02", "current transaction is aborted, "
                           "commands ignored until end of transaction block"), (b"Z", b"E")]
    assert replies[3] == [(b"C", b"ROLLBACK\x00"), (b"Z", b"I")]
    assert replies[4][-1] == (b"Z", b"I") and not closed


def test_an_ml_statement_in_the_extended_protocol_leaves_the_unnamed_statement_alone(suite):
    """DROP MODEL prepared and executed by the extended protocol (under a name of
    its own) runs as a query of mlproxy's, not as a simple Query, which would drop
    the client's unnamed statement: its later Bind runs it, as on Postgres for any
    statement so executed."""
    via = RawConn.to_proxy(suite.proxy)
    via.login(database=DATABASE)
    try:
        replies, closed = converse_per_write(via, [
            parse("SELECT 41 + 1") + SYNC,
            parse("DROP MODEL IF EXISTS no_such_model", "s9") + bind(stmt="s9") + execute() + SYNC,
            bind() + execute() + SYNC, ALIVE])
    finally:
        via.close()
    # (the NOTICE: the model does not exist, skipping)
    assert [r[0] for r in replies[1]] == [b"1", b"2", b"N", b"C", b"Z"]
    assert replies[1][3] == (b"C", b"DROP MODEL\x00")
    assert replies[2] == [(b"2", b""), (b"D", b"\x00\x01\x00\x00\x00\x0242"), (b"C", b"SELECT 1\x00"),
                          (b"Z", b"I")]
    assert replies[3][-1] == (b"Z", b"I") and not closed
