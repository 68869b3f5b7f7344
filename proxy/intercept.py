"""The hook point where statements are intercepted on the client->server path.

An `Interceptor` sees each Query and Parse message whose lower-cased bytes contain
one of its `triggers(database)` (the relay tests the union of all interceptors'
triggers in its per-chunk fast path, see wire_scan.py: most traffic never gets past
them). Its `wants()` then decides whether the statement is taken over; everything it declines is forwarded
as the original bytes. A taken-over statement is handled by `handle()`, which gets
a `Takeover`: exclusive, message-level use of the session's two streams until it
returns. The session waits until every earlier request has been answered before
handing over, and replays the client messages that arrived meanwhile afterwards.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from .framing import Frame
from .protocol import (B_CLOSE_COMPLETE, B_ERROR, B_READY_FOR_QUERY, F_SYNC, F_TERMINATE,
                       FAIL_BLOCK_QUERY, message, ready_for_query)


class InterceptedSession(Protocol):
    """What of a session (proxy/session.py) an interceptor uses: its state and the
    relay's own way of sending requests and replies on. (A protocol, so that this
    module and the session's need not import each other.)"""

    database: str
    startup: Any  # startup.StartupMessage: user, database, parameters
    txstatus: bytes  # the last ReadyForQuery's status (I/T/E)
    pending: int
    unsynced: bool  # extended-protocol messages were sent since the last Sync
    unsynced_kinds: list[int]
    failed_since_sync: bool
    rewrite: Any  # the attached reply rewrite (reply_rewrite.py), or None

    def relay_frame(self, frame: Frame) -> None: ...

    def forward_request(self, raw: bytes) -> None: ...

    def relay_server_frames(self, frames: list[Frame]) -> None: ...

    async def relayed(self) -> None: ...

    def send_async(self, data: bytes) -> None: ...

    def _write_upstream(self, data: bytes) -> None: ...

    def _write_client(self, data: bytes) -> None: ...

    def _takeover_drained(self) -> None: ...

    def _resume_client_reading(self, reason: str | None = None) -> None: ...

_READY_HEADER = b"Z\x00\x00\x00\x05"
#: Close of the unnamed statement, and a Flush: see Takeover.query_begins
_CLOSE_UNNAMED = message(b"C", b"S\x00")
_FLUSH = message(b"H")


class Interceptor(Protocol):
    def triggers(self, database: str) -> tuple[bytes, ...]:
        """Lower-case byte strings: a Query/Parse to `database` that contains none
        of them (compared lower-cased, anywhere in the message) is never offered to
        `wants`. The server caches the answer until `subscribe`'s callback fires."""
        ...

    def subscribe(self, changed: Callable[[str], None]) -> None:
        """Call `changed(database)` whenever `triggers(database)` may answer anew."""
        ...

    def wants(self, frame: Frame, sql: bytes, session: InterceptedSession) -> bool:
        """Cheap test on a Query/Parse frame (`sql` is its statement text): take
        this statement over?"""
        ...

    async def handle(self, frame: Frame, takeover: "Takeover") -> None:
        """Answer the statement. On return the upstream must be idle (its last
        message a ReadyForQuery) and the client must have been answered."""
        ...


