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
from .protocol import F_SYNC, F_TERMINATE, ready_for_query


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
    async def server_message(self) -> Frame:
        """Next complete message from the upstream."""
        while not self._server:
            if self.server_closed:
                raise ConnectionResetError("upstream connection closed")
            self._server_ready.clear()
            await self._server_ready.wait()
        frame = self._server.popleft()
        self._server_bytes -= len(frame.raw)
        if not self._server:
            self.session._takeover_drained()
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
        self.session._write_client(data)
