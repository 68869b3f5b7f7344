"""The relay pump: pass-through sessions relayed by a native thread.

Most of a proxy's traffic is nothing it needs to look at: statements that call no
model and their results. Relaying those in Python costs one event-loop callback per
chunk and direction; at pgbench rates that, not the kernel's work of moving the
bytes, bounded the proxy's throughput. So a session with nothing to look at is
*lent* to the pump (`_mlproxy_pump`, built from proxy/_relay_pump.c): a native
thread with its own epoll set that forwards both directions without the GIL and
keeps the session's bookkeeping (requests in flight, COPY IN state, transaction
status), applying the same rules as the per-chunk fast path (wire_scan.py).

The session comes back the moment it needs Python: the pump forwards what came
before the first message it does not handle (a statement containing an
interceptor's trigger, a message naming a statement of the session's parked reply
rewrite (reply_rewrite.py), extended-protocol messages left before their Sync, an
ErrorResponse or CopyInResponse, Terminate, a message cut by the read other than a
streamed one) and hands the session back with the rest, which the session's framed
path then handles as if it had just been read. The session also takes itself back
(`reclaim`) whenever Python wants to act on its own: a notice to send, shutdown,
new triggers.

While lent, the session's transports are paused and untouched (nothing is written
through them, so bytes cannot overtake each other); the pump relays through its own
dup of each descriptor and closes them when the session comes back. Sessions with
TLS on either side stay in Python (the bytes on the wire are not the messages).

Without the extension (no compiler at install time), or with `--relay python`,
sessions never leave Python; the results are the same.
"""

from __future__ import annotations

import asyncio
import logging
from typing import NamedTuple, Protocol

from .request_ends import RequestEnds

try:
    import _mlproxy_pump as _native  # type: ignore[import-not-found]
except ImportError:  # not built: every session relays in Python
    _native = None

log = logging.getLogger("mlproxy.pump")

AVAILABLE = _native is not None

# Why a session came back (Record.reason).
RECLAIMED = 0
CLIENT_DATA = 1  # `data` is client input the pump did not handle
SERVER_DATA = 2  # `data` is server input the pump did not handle
CLIENT_CLOSED = 3  # end of stream or error on the client socket
SERVER_CLOSED = 4  # the same on the server socket
FAILED = 5  # the pump ran out of memory and lost bytes: the session must end


class Record(NamedTuple):
    """A session's state as the pump hands it back."""

    key: int
    reason: int
    data: bytes  # input for the session's framed path (CLIENT_DATA/SERVER_DATA)
    to_client: bytes  # forwarded by the pump but not yet written: goes out first
    to_server: bytes
    pending: int  # requests in flight (Session.pending)
    ends_kind: int  # their kind, all one (request_ends.QUERY or SYNC; 0: none)
    copy_in: int
    ready_seen: int  # a ReadyForQuery passed: txstatus is the last one's status
    txstatus: int
    skip_client: int  # the pump was inside a streamed message: bytes left of it
    skip_server: int
    bytes_client: int  # bytes relayed from each side, for the session's totals
    bytes_server: int
    readies: int  # ReadyForQuery messages relayed (statements answered), for the statistics


class Session(Protocol):
    """What the pump needs of a session (proxy/session.py)."""

    id: int
    pending: int
    copy_in: bool
    ends: RequestEnds

    def handed_back(self, record: Record) -> None: ...

    def take_back(self, keep_input: bool = True) -> None: ...


class RelayPump:
    """One server's pump: the native thread and the sessions lent to it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        assert _native is not None
        self._native = _native.Pump()
        self._loop = loop
        self._lent: dict[int, Session] = {}
        loop.add_reader(self._native.fileno(), self._collect)

    @classmethod
    def start(cls, mode: str) -> "RelayPump | None":
        """The pump for `--relay mode` (native|python), or None: relay in Python."""
        if mode == "python":
            return None
        if _native is None:
            log.warning("the native relay is not built (no C compiler at install time?): "
                        "relaying in Python")
            return None
        return cls(asyncio.get_running_loop())

    def lend(self, session: "Session", client_fd: int, server_fd: int, limits: bytes,
             triggers: tuple[bytes, ...], names: tuple[bytes, ...] = ()) -> None:
        """Hand `session` to the pump. Its transports must be paused and idle.
        `names`: its parked reply rewrite's statements (a message naming one comes
        back, as wire_scan.client_chunk says). Its requests in flight must be of
        one kind (`session.ends.kind`), as the pump keeps them."""
        self._native.lend(session.id, client_fd, server_fd, limits, triggers,
                          session.pending, session.ends.kind, session.copy_in, names)
        self._lent[session.id] = session

    def reclaim(self, session: "Session") -> Record | None:
        """Take `session` back now: its record (None if it was not lent)."""
        if self._lent.pop(session.id, None) is None:
            return None
        found = self._native.reclaim(session.id)
        return Record(*found) if found is not None else None

    def reclaim_all(self) -> None:
        for session in list(self._lent.values()):
            session.take_back()

    def counters(self) -> dict[int, tuple[int, int, int, int]]:
        """Per lent session id, (bytes from the client, bytes from the server,
        ReadyForQuery messages, requests in flight) since it was lent: the statistics
        of sessions the pump relays now (proxy/observe/stats.py), read on demand. A
        session handed back stays here until `_collect` gives it its record, whose
        counts it adds to its own then: a reading on the event loop counts each once."""
        return {key: tuple(rest) for key, *rest in self._native.counters()}

    @property
    def lent(self) -> int:
        return len(self._lent)

    def _collect(self) -> None:
        for found in self._native.take():
            record = Record(*found)
            session = self._lent.pop(record.key, None)
            if session is not None:
                session.handed_back(record)

    def close(self) -> None:
        """Take every session back and stop the thread."""
        self.reclaim_all()
        self._loop.remove_reader(self._native.fileno())
        self._native.close()