class Takeover:
    """Message-level access to both sides of a session, for one interception."""

    def __init__(self, session: InterceptedSession) -> None:
        self.session = session
        self._client: deque[Frame] = deque()
        self._server: deque[Frame] = deque()
        self._client_ready = asyncio.Event()
        self._server_ready = asyncio.Event()
        self.client_closed = False
        self.server_closed = False
        self._server_bytes = 0
        # a client's Query (query_begins): nothing sent upstream yet for it; an error
        # answered; its ReadyForQuery, held back for query_ends
        self._query = self._query_begins = self._query_failed = self._query_ready = False
        self._hidden_closes = 0  # CloseCompletes of query_begins' Close, still to come

    # -- a client's Query ----------------------------------------------------------
    def query_begins(self, *, drops_unnamed: bool = True) -> None:
        """The takeover answers a client's Query; two things Postgres does for any
        Query are done here for all of them, whatever the interceptor sends:

        - Postgres drops the unnamed statement as a Query begins, one that fails too
          (exec_simple_query): a later Bind of it gets 26000. What mlproxy sends
          upstream for the Query may be no Query at all (its own queries leave the
          unnamed statement alone: protocol.own_query), or nothing: so the first
          thing it sends that is not a Query is preceded by a Close of the unnamed
          statement, whose CloseComplete the takeover drops (`server_message`), and
          `query_ends` sends that Close if nothing went upstream.
        - An error fails the transaction block the Query ran in. One that mlproxy
          answered without Postgres failing (a model not ready, an ML statement it
          refused itself) leaves the block going on upstream: `query_ends` then fails
          it with FAIL_BLOCK_QUERY, and the Query's ReadyForQuery, held back until
          then, says E.

        `drops_unnamed` False: a Query Postgres refuses as it reads the message
        (protocol.query_runs) drops nothing."""
        self._query = True
        self._query_begins = drops_unnamed

    def _upstream(self, data: bytes) -> bytes:
        """`data` as the session writes it upstream during the takeover."""
        if self._query_begins:
            self._query_begins = False
            if data[:1] != b"Q":  # a simple Query drops the statement itself
                self._hidden_closes += 1
                return _CLOSE_UNNAMED + data
        return data

    async def query_ends(self) -> None:
        """The client's Query is answered (see query_begins): the unnamed statement
        dropped upstream and the block failed if they are not yet, then the
        ReadyForQuery."""
        self._query = False
        if self._query_failed and self.session.txstatus == b"T":
            self.send_server(FAIL_BLOCK_QUERY)  # its error is not the client's
            while (await self.server_message()).type != B_READY_FOR_QUERY:
                pass
        elif self._query_begins:
            self.send_server(_FLUSH)
        while self._hidden_closes:  # the first CloseComplete to come: replies come in order
            for i, frame in enumerate(self._server):
                if frame.type == B_CLOSE_COMPLETE:
                    del self._server[i]
                    self._server_bytes -= len(frame.raw)
                    self._hidden_closes -= 1
                    break
            else:
                await self._server_arrives()
        if not self._server:
            self.session._takeover_drained()
        if self._query_ready:
            self.session._write_client(ready_for_query(self.session.txstatus))

    # -- fed by the session ------------------------------------------------------
    def _push_client(self, frame: Frame) -> None:
        self._client.append(frame)
        self._client_ready.set()

    def _push_server(self, frame: Frame) -> None:
        self._server.append(frame)
        self._server_bytes += len(frame.raw)
        self._server_ready.set()

    def _close(self, client: bool) -> None:
        if client:
            self.client_closed = True
            self._client_ready.set()
        else:
            self.server_closed = True
            self._server_ready.set()

    @property
    def queued_client_bytes(self) -> int:
        return sum(len(f.raw) for f in self._client)

    @property
    def queued_server_bytes(self) -> int:
        return self._server_bytes

    def _drain_server(self) -> list[Frame]:
        frames = list(self._server)
        self._server.clear()
        self._server_bytes = 0
        return frames

    def _drain_client(self) -> list[Frame]:
        frames = list(self._client)
        self._client.clear()
        return frames

    # -- used by interceptors ----------------------------------------------------
    async def _server_arrives(self) -> None:
        if self.server_closed:
            raise ConnectionResetError("upstream connection closed")
        self._server_ready.clear()
        await self._server_ready.wait()

    async def server_message(self) -> Frame:
        """Next complete message from the upstream (not the CloseComplete of
        query_begins' Close)."""
        while True:
            while not self._server:
                await self._server_arrives()
            frame = self._server.popleft()
            self._server_bytes -= len(frame.raw)
            if not self._server:
                self.session._takeover_drained()
            if self._hidden_closes and frame.type == B_CLOSE_COMPLETE:
                self._hidden_closes -= 1
                continue
            return frame

    async def client_message(self) -> Frame:
        """Next complete message from the client (e.g. Bind after an intercepted Parse)."""
        while not self._client:
            if self.client_closed:
                raise ConnectionResetError("client connection closed")
            self._client_ready.clear()
            self.session._resume_client_reading()
            await self._client_ready.wait()
        return self._client.popleft()

    def peek_client(self) -> Frame | None:
        """The next client message if it has arrived already (not taken)."""
        return self._client[0] if self._client else None

    def unread_client(self, frame: Frame) -> None:
        """Give a client message back: it will be relayed after the takeover."""
        self._client.appendleft(frame)

    async def skip_until_sync(self) -> Frame | None:
        """Drop the client's messages up to its Sync and return the Sync, as Postgres
        skips them after an error in the extended protocol. A Terminate ends the
        skipping as Postgres' does (it closes the session there): it is given back,
        to be relayed after the takeover, and None is returned."""
        while True:
            msg = await self.client_message()
            if msg.type == F_SYNC:
                return msg
            if msg.type == F_TERMINATE:
                self.unread_client(msg)
                return None

    async def discard_until_sync(self) -> None:
        """After an error in the extended protocol the server skips the client's
        messages up to Sync; an interceptor that answered the error does the same,
        then says ReadyForQuery with the session's real transaction status."""
        if await self.skip_until_sync() is not None:
            self.send_client(ready_for_query(self.session.txstatus))

    def send_server(self, data: bytes) -> None:
        self.session._write_upstream(data)

    def send_client(self, data: bytes) -> None:
        if data[-6:-1] == _READY_HEADER:  # an answered statement, for the statistics
            self.session.readies += 1
            if self._query:  # see query_begins
                self._query_ready = True
                data = data[:-6]
        if self._query and not self._query_failed:
            self._query_failed = _has_error(data)
        if data:
            self.session._write_client(data)


def _has_error(data: bytes) -> bool:
    """Do the whole messages `data` hold an ErrorResponse?"""
    pos, end = 0, len(data) - 5
    while pos <= end:
        if data[pos] == B_ERROR:
            return True
        pos += 1 + int.from_bytes(data[pos + 1:pos + 5], "big")
    return False
