"""Sans-IO tracking of which server reply answers which client request.

While a session has statements whose results the proxy rewrites (a model call in
the select list), the server's replies must be matched to the client's requests:
the RowDescription of a Describe of such a statement loses its extra columns, and
the DataRows of an Execute of its portal get their predictions. The protocol
answers requests strictly in order, so a FIFO of expectations suffices — with the
two rules that make it exact: after an ErrorResponse in the extended protocol the
server skips everything up to Sync, and asynchronous messages (NoticeResponse,
NotificationResponse, ParameterStatus) answer nothing.

`RowRewriter` is what the rewriting needs per statement/portal; DataRows are handed
over in batches so the predictor runs once per batch.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from .. import protocol as p
from ..errors import PgError
from .call_log import CALLS
from .workers import THREAD_MIN_BYTES

log = logging.getLogger("mlproxy.inference")

_FIRST = (0,)  # the offsets of a run of one message
_ASYNC = frozenset((p.B_NOTICE, p.B_NOTIFICATION, p.B_PARAMETER_STATUS))

# Expectation kinds
PARSE, BIND, DESCRIBE_STATEMENT, DESCRIBE_PORTAL, EXECUTE, CLOSE, SYNC, QUERY, FUNCTION, HIDDEN, FAIL_BLOCK = \
    range(11)
# the kinds whose request ends with a ReadyForQuery
_GROUP_ENDS = frozenset((SYNC, QUERY, FUNCTION))
# the requests the session counts in flight (FAIL_BLOCK: a Query of its own in place
# of the client's, whose ReadyForQuery is the client's)
_REQUESTS = _GROUP_ENDS | {FAIL_BLOCK}
_IDLE = ord("I")
_IN_BLOCK = ord("T")
# pipeline_reply takes at most this many rows (a lookup: the rows are rewritten on
# the event loop, as a flush of so few would be)
_PIPELINE_ROWS = 32


class RowRewriter(Protocol):
    """Rewrites the result of one statement: drops the appended argument columns
    from its RowDescription and puts predictions into its DataRows."""

    def row_description(self, raw: bytes) -> bytes: ...

    def data_rows(self, rows: bytes, count: int, starts: Any = None) -> bytes:
        """Rewrite `count` complete DataRow messages, contiguous in `rows`; `starts`,
        if known, are their offsets (as scan_data_rows gives them)."""
        ...


class StatementPlan(Protocol):
    """A prepared statement the proxy rewrites; `bind()` makes the portal's rewriter
    from the client's Bind and returns the Bind to forward (result formats changed
    so the appended columns come as text)."""

    def bind(self, bind_body: bytes) -> tuple[bytes, RowRewriter]: ...

    def describe(self) -> RowRewriter: ...


@dataclass(slots=True)
class Expectation:
    kind: int
    rewriter: RowRewriter | None = None
    # maps an error position in the rewritten text back to the client's text
    map_position: Callable[[int], int] | None = None
    statement: bytes | None = None  # the statement a Parse creates
    # PARSE: the proxy's record of that name before (None: none), put back if
    # Postgres refuses or skips the Parse (a name in use stays what it was: 42P05);
    # QUERY: the unnamed statement it drops, put back if Postgres skips it
    replaced: Any = None
    # HIDDEN: the replies of mlproxy's own messages, dropped up to the `closes`-th
    # CloseComplete; an error among them is shown as `hidden_error(raw)` makes it
    closes: int = 0
    hidden_error: Callable[[bytes], bytes] | None = None
    # a rewritten result: when it went upstream (perf_counter), rows seen, failed
    # (for the model-call log line when it ends, call_log.py)
    started: float = 0.0
    rows: int = 0
    failed: bool = False
    flush: bool = False  # CLOSE: a Flush with a body (refused, unless read inside a COPY)


def statement_error(exc: BaseException) -> PgError:
    """An exception of model evaluation as the statement's ErrorResponse (predictor
    errors carry their SQLSTATE, e.g. 22023 for a value the model cannot take)."""
    if isinstance(exc, PgError):
        return exc
    if not getattr(exc, "sqlstate", None):  # not a predictor's error: a bug, logged in full
        log.error("internal error evaluating a model call: %r", exc, exc_info=exc)
    return PgError(getattr(exc, "sqlstate", None) or "XX000",
                   getattr(exc, "message", None) or str(exc) or type(exc).__name__,
                   hint=getattr(exc, "hint", None))


def expectation_kind(msg_type: int, first_byte: int = 0) -> int:
    """What a client's extended-protocol message is answered with (its kind)."""
    if msg_type == p.F_PARSE:
        return PARSE
    if msg_type == p.F_BIND:
        return BIND
    if msg_type == p.F_DESCRIBE:
        return DESCRIBE_STATEMENT if first_byte == ord("S") else DESCRIBE_PORTAL
    if msg_type == p.F_EXECUTE:
        return EXECUTE
    return CLOSE


