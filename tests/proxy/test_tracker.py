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

def test_a_failed_function_call_ends_with_its_own_ready_for_query():
    """A FunctionCall's error is followed by its ReadyForQuery, as a Query's is (it
    starts no skip to Sync): the requests behind it keep their replies. It skipped
    the client's Sync, and every later reply was matched one request off (a model
    statement's RowDescription went out unrewritten: corpus
    function_call_error_in_a_pipeline_then_model_describe)."""
    tracker, stmt = ResponseTracker(), Statement()
    tracker.add_statement(b"s1", stmt)
    replies(tracker, p.parse_complete())
    send(tracker, p.message(b"F", b"\0\0\0\0\0\0\0\0\0\0"), SYNC, bind(b"", b"s1"), describe(b"P", b""),
         execute(), SYNC)
    out = replies(tracker, _error("42883"), p.ready_for_query(), p.ready_for_query(), p.bind_complete(),
                  p.message(b"T", b"orig"), ROW, p.command_complete("SELECT 1"), p.ready_for_query())
    assert out[4] == p.message(b"T", b"rewritten") and stmt.rewriter.batches == [1]
    assert not tracker.queue


def test_an_error_back_before_the_rest_of_its_pipeline_is_noted_skips_that_rest():
    """An error can come back before the client's later messages of its pipeline are
    noted (a takeover relays them after it). Postgres skips them up to the Sync, so
    they get no replies, and the requests after the Sync keep theirs. Before, the
    Sync's ReadyForQuery was matched to a skipped message, and a model statement's
    RowDescription went out unrewritten, with mlproxy's internal columns (corpus
    named_model_statement_after_an_empty_describe_runs_untracked)."""
    tracker, stmt = ResponseTracker(), Statement()
    send(tracker, describe(b"S", b"missing"))
    replies(tracker, _error("26000"))  # the skip to Sync: nothing else noted yet
    skipped = [bind(b"", b"missing"), describe(b"P", b""), execute()]
    assert send(tracker, *skipped, SYNC) == [*skipped, SYNC]
    assert replies(tracker, p.ready_for_query()) == [p.ready_for_query()] and not tracker.queue
    tracker.add_statement(b"s1", stmt)
    send(tracker, SYNC, bind(b"", b"s1"), describe(b"P", b""), execute(), SYNC)
    out = replies(tracker, p.parse_complete(), p.ready_for_query(), p.bind_complete(), p.message(b"T", b"orig"),
                  ROW, p.command_complete("SELECT 1"), p.ready_for_query())
    assert out[3] == p.message(b"T", b"rewritten") and stmt.rewriter.batches == [1]
    assert not tracker.queue and tracker.statements == {b"s1": stmt}


def test_a_query_drops_the_unnamed_statement_unless_it_is_skipped():
    """Postgres drops the unnamed statement when it runs a Query (a later Bind of it
    gets 26000 from Postgres, not the rewritten statement's handling); a Query it
    skips, after an error in the pipeline in front of it, drops nothing."""
    tracker, stmt = ResponseTracker(), Statement()
    tracker.add_statement(b"", stmt)
    replies(tracker, p.parse_complete())
    send(tracker, p.message(b"Q", b"SET ROLE r\0"))
    assert b"" not in tracker.statements
    unnamed_bind = bind(b"", b"")
    assert send(tracker, unnamed_bind) == [unnamed_bind] and not stmt.binds  # as sent
    replies(tracker, p.command_complete("SET"), p.ready_for_query(), _error("26000"))
    send(tracker, SYNC)
    replies(tracker, p.ready_for_query())
    assert not tracker.queue and not tracker.active

    tracker.add_statement(b"", stmt)
    replies(tracker, p.parse_complete())
    send(tracker, bind(b"", b"missing"), p.message(b"Q", b"SET ROLE r\0"), SYNC)
    assert b"" not in tracker.statements  # (until Postgres says whether it ran it)
    replies(tracker, _error("26000"), p.ready_for_query())
    assert tracker.statements[b""] is stmt and not tracker.queue
    send(tracker, bind(b"", b""))
    assert len(stmt.binds) == 1  # still the rewritten statement's


def test_a_statement_added_unsent_awaits_no_reply_and_holds_its_name():
    """prepared_general answers a Parse itself when the execution served with it
    failed (the server skipped the Parse, up to the Sync the tracker may not have seen
    yet): the statement holds the name at once, no reply is awaited for it, and it
    goes as a Parse's would: replaced by a Parse of the name, dropped by a Query."""
    tracker, stmt, other = ResponseTracker(), Statement(), Statement()
    tracker.add_statement(b"", other)
    replies(tracker, p.parse_complete())
    send(tracker, bind(b"", b"missing"))
    replies(tracker, _error("26000"))  # skipping to a Sync not sent yet
    tracker.add_unsent_statement(b"", stmt)
    send(tracker, SYNC)
    replies(tracker, p.ready_for_query())
    assert tracker.statements[b""] is stmt and not tracker.queue and tracker.active
    send(tracker, bind(b"", b""), execute(), SYNC)
    assert len(stmt.binds) == 1 and not other.binds
    replies(tracker, p.bind_complete(), p.command_complete("SELECT 0"), p.ready_for_query())
    send(tracker, PLAIN_PARSE, SYNC)
    assert b"" not in tracker.statements
    tracker.add_unsent_statement(b"", stmt)
    send(tracker, p.message(b"Q", b"SELECT 1\0"))
    assert b"" not in tracker.statements


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


