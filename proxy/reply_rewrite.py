"""The hook point where the server's replies are rewritten on the way to the client.

Interception (intercept.py) decides what a statement becomes; a `ReplyRewrite` then
owns the session's reply stream while results of such statements are on the way:
it matches replies to requests, holds and rewrites rows, keeps their order. The
session relays bytes and knows nothing of models: while a rewrite is attached
(`Session.attach_rewrite`), every client message goes through `client_message`
and every server chunk through `server_data`; the rewrite writes to the client
through the session and detaches itself when nothing is left to rewrite.

A rewrite with nothing in flight but prepared statements of its own (their names:
`park_names`) is *parked*: the session relays as if untracked (its fast path, the
relay pump) until a client message names one of them (wire_scan.names_message),
or a statement is intercepted, and then wakes it (`wake`) with what went upstream
meanwhile: requests each ending with a ReadyForQuery (`pending`) and the
extended-protocol messages since the last Sync (`unsynced_kinds`).

proxy.inference implements it (inference/tracked_relay.py); the relay core never
imports that package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class ReplyRewrite(Protocol):
    def client_message(self, msg_type: int, raw: bytes) -> bytes:
        """A client message on its way upstream (noted): the bytes to forward."""
        ...

    def client_chunk(self, data: bytes) -> bytes | None:
        """A chunk of client messages, starting at a message boundary, that the
        rewrite takes whole: one request ending with its Sync (none of it for an
        interceptor), noted; the bytes to forward. None: the session goes message by
        message (client_message)."""
        ...

    def interceptor_for(self, raw: bytes | memoryview) -> Any:
        """The interceptor that must see this Bind, or Describe of a statement, before
        it goes upstream, or None."""
        ...

    def server_data(self, data: bytes) -> None:
        """A chunk of the server's stream, relayed (rewritten) to the client."""
        ...

    def server_frames(self, frames: Sequence[Any]) -> None:
        """Whole server messages (framing.Frame) that precede the framer's input."""
        ...

    @property
    def busy(self) -> bool:
        """Rows are being rewritten, or replies wait behind them."""
        ...

    @property
    def hidden_next(self) -> bool:
        """The next replies answer mlproxy's own messages, not the client's."""
        ...

    def answered(self) -> bool:
        """Every request sent so far has had its replies (relay_owed's marker came
        back): False if a failed result is still being dropped."""
        ...

    def park_names(self) -> tuple[bytes, ...] | None:
        """When nothing is in flight: the statement/portal names whose messages must
        wake the rewrite (parked); None while it must stay attached."""
        ...

    def unnamed_dropped(self) -> None:
        """A client's Query, taken over, dropped the unnamed statement and portal
        upstream (as every Query does) without going through `client_message`."""
        ...

    def wake(self, pending: int, unsynced_kinds: Sequence[int]) -> None:
        """Attached again: `pending` requests, each answered up to a ReadyForQuery,
        and the extended messages `unsynced_kinds` (wire_scan.message_kind) went
        upstream untracked; their replies come first, unchanged."""
        ...

    def ignored_in_copy(self, first: int, count: int, flushes: int) -> None:
        """Postgres ignores `count` of the requests in flight, from the `first` on
        (Syncs), and the first `flushes` Flushes with a body in flight: it read them
        inside a COPY FROM STDIN (request_ends.py), so no reply comes for them."""
        ...

    def wake_interceptor(self) -> Any:
        """An interceptor that wakes the rewrite inside a takeover (for a naming
        message sent when untracked messages' replies may be partly relayed)."""
        ...