class ResponseTracker:
    """Matches replies to requests for a session with rewritten statements."""

    def __init__(self) -> None:
        self.statements: dict[bytes, StatementPlan] = {}
        self.portals: dict[bytes, RowRewriter] = {}
        self.queue: deque[Expectation] = deque()
        self._rows: list[bytes] = []  # runs of complete DataRows awaiting their batch
        self._starts: list[Any] = []  # each run's message offsets, if the caller had them
        self._row_count = 0
        self._row_bytes = 0
        self._rows_for: RowRewriter | None = None
        # After a result could not be rewritten (a value the model cannot take), the
        # client has its ErrorResponse: the rest up to the ReadyForQuery is dropped.
        self._failed = False
        # An error's skip to Sync went past every message noted so far (`_skip_to_sync`):
        # Postgres ignores the client's next messages up to its Sync, so they are not
        # noted (no reply comes for them)
        self._skipping = False

    @property
    def active(self) -> bool:
        """False once nothing rewritten is prepared, open or awaited (nor the replies
        of mlproxy's own messages, nor the rest of a failed result to drop): the
        session can go back to plain relaying."""
        return bool(self.statements or self.portals or self._failed or self._skipping or
                    any(e.rewriter is not None or e.kind >= HIDDEN for e in self.queue))

    # -- client -> server ----------------------------------------------------------
    def interceptor_for(self, raw: bytes | memoryview):
        """The interceptor that must see this Bind, or Describe of a statement, before
        it goes upstream (a prepared statement whose model predictions are computed
        per execution, prepared_general), or None."""
        body = memoryview(raw)[5:]
        try:
            if raw[0] == p.F_DESCRIBE:
                kind, name = p.decode_target(body)
                if kind != b"S" or self._parsed_in_this_pipeline(name):
                    return None  # (its tables are there: see prepared_general.describe)
                return getattr(self.statements.get(name), "interceptor", None)
            interceptor = getattr(self.statements.get(p.bind_names(body)[1]), "interceptor", None)
            if interceptor is not None:
                p.decode_bind(body)
        except p.MalformedMessage:
            return None  # goes upstream as sent: Postgres refuses it with its own error
        return interceptor

    def _parsed_in_this_pipeline(self, name: bytes) -> bool:
        """Is the Parse of statement `name` still unanswered with no Sync, Query or
        FunctionCall behind it? A message sent now runs in the Parse's transaction,
        or is skipped if it failed (a driver's Parse and Describe sent together)."""
        parsed = False
        for expectation in self.queue:
            if expectation.kind == PARSE and expectation.statement == name:
                parsed = True
            elif expectation.kind in _GROUP_ENDS:
                parsed = False
        return parsed

    @property
    def discarding(self) -> bool:
        """Is the rest of a failed result being dropped until its ReadyForQuery?"""
        return self._failed

    def expect_hidden(self, closes: int, error: Callable[[bytes], bytes]) -> None:
        """mlproxy sent messages of its own (their replies end with `closes`
        CloseCompletes); the client's next requests are answered after them."""
        self.queue.append(Expectation(HIDDEN, closes=closes, hidden_error=error))

    @property
    def hidden_next(self) -> bool:
        """Are the next replies those of mlproxy's own messages (not the client's)?"""
        return bool(self.queue) and self.queue[0].kind == HIDDEN

    def answered(self) -> None:
        """Every request sent so far has had its replies (a marker behind them came
        back): forget expectations that replies passing untracked left behind."""
        self.queue.clear()

    def plain_groups(self) -> int:
        """How many requests are awaited, when every one of them ends with its own
        ReadyForQuery (a Query, a FunctionCall, extended messages up to their Sync)
        and none of their replies is rewritten or hidden: then a run of replies needs
        no matching, only a count of its ReadyForQuery messages (see
        `answered_groups`). -1 otherwise: a request still open (its Sync not sent),
        a rewritten result, a failed result being discarded, rows held."""
        if self._failed or self._rows:
            return -1
        groups = 0
        for expectation in self.queue:
            if expectation.rewriter is not None or expectation.kind >= HIDDEN:
                return -1
            groups += expectation.kind in _GROUP_ENDS
        if self.queue and self.queue[-1].kind not in _GROUP_ENDS:
            return -1
        return groups

    def answered_groups(self, count: int, status: int = 0) -> None:
        """`count` ReadyForQuery messages passed, without an ErrorResponse among the
        replies, the last with transaction `status`: the first `count` plain groups
        (see `plain_groups`) are answered."""
        queue = self.queue
        for _ in range(count):
            while queue.popleft().kind not in _GROUP_ENDS:
                pass
        self._ready(status)

    def _ready(self, status: int) -> None:
        """A ReadyForQuery with transaction `status` passed. Outside a transaction
        block no portal is left (Postgres drops them all when a transaction ends):
        once every request sent has been answered, none of the rewritten ones is."""
        if status == _IDLE and not self.queue and self.portals:
            self.portals.clear()

    def park_names(self) -> tuple[bytes, ...] | None:
        """Nothing awaited, held or open but prepared statements: their names (a
        client message naming none of them needs no tracking). None otherwise."""
        if self.queue or self._rows or self._failed or self._skipping or self.portals \
                or not self.statements:
            return None
        return tuple(self.statements)

    def expect_plain(self, kinds: list[int]) -> None:
        """Replies to requests already sent, that need no rewriting, come first."""
        if SYNC in kinds:
            self._skipping = False
        self.queue.extend(Expectation(kind) for kind in kinds)

    def ignored_in_copy(self, first: int, count: int, flushes: int) -> None:
        """Postgres ignores `count` of the requests awaited, from the `first` on, and
        the first `flushes` Flushes with a body awaited (it read them inside a COPY
        FROM STDIN): they get no reply."""
        index = -1
        kept = deque()
        for expectation in self.queue:
            if expectation.kind in _REQUESTS:
                index += 1
                if first <= index < first + count:
                    continue
            elif expectation.flush and flushes:
                flushes -= 1
                continue
            kept.append(expectation)
        self.queue.clear()
        self.queue.extend(kept)

    def add_statement(self, name: bytes, plan: StatementPlan,
                      map_position: Callable[[int], int] | None = None) -> None:
        """A rewritten Parse is sent for statement `name`. (Recorded now, for the
        Binds pipelined behind it; put back as it was if the Parse fails. Not while
        Postgres skips to Sync: it ignores the Parse.)"""
        if self._skipping:
            return
        replaced = self.statements.get(name)
        self.statements[name] = plan
        self.queue.append(Expectation(PARSE, map_position=map_position, statement=name,
                                      replaced=replaced))

    def add_unsent_statement(self, name: bytes, plan: StatementPlan) -> None:
        """Statement `name` exists for the client (mlproxy answered its Parse) but not
        upstream yet: `plan` sends it there before its first use. It replaces what
        the name was, as a Parse does."""
        self.statements[name] = plan

    def add_query(self, rewriter: RowRewriter | None,
                  map_position: Callable[[int], int] | None = None) -> None:
        """A simple Query is sent (rewritten, if `rewriter`)."""
        self._query_sent(Expectation(QUERY, rewriter, map_position,
                                     started=time.perf_counter() if rewriter else 0.0))

    def _query_sent(self, expectation: Expectation, runs: bool = True) -> None:
        """Postgres drops the unnamed statement and portal when it runs a Query
        (exec_simple_query): a later Bind of either gets its 26000 / 34000, not
        the rewritten statement's handling. (Put back if the Query is skipped, as a
        skipped Parse's name is: `_parse_undone`.) Not a Query Postgres refuses as it
        reads the message (`runs` False: protocol.query_runs)."""
        if runs:
            expectation.replaced = self.unnamed_dropped()
        self.queue.append(expectation)

    def unnamed_dropped(self) -> StatementPlan | None:
        """A Query ran: the unnamed statement and portal are gone. The statement's
        plan, if it was one of the tracker's."""
        self.portals.pop(b"", None)
        return self.statements.pop(b"", None)

    def client_message(self, msg_type: int, raw: bytes) -> bytes:
        """Note a client message on its way upstream; returns the bytes to forward.
        A message Postgres would refuse goes on as sent (Postgres answers it with its
        own error, then skips to Sync as it does): only its reply is expected."""
        if self._skipping:  # Postgres ignores it, up to the Sync
            if msg_type != p.F_SYNC:
                return raw
            self._skipping = False
        if msg_type == p.F_FLUSH and len(raw) != 5:
            # a body: Postgres refuses it, then skips to the next Sync (session._account)
            self.queue.append(Expectation(CLOSE, flush=True))
            return raw
        try:
            return self._client_message(msg_type, raw)
        except p.MalformedMessage:
            first = raw[5] if len(raw) > 5 else 0
            kind = {p.F_SYNC: SYNC, p.F_QUERY: QUERY, p.F_FUNCTION_CALL: FUNCTION}.get(
                msg_type, None)
            self.queue.append(Expectation(kind if kind is not None else expectation_kind(msg_type, first)))
            return raw

    def client_pipeline(self, data: bytes) -> bytes | None:
        """The common request of a prepared model statement, as one chunk: a Bind of a
        statement the proxy rewrites with streaming calls, a Describe of its portal
        (or none), an Execute of that portal, a Sync. Noted as `client_message` notes
        each of them; returns the bytes to forward (the Bind rewritten). None, with
        nothing noted, for anything else (a malformed message too: the general path
        then lets Postgres judge it). Reads the Bind as decode_bind does, without the
        objects: drivers send this at every execution."""
        n = len(data)
        if n > p.SMALL_MESSAGE_LIMIT or n < 5 or data[0] != 0x42 or self._skipping:  # B
            return None
        end = 1 + int.from_bytes(data[1:5], "big")
        if end + 15 > n or end < 5:  # an Execute and a Sync at least must follow
            return None
        z1 = data.find(b"\x00", 5, end)
        z2 = data.find(b"\x00", z1 + 1, end) if z1 >= 0 else -1
        if z2 < 0:
            return None
        plan = self.statements.get(data[z1 + 1:z2])
        bind_section = getattr(plan, "bind_section", None)  # PreparedStreaming's
        if bind_section is None:
            return None
        pos = z2 + 3 + 2 * int.from_bytes(data[z2 + 1:z2 + 3], "big")
        formats = (pos - z2 - 3) >> 1
        if pos + 2 > end:
            return None
        count = int.from_bytes(data[pos:pos + 2], "big")
        if formats > 1 and formats != count:
            return None
        pos += 2
        for _ in range(count):
            size = int.from_bytes(data[pos:pos + 4], "big", signed=True)
            pos += 4 if size == -1 else 4 + size
            if size < -1 or pos > end:
                return None
        if pos + 2 > end or pos + 2 + 2 * int.from_bytes(data[pos:pos + 2], "big") != end:
            return None
        section = pos
        portal = data[5:z1]
        named = portal + b"\x00"
        # the Describe of the portal, if any, then its Execute, then Sync: exactly
        describe = data[end] == 0x44 and data[end + 5] == 0x50  # D, P
        if describe:
            after = end + 6 + len(named)
            if int.from_bytes(data[end + 1:end + 5], "big") != 5 + len(named) or data[end + 6:after] != named:
                return None
        else:
            after = end
        if after + 5 > n or data[after] != 0x45:  # E
            return None
        stop = after + 1 + int.from_bytes(data[after + 1:after + 5], "big")
        if stop != after + 9 + len(named) or data[after + 5:stop - 4] != named \
                or data[stop:] != b"S\x00\x00\x00\x04":
            return None
        new_section, rewriter = bind_section(data[section:end])
        self.portals[portal] = rewriter
        queue = self.queue
        queue.append(Expectation(BIND))
        if describe:
            queue.append(Expectation(DESCRIBE_PORTAL, rewriter))
        queue.append(Expectation(EXECUTE, rewriter, started=time.perf_counter()))
        queue.append(Expectation(SYNC))
        return b"".join((b"B", (section - 1 + len(new_section)).to_bytes(4, "big"), data[5:section],
                         new_section, data[end:]))

    def _client_message(self, msg_type: int, raw: bytes) -> bytes:
        body = memoryview(raw)[5:]
        if msg_type == p.F_PARSE:
            name = p.decode_parse(body).name
            replaced = self.statements.pop(name, None)  # re-preparing a name replaces it
            self.queue.append(Expectation(PARSE, statement=name, replaced=replaced))
        elif msg_type == p.F_BIND:
            portal, statement = p.bind_names(body)
            plan = self.statements.get(statement)
            if plan is None:  # (the rest is Postgres' to judge)
                self.portals.pop(portal, None)
                self.queue.append(Expectation(BIND))
            else:  # the plan reads the whole Bind, validated
                new_body, rewriter = plan.bind(bytes(body))
                self.portals[portal] = rewriter
                self.queue.append(Expectation(BIND))
                raw = p.message(b"B", new_body)
        elif msg_type == p.F_DESCRIBE:
            kind, name = p.decode_target(body)
            if kind == b"S":
                plan = self.statements.get(name)
                self.queue.append(Expectation(DESCRIBE_STATEMENT,
                                              plan.describe() if plan is not None else None))
            else:
                self.queue.append(Expectation(DESCRIBE_PORTAL,
                                              self.portals.get(name) if kind == b"P" else None))
        elif msg_type == p.F_EXECUTE:
            portal, _ = p.decode_execute(body)
            rewriter = self.portals.get(portal)
            self.queue.append(Expectation(EXECUTE, rewriter,
                                          started=time.perf_counter() if rewriter else 0.0))
        elif msg_type == p.F_CLOSE:
            kind, name = p.decode_target(body)
            if kind == b"S":
                self.statements.pop(name, None)
            elif kind == b"P":
                self.portals.pop(name, None)
            self.queue.append(Expectation(CLOSE))
        elif msg_type == p.F_SYNC:
            self.queue.append(Expectation(SYNC))
        elif msg_type == p.F_QUERY:
            self._query_sent(Expectation(QUERY), runs=p.query_runs(raw))
        elif msg_type == p.F_FUNCTION_CALL:
            self.queue.append(Expectation(FUNCTION))
        return raw

    # -- server -> client ----------------------------------------------------------
    def server_message(self, msg_type: int, raw: bytes) -> list[bytes]:
        """Process one server message; returns the bytes to send to the client now
        (DataRows of a rewritten result are held until the batch is flushed)."""
        if self._failed:
            if msg_type != p.B_READY_FOR_QUERY:
                return []
            self._failed = False
            while self.queue and self.queue[0].kind not in (SYNC, QUERY):
                self.queue.popleft()
            if self.queue:
                self.queue.popleft()
            self._ready(raw[5])
            return [raw]
        if msg_type == p.B_DATA_ROW:
            if self.wants_rows():
                return self.add_rows(raw, 1)
            return self.flush() + [raw]
        out = self.flush() if self._rows else []
        if msg_type in _ASYNC or not self.queue:
            if msg_type == p.B_READY_FOR_QUERY:
                self._ready(raw[5])
            out.append(raw)
            return out
        head = self.queue[0]
        kind = head.kind
        if kind == HIDDEN:
            if msg_type == p.B_ERROR:
                out.append(head.hidden_error(raw))
                self._skip_to_sync()
            elif msg_type == p.B_CLOSE_COMPLETE:
                head.closes -= 1
                if not head.closes:
                    self.queue.popleft()
            return out
        if kind == FAIL_BLOCK:  # its error is dropped; its ReadyForQuery (E) is the client's
            if msg_type == p.B_READY_FOR_QUERY:
                self.queue.popleft()
                self._ready(raw[5])
                out.append(raw)
            return out
        if msg_type == p.B_ERROR:
            if head.map_position is not None or head.rewriter is not None:
                raw = _map_error(raw, head.map_position)
            out.append(raw)
            if kind == QUERY or kind == FUNCTION:
                head.failed = True
                return out  # the query (or function call) goes on to its ReadyForQuery
            if kind == PARSE:  # the failed Parse made nothing
                self.queue.popleft()
                self._parse_undone(head, failed=True)
            self._skip_to_sync()
            return out
        if kind == QUERY or kind == FUNCTION:
            if msg_type == p.B_ROW_DESCRIPTION and head.rewriter is not None:
                raw = head.rewriter.row_description(raw)
            if msg_type == p.B_READY_FOR_QUERY:
                self.queue.popleft()
                if head.rewriter is not None and not head.failed:
                    _log_call(head)
                self._ready(raw[5])
        elif kind == DESCRIBE_STATEMENT:
            if msg_type != p.B_PARAMETER_DESCRIPTION:
                if msg_type == p.B_ROW_DESCRIPTION and head.rewriter is not None:
                    raw = head.rewriter.row_description(raw)
                self.queue.popleft()
        elif kind == DESCRIBE_PORTAL:
            if msg_type == p.B_ROW_DESCRIPTION and head.rewriter is not None:
                raw = head.rewriter.row_description(raw)
            self.queue.popleft()
        elif kind == EXECUTE:
            if msg_type in (p.B_COMMAND_COMPLETE, p.B_PORTAL_SUSPENDED, p.B_EMPTY_QUERY):
                self.queue.popleft()
                if head.rewriter is not None:
                    _log_call(head)
        else:  # PARSE, BIND, CLOSE, SYNC: exactly one reply each
            self.queue.popleft()
            if msg_type == p.B_READY_FOR_QUERY:
                self._ready(raw[5])
        out.append(raw)
        return out

    def fail_block(self, raw: bytes) -> bool:
        """At the ReadyForQuery `raw` that ends a failed result (`discarding`): Postgres
        ran the statement, so a transaction block it is in goes on (status T), where
        Postgres' own error would have failed it. When nothing else is awaited, the
        caller sends FAIL_BLOCK_QUERY upstream instead of relaying `raw`: the failed
        request is done, and that statement's replies are expected, its error dropped
        and its ReadyForQuery (E) relayed in place of this one. True then; False (and
        `raw` goes on as server_message says) otherwise: outside a block, or with
        requests pipelined behind this one (they ran in the block; a known limit)."""
        if not self._failed or raw[5] != _IN_BLOCK:
            return False
        queue = self.queue
        if not queue or queue[-1].kind not in (SYNC, QUERY) \
                or any(e.kind in (SYNC, QUERY) for e in list(queue)[:-1]):
            return False
        self._failed = False
        queue.clear()
        queue.append(Expectation(FAIL_BLOCK))
        return True

    def pipeline_reply(self, data: bytes) -> tuple[list[bytes], bytes, bool] | None:
        """The replies to a `client_pipeline` request, when `data` is all of them and
        nothing else: BindComplete, the RowDescription if it was described, a few
        DataRows (a lookup), CommandComplete, ReadyForQuery. Noted and rewritten in
        one pass, with the bytes `server_message` would give message by message (a
        batch flushed at the CommandComplete): (the bytes to send, the ReadyForQuery,
        False). A failed batch is its ErrorResponse, the CommandComplete dropped, and
        the ReadyForQuery left to the caller (True), to pass on as the end of a failed
        result (fail_block, server_message). None,
        nothing done, for anything else: an error, a notice, a suspended portal,
        more rows, a remote model's (whose rows go to workers.submit)."""
        queue = self.queue
        if self._failed or self._rows or not 3 <= len(queue) <= 4 or queue[0].kind != BIND \
                or queue[-1].kind != SYNC:
            return None
        execute = queue[-2]
        rewriter = execute.rewriter
        described = len(queue) == 4
        if execute.kind != EXECUTE or rewriter is None or getattr(rewriter, "remote", False) \
                or (described and (queue[1].kind != DESCRIBE_PORTAL or queue[1].rewriter is not rewriter)):
            return None
        n = len(data)
        if n > THREAD_MIN_BYTES or data[:5] != b"2\x00\x00\x00\x04":
            return None
        pos = 5
        if described:
            if data[5] != 0x54:  # T
                return None
            pos = 6 + int.from_bytes(data[6:10], "big")
            description = data[5:pos]
        rows_at, count = pos, 0
        while data[pos:pos + 1] == b"D" and count <= _PIPELINE_ROWS:
            pos += 1 + int.from_bytes(data[pos + 1:pos + 5], "big")
            count += 1
        rows_end = pos
        if count > _PIPELINE_ROWS or data[pos:pos + 1] != b"C":
            return None
        pos += 1 + int.from_bytes(data[pos + 1:pos + 5], "big")
        ready = data[pos:]
        if len(ready) != 6 or ready[:5] != b"Z\x00\x00\x00\x05":
            return None
        out = [data[:5]]
        if described:
            out.append(rewriter.row_description(description))
        if count:
            execute.rows += count
            try:
                out.append(rewriter.data_rows(data[rows_at:rows_end], count, None))
            except Exception as exc:  # noqa: BLE001 - any failure is this statement's error
                # as message by message: the batch is its error, the CommandComplete
                # dropped, and the ReadyForQuery the caller's to pass on (fail_block)
                out.append(p.error_response(statement_error(exc)))
                self._failed = True
                while queue[0] is not execute:
                    queue.popleft()
                return out, ready, True
        queue.clear()  # (the whole queue is this request's)
        out.append(data[rows_end:pos])
        _log_call(execute)
        self._ready(ready[5])
        out.append(ready)
        return out, ready, False

    def _skip_to_sync(self) -> None:
        """The server skips the requests up to Sync: the Parses among them made
        nothing (undone last first). If the client's Sync is not noted yet, the
        messages noted before it are skipped too (`_skipping`): an error can come back
        before the rest of its pipeline is noted (a takeover relays it later)."""
        skipped = []
        while self.queue and self.queue[0].kind != SYNC:
            skipped.append(self.queue.popleft())
        self._skipping = not self.queue  # the Sync is still to come
        for expectation in reversed(skipped):
            self._parse_undone(expectation, failed=False)

    def _parse_undone(self, expectation: Expectation, failed: bool) -> None:
        """A Parse Postgres refused (`failed`) or skipped: the name is what it was
        before, except the unnamed statement, which a failed Parse leaves undefined.
        A Query Postgres skipped dropped no unnamed statement."""
        name = expectation.statement
        if expectation.kind == QUERY:  # a skipped Query dropped nothing
            if not failed and expectation.replaced is not None:
                self.statements[b""] = expectation.replaced
            return
        if expectation.kind != PARSE or name is None:
            return
        if expectation.replaced is None or (failed and name == b""):
            self.statements.pop(name, None)
        else:
            self.statements[name] = expectation.replaced

    def wants_rows(self) -> bool:
        """Are DataRows arriving now results to rewrite? (Not after the result failed:
        then they are dropped.)"""
        head = self.queue[0] if self.queue else None
        return not self._failed and head is not None and head.rewriter is not None and head.kind in (EXECUTE, QUERY)

    def add_rows(self, rows: bytes, count: int, starts: Any = None) -> list[bytes]:
        """Hold a run of `count` complete DataRows of the current rewritten result
        (call only when `wants_rows()`; `starts`: their offsets in `rows`, if known);
        returns what must go out first, if anything."""
        head = self.queue[0]
        head.rows += count
        rewriter = head.rewriter
        out = self.flush() if self._rows and self._rows_for is not rewriter else []
        self._rows_for = rewriter
        self._rows.append(rows)
        self._starts.append(starts if starts is not None or count != 1 else _FIRST)
        self._row_count += count
        self._row_bytes += len(rows)
        return out

    def take_rows(self) -> tuple[RowRewriter, bytes, int, Any] | None:
        """Release the DataRows held so far for the caller to rewrite (the session
        does big batches on a worker thread): (rewriter, rows, count, starts), or
        None; `starts` are the message offsets if every run came with its own."""
        if not self._rows:
            return None
        rows, starts, count, rewriter = self._rows, self._starts, self._row_count, self._rows_for
        self._drop_rows()
        if len(rows) == 1:
            return rewriter, rows[0], count, starts[0]
        offsets = None
        if all(s is not None for s in starts):
            shifts = np.cumsum([0] + [len(r) for r in rows[:-1]])
            offsets = np.concatenate([np.asarray(s, dtype=np.int64) + shift for s, shift in zip(starts, shifts)])
        return rewriter, b"".join(rows), count, offsets

    def fail(self, exc: BaseException) -> bytes:
        """Rewriting the current result failed: its ErrorResponse, to send in place
        of the batch; the rows still held and every reply up to the ReadyForQuery
        are dropped (the client has its error)."""
        self._failed = True
        self._drop_rows()
        return p.error_response(statement_error(exc))

    def _drop_rows(self) -> None:
        """Hold no rows (they were taken, or their result failed)."""
        self._rows, self._starts, self._row_count, self._row_bytes, self._rows_for = [], [], 0, 0, None

    def flush(self) -> list[bytes]:
        """Rewrite and release the DataRows held so far (one predictor call)."""
        batch = self.take_rows()
        if batch is None:
            return []
        rewriter, rows, count, starts = batch
        try:
            return [rewriter.data_rows(rows, count, starts)]
        except Exception as exc:  # noqa: BLE001 - any failure is this statement's error
            return [self.fail(exc)]

    @property
    def holding_rows(self) -> int:
        return self._row_count

    @property
    def holding_bytes(self) -> int:
        """The size of the DataRows held (a batch is bounded in bytes as well as rows).
        The rows of a remote model's result count as at least a worker thread's batch
        (workers.THREAD_MIN_BYTES): the session then always hands them to
        workers.submit, which awaits the model's endpoint (a plain call on the event
        loop would wait for it)."""
        if self._rows_for is not None and getattr(self._rows_for, "remote", False):
            return max(self._row_bytes, THREAD_MIN_BYTES)
        return self._row_bytes