# -- the one-pass request and reply of a prepared model statement -----------------------
# -- (client_pipeline, pipeline_reply): what message-by-message tracking gives ----------

class SectionStatement(Statement):
    """A StatementPlan as PreparedStreaming is one: `bind` is the result-format
    section found by decode_bind, then `bind_section` (which client_pipeline calls
    with the section it found itself)."""

    def __init__(self, fail_rows: bool = False) -> None:
        super().__init__()
        self.rewriter = Failing() if fail_rows else Recorder()
        self.sections: list[bytes] = []

    def bind(self, body: bytes):
        start, _, end = result_formats(body)
        section, rewriter = self.bind_section(body[start:end])
        return body[:start] + section + body[end:], rewriter

    def bind_section(self, section: bytes):
        self.sections.append(section)
        return section + struct.pack("!h", 1), self.rewriter


class Failing(Recorder):
    def data_rows(self, rows: bytes, count: int, starts=None) -> bytes:
        raise PgError("22023", "the model cannot take this value")


_name = st.sampled_from([b"", b"p1", b"s1", b"\xc3\xa4"])
_value = st.none() | st.binary(max_size=9)


@st.composite
def _bind_body(draw, statement: bytes) -> bytes:
    """A Bind body, mostly well formed, sometimes cut, padded or with a bad count."""
    portal = draw(_name)
    values = draw(st.lists(_value, max_size=4))
    formats = draw(st.sampled_from([[], [0], [1], [0] * len(values), [1, 0, 1]]))
    results = draw(st.lists(st.integers(0, 1), max_size=3))
    body = portal + b"\0" + statement + b"\0" + struct.pack(f"!h{len(formats)}h", len(formats), *formats)
    body += struct.pack("!h", len(values))
    for value in values:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    body += struct.pack(f"!h{len(results)}h", len(results), *results)
    damage = draw(st.sampled_from(["none"] * 6 + ["cut", "pad", "negative", "count"]))
    if damage == "cut":
        body = body[:draw(st.integers(0, len(body) - 1))]
    elif damage == "pad":
        body += b"\0"
    elif damage == "negative" and values:
        at = body.index(struct.pack("!h", len(values)), len(portal) + len(statement) + 2) + 2
        body = body[:at] + struct.pack("!i", -7) + body[at + 4:]
    elif damage == "count":
        body = body[:-2 * len(results) - 2] + struct.pack("!h", len(results) + 1) + body[-2 * len(results):]
    return body


@st.composite
def _pipelines(draw):
    """What a driver sends for one execution of a prepared statement, or something
    close to it that client_pipeline must leave to the general path."""
    statement = draw(st.sampled_from([b"s1", b"s1", b"plain", b"general"]))
    body = draw(_bind_body(statement))
    portal = body[:body.index(b"\0")] if b"\0" in body else b""
    messages = [p.message(b"B", body)]
    shape = draw(st.sampled_from(["describe", "plain", "plain", "statement", "other_portal", "limit",
                                  "flush", "no_sync", "two", "long_describe"]))
    if shape in ("describe", "long_describe"):
        messages.append(describe(b"P", portal) if shape == "describe" else
                        p.message(b"D", b"P" + portal + b"\0\0"))
    elif shape == "statement":
        messages.append(describe(b"S", b"s1"))
    messages.append(execute(b"zz" if shape == "other_portal" else portal) if shape != "limit" else
                    p.message(b"E", portal + b"\0" + struct.pack("!i", 5)))
    if shape == "flush":
        messages.append(p.message(b"H"))
    if shape != "no_sync":
        messages.append(SYNC)
    if shape == "two":
        messages += [bind(b"", b"s1"), execute(), SYNC]
    return messages


class Plain:
    """A prepared statement the tracker knows but that has no bind_section (the
    general path's, e.g. PreparedGeneral)."""

    def __init__(self) -> None:
        self.rewriter = Recorder()

    def bind(self, body: bytes):
        return body, self.rewriter

    def describe(self):
        return self.rewriter


def _tracker_pair():
    out = []
    for _ in range(2):
        tracker = ResponseTracker()
        tracker.add_statement(b"s1", SectionStatement())
        tracker.add_statement(b"general", Plain())
        tracker.server_message(p.parse_complete()[0], p.parse_complete())
        tracker.server_message(p.parse_complete()[0], p.parse_complete())
        out.append(tracker)
    return out


def _state(tracker: ResponseTracker):
    rewriters = {id(r): i for i, r in enumerate(
        [tracker.statements[b"s1"].rewriter, tracker.statements[b"general"].rewriter])}
    return ([(e.kind, rewriters.get(id(e.rewriter), e.rewriter)) for e in tracker.queue],
            {name: rewriters.get(id(r), r) for name, r in tracker.portals.items()})


