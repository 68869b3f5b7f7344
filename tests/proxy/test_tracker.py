"""Unit tests (no sockets) of the request/reply matching used while results are
rewritten: which reply belongs to which request, in every protocol situation."""

from __future__ import annotations

import struct

from proxy import protocol as p
from proxy.errors import PgError
from proxy.inference.tracker import ResponseTracker, result_formats, with_result_formats


class Recorder:
    """A RowRewriter that marks what it rewrote."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def row_description(self, raw: bytes) -> bytes:
        return p.message(b"T", b"rewritten")

    def data_rows(self, rows: bytes, count: int, starts=None) -> bytes:
        self.batches.append(count)
        return rows.replace(b"D", b"X", 1)


class Statement:
    def __init__(self) -> None:
        self.rewriter = Recorder()
        self.binds: list[bytes] = []

    def bind(self, body: bytes):
        self.binds.append(body)
        return with_result_formats(body, [1, 0]), self.rewriter

    def describe(self):
        return self.rewriter


def bind(portal: bytes, stmt: bytes, formats=(1,)) -> bytes:
    body = portal + b"\0" + stmt + b"\0" + struct.pack("!hh", 0, 0)
    body += struct.pack(f"!h{len(formats)}h", len(formats), *formats)
    return p.message(b"B", body)


def execute(portal: bytes = b"") -> bytes:
    return p.message(b"E", portal + b"\0" + struct.pack("!i", 0))


def describe(kind: bytes, name: bytes) -> bytes:
    return p.message(b"D", kind + name + b"\0")


SYNC, ROW = p.message(b"S"), p.data_row(["1"])


def send(tracker: ResponseTracker, *messages: bytes) -> list[bytes]:
    return [tracker.client_message(m[0], m) for m in messages]


def replies(tracker: ResponseTracker, *messages: bytes) -> list[bytes]:
    out = []
    for m in messages:
        out.extend(tracker.server_message(m[0], m))
    return out + tracker.flush()


def test_prepared_statement_results_are_rewritten():
    tracker, stmt = ResponseTracker(), Statement()
    tracker.add_statement(b"s1", stmt)
    sent = send(tracker, describe(b"S", b"s1"), bind(b"", b"s1"), execute(), SYNC)
    assert result_formats(sent[1][5:])[1] == [1, 0]  # the Bind went out with new formats
    out = replies(tracker, p.parse_complete(), p.message(b"t", b"\0\0"), p.message(b"T", b"orig"),
                  p.bind_complete(), ROW, ROW, p.command_complete("SELECT 2"), p.ready_for_query())
    assert out[2] == p.message(b"T", b"rewritten")
    assert stmt.rewriter.batches == [2]  # both rows in one predictor call
    assert out[4].startswith(b"X")  # the rows came back rewritten
    assert out[-1] == p.ready_for_query() and not tracker.queue
    assert tracker.active  # the statement stays prepared


def test_error_skips_to_sync_and_async_messages_answer_nothing():
    tracker, stmt = ResponseTracker(), Statement()
    tracker.add_statement(b"s1", stmt)
    send(tracker, bind(b"", b"s1"), execute(), SYNC, execute(), SYNC)
    err = p.error_response(PgError("22012", "division by zero"))
    out = replies(tracker, p.parse_complete(), p.notice_response("hi"), p.bind_complete(), err,
                  p.ready_for_query(), ROW, p.command_complete("SELECT 1"), p.ready_for_query())
    assert out[3] == err and out[4] == p.ready_for_query()
    assert stmt.rewriter.batches == [1]  # the second Execute's row was still rewritten
    assert not tracker.queue


def test_plain_statements_and_closing_end_tracking():
    tracker, stmt = ResponseTracker(), Statement()
    tracker.add_statement(b"s1", stmt)
    replies(tracker, p.parse_complete())
    send(tracker, p.message(b"P", b"s1\0SELECT 1\0\0\0"))  # the name is re-prepared plainly
    assert not tracker.active
    tracker.add_statement(b"s2", stmt)
    send(tracker, bind(b"p", b"s2"), p.message(b"C", b"Pp\0"), p.message(b"C", b"Ss2\0"), SYNC)
    replies(tracker, p.parse_complete(), p.parse_complete(), p.bind_complete(), p.message(b"3"),
            p.message(b"3"), p.ready_for_query())
    assert not tracker.active and not tracker.queue


def test_simple_query_rewriter_and_error_position_mapping():
    tracker, rec = ResponseTracker(), Recorder()
    tracker.add_query(rec, map_position=lambda pos: pos - 10)

    err = p.error_response(PgError("42883", "function f(integer) does not exist", position=25))
    out = replies(tracker, err, p.ready_for_query())
    assert p.parse_fields(out[0][5:])["P"] == "15"
    tracker.add_query(rec)
    out = replies(tracker, p.message(b"T", b"x"), ROW, p.command_complete("SELECT 1"),
                  p.ready_for_query())
    assert out[0] == p.message(b"T", b"rewritten") and rec.batches == [1]
    assert not tracker.active


def test_result_format_rewrite_keeps_the_rest_of_bind():
    body = bind(b"portal", b"stmt", formats=(1,))[5:]
    new = with_result_formats(body, [1, 1, 0])
    assert result_formats(new)[1] == [1, 1, 0]
    assert new[:result_formats(new)[0]] == body[:result_formats(body)[0]]


def test_held_runs_keep_their_message_offsets():
    """Runs of rows added with their offsets (the session's scan of each chunk) are
    released with the offsets of the joined batch: the rewriter need not scan again."""
    from proxy.inference.rows import scan_data_rows

    tracker, rec = ResponseTracker(), Recorder()
    tracker.add_query(rec)
    replies(tracker, p.message(b"T", b"x"))
    runs = [p.data_row(["a"]) + p.data_row(["bb", None]), p.data_row(["ccc"]),
            p.data_row([None]) * 3]
    for run in runs:
        offsets, _ = scan_data_rows(run)
        assert not tracker.add_rows(run, len(offsets), offsets if len(offsets) > 1 else None)
    rewriter, rows, count, starts = tracker.take_rows()
    assert rewriter is rec and rows == b"".join(runs) and count == 6
    assert list(starts) == list(scan_data_rows(rows)[0])


# -- plain groups: replies that need no matching, only a ReadyForQuery count ----------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from proxy.wire_scan import ENDS_READY, READY_SHIFT, py_server_chunk  # noqa: E402

ERR = p.error_response(PgError("22012", "division by zero"))
PLAIN_PARSE = p.message(b"P", b"\0SELECT 1\0\0\0")
REQUESTS = {  # what the client sends, what the server answers
    "query": ([p.message(b"Q", b"SELECT 1\0")],
              [p.message(b"T", b"t"), ROW, p.command_complete("SELECT 1"), p.ready_for_query()]),
    "extended": ([PLAIN_PARSE, bind(b"", b""), describe(b"P", b""), execute(), SYNC],
                 [p.parse_complete(), p.bind_complete(), p.message(b"T", b"t"), ROW,
                  p.command_complete("SELECT 1"), p.ready_for_query()]),
    "model": ([bind(b"", b"s1"), execute(), SYNC],
              [p.bind_complete(), ROW, ROW, p.command_complete("SELECT 2"), p.ready_for_query()]),
    "error": ([bind(b"", b""), execute(), SYNC], [p.bind_complete(), ERR, p.ready_for_query()]),
    "notice": ([p.message(b"Q", b";\0")], [p.notice_response("n"), p.message(b"I"), p.ready_for_query()]),
}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(REQUESTS)), st.integers(0, 3)), min_size=1, max_size=12),
       st.data())
def test_plain_groups_answer_like_message_matching(requests, data):
    """Replies relayed as whole chunks when `plain_groups` allows (then only their
    ReadyForQuery messages are counted) leave the tracker where matching them one by
    one does, with the same output, whatever the interleaving of requests and reply
    chunks."""
    reference, tracker = ResponseTracker(), ResponseTracker()
    for t in (reference, tracker):
        t.add_statement(b"s1", Statement())
        t.server_message(p.parse_complete()[0], p.parse_complete())
    ref_out, out = [], []
    awaited: list[bytes] = []  # replies of the requests sent, not yet delivered
    for name, chunks in requests:
        sent, answers = REQUESTS[name]
        for t in (reference, tracker):
            send(t, *sent)
        awaited.extend(answers)
        for _ in range(chunks):  # deliver some of what is awaited, in one chunk
            if not awaited:
                break
            cut = data.draw(st.integers(1, len(awaited)))
            chunk, awaited = awaited[:cut], awaited[cut:]
            ref_out.extend(replies(reference, *chunk))
            out.extend(_deliver(tracker, b"".join(chunk), chunk))
    ref_out.extend(replies(reference, *awaited))
    out.extend(_deliver(tracker, b"".join(awaited), awaited))
    assert b"".join(out) == b"".join(ref_out)
    assert [e.kind for e in tracker.queue] == [e.kind for e in reference.queue] == []


def _deliver(tracker: ResponseTracker, chunk: bytes, messages: list[bytes]) -> list[bytes]:
    """The session's choice (Session._plain_replies): a chunk of plain replies as
    is, counting its ReadyForQuery messages; anything else message by message."""
    groups = tracker.plain_groups()
    verdict = py_server_chunk(chunk) if chunk else None
    if groups >= 0 and verdict is not None and verdict & ENDS_READY and verdict >> READY_SHIFT <= groups:
        tracker.answered_groups(verdict >> READY_SHIFT, verdict & 0xFF)
        return [chunk]
    return replies(tracker, *messages)


def test_plain_groups_refuse_what_needs_matching():
    tracker = ResponseTracker()
    assert tracker.plain_groups() == 0
    send(tracker, p.message(b"Q", b"SELECT 1\0"), bind(b"", b""), execute())
    assert tracker.plain_groups() == -1  # the extended messages await their Sync
    send(tracker, SYNC)
    assert tracker.plain_groups() == 2
    tracker.add_statement(b"s1", Statement())
    assert tracker.plain_groups() == -1  # its Parse is awaited (the group is open)
    send(tracker, SYNC)
    assert tracker.plain_groups() == 3
    send(tracker, bind(b"", b"s1"), execute(), SYNC)
    assert tracker.plain_groups() == -1  # a rewritten result is awaited
    tracker.answered()
    tracker.expect_hidden(1, lambda raw: raw)
    assert tracker.plain_groups() == -1  # mlproxy's own replies are dropped


# -- portals: the tracker never forgets a usable rewritten one, and drops them all ------
# -- when a transaction ends (so that a session can be parked, see reply_rewrite.py) ----

def _error(code: str) -> bytes:
    return p.error_response(PgError(code, "refused"))


class PortalServer:
    """Postgres' lifetime of portals for the messages the test sends: a portal lives
    until its Close or the end of its transaction (a Sync outside a block, COMMIT);
    a Query drops the unnamed one; after an error the server skips to Sync, and a
    failed block refuses everything until it ends."""

    def __init__(self) -> None:
        self.portals: dict[bytes, bool] = {}  # name -> rewritten
        self.block = self.failed_block = self.skipping = False

    def usable_rewritten(self) -> set[bytes]:
        return set() if self.failed_block else {n for n, rw in self.portals.items() if rw}

    def _fail(self, code: str) -> list[bytes]:
        self.skipping = True
        self.failed_block = self.block
        return [_error(code)]

    def answer(self, step: tuple) -> list[bytes]:
        kind = step[0]
        if kind in ("bind", "execute", "close") and self.skipping:
            return []
        if kind == "bind":
            _, portal, rewritten = step
            if self.failed_block:
                return self._fail("25P02")
            if portal and portal in self.portals:
                return self._fail("42P03")
            self.portals[portal] = rewritten
            return [p.bind_complete()]
        if kind == "execute":
            if self.failed_block:
                return self._fail("25P02")
            if step[1] not in self.portals:
                return self._fail("34000")
            return [ROW, p.command_complete("SELECT 1")]
        if kind == "close":
            self.portals.pop(step[1], None)
            return [p.message(b"3")]
        if kind == "sync":
            self.skipping = False
            if not self.block:
                self.portals.clear()
            return [p.ready_for_query(b"E" if self.failed_block else b"T" if self.block else b"I")]
        self.portals.pop(b"", None)  # a Query
        if kind == "begin":
            if self.failed_block:
                return [_error("25P02"), p.ready_for_query(b"E")]
            self.block = True
            return [p.command_complete("BEGIN"), p.ready_for_query(b"T")]
        self.portals.clear()  # COMMIT (a ROLLBACK in a failed block)
        self.block = self.failed_block = False
        return [p.command_complete("COMMIT"), p.ready_for_query(b"I")]


def _client(step: tuple) -> bytes:
    kind = step[0]
    if kind == "bind":
        return bind(step[1], b"s1" if step[2] else b"plain")
    if kind == "execute":
        return execute(step[1])
    if kind == "close":
        return p.message(b"C", b"P" + step[1] + b"\0")
    if kind == "sync":
        return SYNC
    return p.message(b"Q", b"BEGIN\0" if kind == "begin" else b"COMMIT\0")


_portal = st.sampled_from([b"", b"p1", b"p2"])
_extended = st.one_of(st.tuples(st.just("bind"), _portal, st.booleans()),
                      st.tuples(st.just("execute"), _portal), st.tuples(st.just("close"), _portal))
_unit = st.one_of(st.lists(_extended, min_size=1, max_size=4).map(lambda m: [*m, ("sync",)]),
                  st.sampled_from([[("begin",)], [("commit",)]]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_unit, st.booleans()), min_size=1, max_size=10))
def test_portals_are_tracked_until_their_transaction_ends(units):
    """Whatever the mix of rewritten and plain portals, transaction blocks, errors
    and pipelining: every rewritten portal the client can still execute is known
    to the tracker; once every request is answered outside a transaction block it
    knows of none (Postgres has dropped them all), and only then, with nothing
    else in flight, can the session be parked."""
    tracker, server = ResponseTracker(), PortalServer()
    tracker.add_statement(b"s1", Statement())
    tracker.server_message(p.parse_complete()[0], p.parse_complete())
    owed: list[bytes] = []
    for unit, deliver in units:
        for step in unit:
            send(tracker, _client(step))
            owed.extend(server.answer(step))
        if deliver or unit is units[-1][0]:  # else pipelined behind the next unit
            replies(tracker, *owed)
            owed = []
            assert not tracker.queue
            assert server.usable_rewritten() <= set(tracker.portals)
            if not server.block:
                assert not tracker.portals and not server.portals
            names = tracker.park_names()
            assert (names is not None) == (not tracker.portals)
            if names is not None:
                assert names == (b"s1",) and not server.usable_rewritten()