def _log_call(head: Expectation) -> None:
    CALLS.finished(getattr(head.rewriter, "model_names", ()), head.rows, head.started,
                   "streaming")


def _map_error(raw: bytes, map_position: Callable[[int], int] | None) -> bytes:
    """The ErrorResponse with its position moved into the client's own text, and
    without the context lines of mlproxy's own catalog functions."""
    fields = p.parse_fields(memoryview(raw)[5:])
    internal = "mlproxy." in fields.get("W", "")
    if ("P" not in fields or map_position is None) and not internal:
        return raw
    if internal:
        del fields["W"]
    if "P" in fields and map_position is not None:
        fields["P"] = str(map_position(int(fields["P"])))
    body = b"".join(k.encode() + p.cstr(v) for k, v in fields.items()) + b"\x00"
    return p.message(b"E", body)


def result_formats(bind_body: bytes) -> tuple[int, list[int], int]:
    """(offset of the result-format section, the client's result format codes, end);
    raises MalformedMessage where Postgres would refuse the Bind."""
    bind = p.decode_bind(bind_body)
    return bind.result_section, list(bind.result_formats), len(bind_body)


def with_result_formats(bind_body: bytes, codes: list[int]) -> bytes:
    """The Bind body with its result-format codes replaced."""
    start, _, end = result_formats(bind_body)
    return bind_body[:start] + format_codes(codes) + bind_body[end:]


def format_codes(codes: list[int]) -> bytes:
    """A Bind's result-format section: the count, then the codes."""
    return struct.pack(f"!h{len(codes)}h", len(codes), *codes)