@settings(max_examples=400, deadline=None)
@given(_pipelines())
def test_client_pipeline_is_message_by_message_tracking(messages):
    """client_pipeline forwards what client_message forwards message by message,
    and leaves the tracker where it does; it declines (None, nothing noted) whatever
    is not exactly Bind of a statement with bind_section, Describe of its portal or
    none, Execute of it, Sync."""
    reference, tracker = _tracker_pair()
    chunk = b"".join(messages)
    expected = b"".join(send(reference, *messages))
    before = _state(tracker)
    forwarded = tracker.client_pipeline(chunk)
    if forwarded is None:
        assert _state(tracker) == before
        forwarded = b"".join(send(tracker, *messages))
    assert forwarded == expected
    assert _state(tracker) == _state(reference)
    assert tracker.statements[b"s1"].sections == reference.statements[b"s1"].sections


def test_client_pipeline_takes_what_drivers_send():
    _, tracker = _tracker_pair()
    for messages in ([bind(b"", b"s1"), describe(b"P", b""), execute(), SYNC],  # psycopg, pgjdbc
                     [bind(b"p1", b"s1", (1, 1)), execute(b"p1"), SYNC]):  # asyncpg
        assert tracker.client_pipeline(b"".join(messages)) is not None
    assert tracker.client_pipeline(b"".join([bind(b"", b"general"), execute(), SYNC])) is None


@st.composite
def _replies(draw):
    """The replies a request of client_pipeline may get, mostly the common shape."""
    rows = draw(st.integers(0, 36))
    out = [p.bind_complete()]
    described = draw(st.booleans())
    if described:
        out.append(p.message(b"T", b"t"))
    row = draw(st.sampled_from([ROW, p.data_row(["12", None, "x" * 40])]))
    out += [row] * rows
    end = draw(st.sampled_from(["complete"] * 6 + ["suspended", "error", "notice", "empty", "bind_error"]))
    if end == "bind_error":
        out = [ERR]
    elif end == "error":
        out.append(ERR)
    elif end == "suspended":
        out.append(p.message(b"s"))
    elif end == "notice":
        out.insert(draw(st.integers(1, len(out))), p.notice_response("n"))
    elif end == "empty":
        out = out[:1 + described] + [p.message(b"I")]
    if end not in ("error", "bind_error", "suspended"):
        out.append(p.command_complete(f"SELECT {rows}"))
    out.append(p.ready_for_query(draw(st.sampled_from([b"I", b"T", b"E"]))))
    if draw(st.integers(0, 9)) == 0:  # the start of the next request's replies too
        out.append(p.bind_complete())
    return described, out


def _relayed(tracker: ResponseTracker, messages: list[bytes]) -> list[bytes]:
    """TrackedRelay's general path for a short read: rows held, flushed at the next
    other message or the end, every other message through server_message."""
    out = []
    for m in messages:
        if m[0] == p.B_DATA_ROW and tracker.wants_rows():
            out.extend(tracker.add_rows(m, 1))
            continue
        if tracker.holding_rows:
            out.extend(tracker.flush())
        out.extend(tracker.server_message(m[0], m))
    return out + tracker.flush()


@settings(max_examples=400, deadline=None)
@given(_replies(), st.booleans(), st.sampled_from([b"", b"p1"]))
def test_pipeline_reply_is_message_by_message_tracking(replies_of, fail_rows, portal):
    """pipeline_reply gives, for a chunk of the whole replies of a client_pipeline
    request, the bytes message-by-message tracking gives (a failed batch is its
    ErrorResponse, the rest dropped up to the ReadyForQuery) and leaves the tracker
    where it does; anything else it declines, nothing done."""
    described, messages = replies_of
    trackers = []
    for _ in range(2):
        tracker = ResponseTracker()
        tracker.add_statement(b"s1", SectionStatement(fail_rows))
        tracker.server_message(p.parse_complete()[0], p.parse_complete())
        sent = [bind(portal, b"s1")] + ([describe(b"P", portal)] if described else []) + [execute(portal), SYNC]
        assert tracker.client_pipeline(b"".join(sent)) is not None
        trackers.append(tracker)
    reference, tracker = trackers
    expected = _relayed(reference, messages)
    done = tracker.pipeline_reply(b"".join(messages))
    if done is None:
        got = _relayed(tracker, messages)
    else:
        got, ready, failed = done
        assert ready == messages[-1] and ready[0] == p.B_READY_FOR_QUERY
        assert len(messages) >= 3 and messages[-2][0] == ord("C")
        assert failed == (fail_rows and len(messages) > 3 + described)
        if failed:  # the end of the failed result is the caller's to pass on
            assert tracker.discarding
            got = got + _relayed(tracker, [ready])
    assert b"".join(got) == b"".join(expected)
    assert [e.kind for e in tracker.queue] == [e.kind for e in reference.queue]
    assert set(tracker.portals) == set(reference.portals)
    assert tracker.discarding == reference.discarding and not tracker.holding_rows
    assert tracker.statements[b"s1"].rewriter.batches == reference.statements[b"s1"].rewriter.batches
