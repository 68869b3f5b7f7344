"""One client connection and the upstream connection it owns.

The session is the asyncio Protocol of the client socket; `_UpstreamSide` is the
Protocol of its upstream socket. In the relay state every chunk is forwarded as the
original bytes. The common chunk (whole messages, nothing to intercept, nothing but
ReadyForQuery to note) is judged by one call (wire_scan.py); the others are framed
(headers only, see framing.Framer) and the few message types the session watches
(Query/Parse for interception, Sync/Query/ReadyForQuery to know when a request is in
flight, ErrorResponse for logging, COPY state) are looked at one by one.
Back-pressure: when one side's socket buffer fills, the other side stops reading.

A session with nothing for Python to look at is lent to the relay pump (pump.py),
which relays it natively until a chunk needs this code again.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
import time
from enum import Enum, auto
from typing import Any, Protocol

from . import errors, protocol
from .errors import PgError
from .framing import ALL, Frame, Framer, ProtocolViolation
from .intercept import Takeover
from .observe.stats import STATS
from .owed_replies import relay_owed
from .pump import CLIENT_DATA, FAILED, SERVER_DATA, Record
from .reply_rewrite import ReplyRewrite
from .request_ends import QUERY, SYNC, RequestEnds
from .protocol import (B_COPY_IN, B_ERROR, B_READY_FOR_QUERY, F_BIND, F_CLOSE, F_COPY_DONE,
                       F_COPY_FAIL, F_DESCRIBE, F_EXECUTE, F_FLUSH, F_FUNCTION_CALL, F_PARSE,
                       F_QUERY, F_SYNC, F_TERMINATE, COPY_IN_TYPES, FRONTEND_LIMITS, SESSION_LIMITS,
                       query_runs)
from .startup import (CancelRequest, GSSENCRequest, SSLRequest, StartupMessage,
                      parse_first_packet, unsupported_protocol)
from .upstream import UpstreamUnavailable, open_upstream
from .wire_scan import (CLIENT_LIMITS, COPY_IN_CLEARED, READY_SHIFT, REQUEST_SHIFT, SYNC_ENDS,
                        UNSYNCED_CLEARED, client_chunk, message_kind, names_message, server_chunk)


class SessionHost(Protocol):
    """What a session needs of the server that accepted it (server.ProxyServer),
    passed in, so that the session's module need not know the server's."""

    config: Any  # config.Config
    interceptors: list  # intercept.Interceptor
    triggers: dict[str, tuple[bytes, ...]]  # per database (see intercept.py)
    pump: Any  # pump.RelayPump | None
    ssl_context: ssl.SSLContext | None
    console: Any  # observe.console's admin console, or None

    def triggers_for(self, database: str) -> tuple[bytes, ...]: ...

    def next_session_id(self) -> int: ...

    def register(self, session: "Session") -> None: ...

    def unregister(self, session: "Session") -> None: ...


log = logging.getLogger("mlproxy.session")

_CLIENT_WATCH = frozenset((F_QUERY, F_PARSE, F_SYNC, F_FUNCTION_CALL, F_TERMINATE, F_FLUSH,
                           F_COPY_DONE, F_COPY_FAIL, F_BIND, F_DESCRIBE, F_EXECUTE, F_CLOSE))
_EXTENDED = frozenset((F_PARSE, F_BIND, F_DESCRIBE, F_EXECUTE, F_CLOSE))
_SERVER_WATCH = frozenset((B_READY_FOR_QUERY, B_ERROR, B_COPY_IN))
# While results are rewritten, every request and reply is matched (reply_rewrite.py).
_CLIENT_TRACKED = _CLIENT_WATCH
_TAKEOVER_QUEUE_LIMIT = 4 << 20  # stop reading the client beyond this much queued
# ReadyForQuery's status byte as the bytes object the session keeps.
_STATUS = [bytes([b]) for b in range(256)]


class State(Enum):
    STARTUP = auto()      # reading the first packet(s)
    CONNECTING = auto()   # opening the upstream connection
    RELAY = auto()        # forwarding bytes both ways
    HANDOVER = auto()     # waiting for in-flight requests before a takeover
    TAKEOVER = auto()     # an interceptor owns the streams
    CLOSED = auto()


_RELAY = State.RELAY  # a module global: one lookup less on every chunk


class _UpstreamSide(asyncio.Protocol):
    """Protocol of the upstream socket: hands everything to the session."""

    __slots__ = ("session", "data_received")

    def __init__(self, session: "Session") -> None:
        self.session = session
        # Bound straight to the session: one Python call less per chunk.
        self.data_received = session._server_data

    def connection_lost(self, exc: Exception | None) -> None:
        self.session._server_lost(exc)

    def pause_writing(self) -> None:
        self.session._pause_client_reading("upstream-buffer")

    def resume_writing(self) -> None:
        self.session._resume_client_reading("upstream-buffer")


class Session(asyncio.Protocol):
    """Protocol of a client socket, and the relay between it and the upstream."""

    def __init__(self, server: SessionHost) -> None:
        self.server = server
        self.config = server.config
        self.id = server.next_session_id()
        self.state = State.STARTUP
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.peer = "?"
        self.startup: StartupMessage | None = None
        self.database = ""
        self.parameters: dict[str, str] = {}
        self.txstatus = b"I"
        # requests sent upstream whose ReadyForQuery has not come back, in order
        # (`pending`: how many): the server ignores a Sync it reads inside a COPY
        # FROM STDIN, which the session learns only at the CopyInResponse
        self.ends = RequestEnds()
        # In COPY IN: from the CopyInResponse until the client's CopyDone/CopyFail,
        # or until the server gives up with an error. A Sync sent now gets no
        # ReadyForQuery, so it is not counted as a request.
        self.copy_in = False
        # Extended-protocol messages were sent since the last Sync: their replies may
        # be held by the server until that Sync, so no round trip of our own fits in.
        self.unsynced = False
        self.unsynced_kinds: list[int] = []
        # An ErrorResponse came since the last ReadyForQuery: in the extended protocol
        # the server now ignores everything up to the next Sync.
        self.failed_since_sync = False
        # An extended-protocol message failed with no request in flight and no Sync
        # sent since: the server ignores the client's Query/FunctionCall until it
        # reads a Sync, so they get no ReadyForQuery (and are not counted).
        self.skipping_to_sync = False
        self.opened = time.monotonic()
        self.bytes_in = 0
        self.bytes_out = 0
        self.readies = 0  # ReadyForQuery messages relayed: statements, for proxy/observe/stats.py
        self.console = False  # served by the admin console (proxy/observe/console.py)
        self.closed = asyncio.get_running_loop().create_future()
        self._buf = bytearray()  # startup packets, before the relay starts
        self._encryption_asked: set[int] = set()  # SSLRequest/GSSENCRequest codes answered
        self._cframer = Framer(_CLIENT_WATCH, limits=FRONTEND_LIMITS,
                               assemble_limit=self.config.intercept_limit)
        self._sframer = Framer(_SERVER_WATCH)
        self._client_pauses: set[str] = set()
        self._upstream_paused = False
        self._interceptors = server.interceptors
        self._triggers = server.triggers  # database -> triggers (see intercept.py)
        self._takeover: Takeover | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._terminating = False
        self._draining = False
        self._tasks: set[asyncio.Task] = set()
        self._startup_timer: asyncio.TimerHandle | None = None
        self._async_out: list[bytes] = []
        # The reply rewrite (reply_rewrite.py) while replies are rewritten; or, parked,
        # the one whose statements' names (`_rewrite_names`) wake it.
        self.rewrite: ReplyRewrite | None = None
        self.parked_rewrite: ReplyRewrite | None = None
        self._rewrite_names: tuple[bytes, ...] = ()
        self._rewrite_paused = False
        # ReadyForQuery messages since the rewrite last woke: a parked one goes to the
        # pump only after a few (each wake from the pump costs a thread hop and the
        # lending again: a session mixing model calls and plain ones closely stays)
        self._answered_since_wake = 0
        self.loop = asyncio.get_running_loop()
        self.inference_state: dict | None = None  # per-session caches of the inference interceptor
        # The relay pump (pump.py): the two sockets' descriptors when this session may
        # be lent to it (plain sockets both sides), and whether it is lent now.
        self._pump_fds: tuple[int, int] | None = None
        self._lent = False
        self.ml_parse: tuple | None = None  # the ML statement interceptor's parse, wants() -> handle()

    # -- asyncio Protocol callbacks (client socket) ----------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "local")
        self.server.register(self)
        self._startup_timer = asyncio.get_running_loop().call_later(
            self.config.startup_timeout, self._startup_timed_out)

    def _startup_timed_out(self) -> None:
        if self.state is State.STARTUP:
            log.info("startup timeout session=%s peer=%s", self.id, self.peer)
            self._finish()

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        state = self.state
        try:
            if state is _RELAY:
                self._client_relay(data)
                if self._pump_fds is not None:
                    self._lend_if_quiet()
            elif state is State.STARTUP:
                self._buf += data
                self._startup_step()
            elif state is State.HANDOVER or state is State.TAKEOVER:
                self._client_takeover_data(data)
            elif state is State.CONNECTING:
                self._buf += data  # reading is paused; this is what was already read
            # CLOSED: drop
        except Exception:  # noqa: BLE001 - the last resort: see _internal_failure
            self._internal_failure("reading the client")

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is State.CLOSED:
            return
        if not self._terminating:
            log.info("client disconnected session=%s peer=%s%s", self.id, self.peer,
                     f" error={exc}" if exc else "")
        if self._takeover is not None:
            self._takeover._close(client=True)
        self._finish()

    def pause_writing(self) -> None:
        if self.upstream is not None and not self._upstream_paused:
            self._upstream_paused = True
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self._upstream_paused:
            self._upstream_paused = False
            self.upstream.resume_reading()

    # -- start-up -----------------------------------------------------------------------
    def _startup_step(self) -> None:
        while self.state is State.STARTUP:
            try:
                packet, used = parse_first_packet(self._buf)
            except ProtocolViolation as err:
                if err.silent:  # a bad length: Postgres logs it and closes without a word
                    log.info("closing session=%s peer=%s reason=%s", self.id, self.peer, err.message)
                    self._finish()
                else:
                    self._fatal(err)
                return
            except PgError as err:
                self._fatal(err)
                return
            if packet is None:
                return
            del self._buf[:used]
            if isinstance(packet, (SSLRequest, GSSENCRequest)):
                if not self._encryption_request(packet):
                    return
                continue
            if isinstance(packet, CancelRequest):
                self._spawn(self._forward_cancel(packet))
                self.state = State.CLOSED
                return
            if self.config.tls_required and self.client.get_extra_info("ssl_object") is None:
                self._fatal(_tls_required_error(self.client, packet))
                return
            self.startup = packet
            self.database = packet.database
            self._startup_timer.cancel()
            self.parameters = dict(packet.parameters)
            self.state = State.CONNECTING
            self._pause_client_reading("connecting")
            self._spawn(self._connect_upstream(packet))
            return

    def _encryption_request(self, packet: SSLRequest | GSSENCRequest) -> bool:
        """Answer an SSLRequest or GSSENCRequest as Postgres does; False when the
        session is closed or switching to TLS (no more packets to read now)."""
        ssl_request = isinstance(packet, SSLRequest)
        code = protocol.SSL_REQUEST_CODE if ssl_request else protocol.GSSENC_REQUEST_CODE
        if code in self._encryption_asked:  # Postgres reads it as a protocol version
            self._fatal(unsupported_protocol(code))
            return False
        self._encryption_asked.add(code)
        tls = ssl_request and self.server.ssl_context is not None
        if self._buf:
            # Bytes sent before the answer could have been injected by a man in the
            # middle (CVE-2021-23214): Postgres answers, then refuses them.
            self.client.write(b"S" if tls else b"N")
            self._fatal(PgError(
                errors.PROTOCOL_VIOLATION,
                "received unencrypted data after "
                + ("SSL request" if ssl_request else "GSSAPI encryption request"),
                detail="This could be either a client-software bug or evidence of an "
                       "attempted man-in-the-middle attack.", severity="FATAL"))
            return False
        if not tls:
            self.client.write(b"N")
            return True
        self.client.write(b"S")
        self._pause_client_reading("tls")
        self._spawn(self._start_tls())
        return False

    async def _start_tls(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(self.client, self, self.server.ssl_context,
                                       server_side=True)
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            log.info("TLS handshake failed session=%s peer=%s error=%s", self.id, self.peer, exc)
            self._finish()
            return
        if tls is None:
            self._finish()
            return
        self.client = tls
        self._resume_client_reading("tls")

    async def _forward_cancel(self, packet: CancelRequest) -> None:
        """Deliver a CancelRequest to the upstream: the key is the backend's own,
        which the client learned from the relayed BackendKeyData."""
        try:
            transport, proto = await open_upstream(
                self.config.upstream, _CancelSink, self.config.connect_timeout)
            transport.write(packet.raw)
            await proto.wait_closed(5.0)
            transport.close()
            log.info("cancel request forwarded peer=%s", self.peer)
        except (UpstreamUnavailable, OSError) as exc:
            log.warning("cancel request not delivered peer=%s error=%s", self.peer, exc)
        finally:
            self._finish()

    async def _connect_upstream(self, startup: StartupMessage) -> None:
        try:
            transport, side = await open_upstream(
                self.config.upstream, lambda: _UpstreamSide(self), self.config.connect_timeout)
        except UpstreamUnavailable as exc:
            log.warning("upstream unavailable session=%s error=%s", self.id, exc)
            self._fatal(PgError(errors.SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                                str(exc), severity="FATAL"))
            return
        if self.state is State.CLOSED:
            transport.close()
            return
        self.upstream = transport
        console = self.server.console
        self.console = console is not None and console.claims(startup)  # the virtual database `mlproxy`
        self._pump_fds = None if self.console else _pump_descriptors(self.server.pump, self.client, transport)
        if self._pump_fds is not None:
            side.data_received = self._server_input
        log.info("connection opened session=%s peer=%s user=%s database=%s",
                 self.id, self.peer, startup.user, startup.database)
        if not self.console:
            transport.write(startup.raw)
        self.ends.reset(QUERY, 1)  # the startup exchange ends with a ReadyForQuery
        self.state = State.RELAY
        leftover = bytes(self._buf)
        self._buf.clear()
        self._resume_client_reading("connecting")
        if self.console:  # it sends the login upstream and relays it, then answers commands
            self.ends.reset(QUERY, 0)
            self._begin_handover(console, Frame(0, console.upstream_login(startup).raw), [leftover])
            return
        if leftover:
            self._client_relay(leftover)

    # -- relay --------------------------------------------------------------------------
    def _client_relay(self, data: bytes) -> None:
        if self._terminating:  # the client's Terminate went upstream: nothing more is read
            return
        framer = self._cframer
        if self.rewrite is None and framer.at_boundary and not self.skipping_to_sync and not self.unsynced:
            # (a pipeline the last chunk left open goes framed: a Query or FunctionCall
            # in it takes its turn, see below)
            triggers = self._triggers.get(self.database)
            if triggers is None:
                triggers = self.server.triggers_for(self.database)
            verdict = client_chunk(data, CLIENT_LIMITS, triggers, self.copy_in, self._rewrite_names)
            if verdict is not None:  # whole messages, nothing to intercept
                if verdict & UNSYNCED_CLEARED:
                    self.unsynced = False
                    if self.unsynced_kinds:
                        self.unsynced_kinds.clear()
                if verdict & COPY_IN_CLEARED:
                    self._copy_ended()
                if verdict >> REQUEST_SHIFT:
                    self.ends.add(SYNC if verdict & SYNC_ENDS else QUERY, verdict >> REQUEST_SHIFT)
                self.upstream.write(data)
                return
        elif self.rewrite is not None and framer.at_boundary and not self.skipping_to_sync \
                and not self.copy_in:
            # a prepared model statement's request, whole (tracker.client_pipeline)
            forward = self.rewrite.client_chunk(data)
            if forward is not None:
                self._account(F_SYNC)  # the request's net effect: one more, its pipeline ended
                self.upstream.write(forward)
                return
        held_before = not framer.at_boundary
        violation = None
        try:
            items = framer.feed(data)
        except ProtocolViolation as err:
            # the messages in front of the bad header are handled first (Postgres
            # answers them before it reads the bad one)
            violation, items = err, err.before
        if items is None:
            self.upstream.write(data)
            return
        ahead, sent = None, 0  # a Frame whose first `sent` bytes went upstream ahead of it
        if self._sent_ahead and (items or violation is not None):
            items, ahead, sent = self._rest_of_sent_ahead(items, violation)
        out: list = []
        names = self._rewrite_names
        # the current pipeline's first messages went upstream before this chunk
        sent_open = self.unsynced
        ended = False  # a Terminate was read: nothing after it goes on
        for index, item in enumerate(items):
            if type(item) is not Frame:
                out.append(item)
                continue
            msg_type = item.type
            interceptor = None
            was_ahead = item is ahead
            # During COPY FROM STDIN Postgres refuses any of these: it goes on as sent
            # (the statement a takeover gave back when the COPY began, among them).
            # One whose type byte went ahead (_check_copy_in_hold) Postgres may run
            # as any other (a CopyData it refused ended the COPY): it is judged so,
            # but, its start being upstream, it is not taken over (below)
            may_run = was_ahead or not self.copy_in
            if not may_run:
                pass
            elif (msg_type == F_QUERY or msg_type == F_PARSE) and not was_ahead \
                    and self._triggered(item.raw):
                interceptor = self._intercepting(item)
            elif (msg_type == F_BIND or msg_type == F_DESCRIBE) and self.rewrite is not None:
                interceptor = self.rewrite.interceptor_for(item.raw)
            if interceptor is None and names and may_run and names_message(msg_type, item.raw, names):
                # it names a statement of the parked rewrite: wake it here when the
                # replies to what went upstream untracked are whole requests still
                # to come; else inside a takeover, which relays them first
                if sent_open or not self._sframer.at_boundary:
                    interceptor = self.parked_rewrite.wake_interceptor()
                else:
                    self.attach_rewrite(self.parked_rewrite)
                    names = ()
                    if msg_type == F_BIND or msg_type == F_DESCRIBE:
                        interceptor = self.rewrite.interceptor_for(item.raw)
            if interceptor is None and (msg_type == F_QUERY or msg_type == F_FUNCTION_CALL) \
                    and self.unsynced and not self.skipping_to_sync and not self.copy_in and not was_ahead:
                # after extended-protocol messages with no Sync between, Postgres runs it
                # only if none of them fails (else it skips it, with no ReadyForQuery):
                # it waits for their replies (_query_turn)
                interceptor = _TAKES_ITS_TURN
            if interceptor is not None:
                if was_ahead:
                    # serving it takes messages of mlproxy's own ahead of it (a Bind or
                    # Describe of a statement served per execution, or waking the
                    # rewrite inside a takeover), which the byte upstream rules out
                    self._fatal(PgError(
                        errors.PROTOCOL_VIOLATION,
                        f"message type 0x{msg_type:02X} sent during COPY from stdin names a "
                        "statement mlproxy serves by its own messages", severity="FATAL"))
                    return
                if out:
                    self.upstream.writelines(out)
                rest = items[index + 1:]
                if violation is not None:
                    rest.append(violation.rest)
                self._begin_handover(interceptor, item, rest)
                return
            if self.rewrite is not None and not (
                    self.skipping_to_sync and (msg_type == F_QUERY or msg_type == F_FUNCTION_CALL)) \
                    and not (self.copy_in and (msg_type == F_SYNC or msg_type == F_FLUSH)):
                # (one Postgres ignores, skipping to Sync or inside a COPY, has no
                # reply to track)
                raw = self.rewrite.client_message(msg_type, bytes(item.raw))
                if raw is not item.raw:
                    item = Frame(msg_type, raw)
            self._account(msg_type, item.raw[5] if len(item.raw) > 5 else 0, len(item.raw) - 1)
            if not self.unsynced:  # a Sync or Query ended the pipeline
                sent_open = False
            out.append(memoryview(item.raw)[sent:] if was_ahead else item.raw)
            if msg_type == F_TERMINATE:
                # Postgres ends the session here and reads nothing after it: neither
                # does the proxy (a model statement after it was taken over)
                violation = None
                ended = True  # (what follows in `data` is not sent)
                break
        if violation is not None:
            self._relay_violation(out, violation)
            return
        if self.rewrite is not None or held_before or ended or not framer.at_boundary:
            self.upstream.writelines(out)
        else:
            self.upstream.write(data)
        if self.copy_in and not framer.at_boundary:
            self._check_copy_in_hold()

    def _relay_violation(self, out: list, violation: ProtocolViolation) -> None:
        """The client's stream broke (a bad message type or length): what came before
        goes upstream, then the bad bytes themselves, so that Postgres answers them
        as it would directly (after the replies to the earlier messages: a FATAL for
        a bad type; a bad length it only logs) and closes. Nothing more is read from
        the client, and the upstream's close is not reported as a failure."""
        log.info("client protocol violation session=%s peer=%s reason=%s", self.id, self.peer,
                 violation.message)
        self._client_broken = True
        self._pause_client_reading("violation")
        out.append(violation.rest)
        self.upstream.writelines(out)

    _client_broken = False
    _authenticated = False

    @property
    def pending(self) -> int:
        """Requests sent upstream whose ReadyForQuery has not come back."""
        return self.ends.count

    def _copy_ended(self) -> None:
        """The client sent a CopyDone or CopyFail. Outside COPY IN it may end a COPY
        whose CopyInResponse is still to come (a pipelining client): kept in its
        place among the requests in flight (RequestEnds.copy_ended_ahead)."""
        if self.copy_in:
            self.copy_in = False
        else:
            self.ends.copy_ended_ahead(self._execute_unsynced())

    def _execute_unsynced(self) -> bool:
        """An Execute was sent since the last Sync (its COPY may begin still)."""
        return any(kind >> 8 == F_EXECUTE for kind in self.unsynced_kinds)

    def _flushes_ignored(self, count: int) -> None:
        """The first `count` Flushes with a body sent since the last Sync were read
        inside a COPY, where Postgres ignores them: they opened nothing to skip."""
        kinds = self.unsynced_kinds
        for _ in range(count):
            index = next((i for i, kind in enumerate(kinds) if kind >> 8 == F_FLUSH), None)
            if index is None:  # (relay_owed forgot them: all answered since)
                break
            del kinds[index]
        if not kinds:
            self.unsynced = False

    # How many bytes of the message the client framer holds went upstream ahead of it
    # (_check_copy_in_hold: its type byte); the rest follows when it comes
    # (_rest_of_sent_ahead).
    _sent_ahead = 0

    def _check_copy_in_hold(self) -> None:
        """During COPY FROM STDIN Postgres judges a message by its type byte alone:
        the type byte of one of another type, whose rest the framer holds until it
        comes, goes upstream at once, so that Postgres answers it (08P01, then FATAL)
        as it would directly. The proxy cannot know yet whether Postgres is still in
        the COPY: the error of a CopyData sent before may have ended it, and then
        Postgres reads the message as any other, so its rest follows as it comes and
        the client is read on. Only the type byte goes ahead because the rest may be
        rewritten (a Bind of a statement the proxy rewrites), which keeps the type;
        the message is not taken over (its start is upstream already: _client_relay)."""
        held = self._cframer.held_type
        if held is None or held in COPY_IN_TYPES or self.state is not State.RELAY or self._sent_ahead:
            return
        self._sent_ahead = 1
        self.upstream.write(bytes((held,)))

    def _rest_of_sent_ahead(self, items: list, violation: ProtocolViolation | None
                            ) -> tuple[list, Frame | None, int]:
        """The framer's `items` once the message whose start went upstream ahead
        (_check_copy_in_hold) came whole (the first item), or passes through, or
        broke the stream (`violation`, no items): that start is not sent again.
        Returns the items, the Frame of that message if it is one (already on its
        way, it is not intercepted; its bookkeeping is the relay's), and how many of
        its bytes went ahead."""
        count, self._sent_ahead = self._sent_ahead, 0
        if not items:
            violation.rest = violation.rest[count:]
            return items, None, 0
        first = items[0]
        if type(first) is Frame:
            return items, first, count
        return [memoryview(first)[count:], *items[1:]], None, 0

    def _account(self, msg_type: int, first_byte: int = 0, length: int = 4) -> None:
        """Bookkeeping for a client message on its way upstream (`length`: its length
        field): requests in flight (each Query, FunctionCall and Sync gets a
        ReadyForQuery), COPY state, and the extended-protocol messages that await
        their Sync (`unsynced`; their kinds, so that tracking started mid-pipeline
        knows whose replies come first)."""
        if msg_type in _EXTENDED or (msg_type == F_FLUSH and length != 4 and not self.copy_in):
            # (a Flush with a body is an extended-protocol message that fails: Postgres'
            # 08P01, then it skips to the next Sync, unless a COPY began meanwhile:
            # RequestEnds keeps it; a Sync with one fails as a Sync)
            if msg_type == F_FLUSH:
                self.ends.flush_refused(self._execute_unsynced())
            self.unsynced = True
            self.unsynced_kinds.append(message_kind(msg_type, first_byte))
        elif msg_type == F_SYNC:
            if not self.copy_in:  # (inside a COPY Postgres ignores it)
                self.unsynced = False
                self.unsynced_kinds.clear()
                self.skipping_to_sync = False
                self.ends.add(SYNC)
        elif self.skipping_to_sync and (msg_type == F_QUERY or msg_type == F_FUNCTION_CALL):
            pass  # ignored by the server (see skipping_to_sync)
        elif msg_type == F_QUERY:
            self.unsynced = False
            self.unsynced_kinds.clear()
            self.ends.add(QUERY)
        elif msg_type == F_FUNCTION_CALL:
            self.ends.add(QUERY)
        elif msg_type == F_COPY_DONE or msg_type == F_COPY_FAIL:
            self._copy_ended()
        elif msg_type == F_TERMINATE:
            self._terminating = True

    def _triggered(self, raw: bytes | memoryview) -> bool:
        """Does this Query/Parse contain any interceptor's trigger (lower-cased)?"""
        triggers = self.server.triggers_for(self.database)
        if not triggers:
            return False
        lowered = bytes(raw).lower()
        return any(trigger in lowered for trigger in triggers)

    def _intercepting(self, frame: Frame):
        try:
            sql = protocol.statement_text(frame.type, frame.raw)
        except protocol.MalformedMessage:
            return None  # relayed as sent: Postgres refuses it with its own error
        for interceptor in self._interceptors:
            if interceptor.wants(frame, sql, self):
                return interceptor
        return None

    def _server_data(self, data: bytes) -> None:
        self.bytes_out += len(data)
        try:
            if self.state is State.TAKEOVER:
                self._server_takeover_data(data)
                return
            rewrite = self.rewrite
            if rewrite is not None:
                rewrite.server_data(data)
                return
            framer = self._sframer
            if framer.at_boundary:
                verdict = server_chunk(data)
                if verdict is not None:  # whole messages; only ReadyForQuery to note
                    self.client.write(data)
                    if verdict > 0xFF and self._ready(verdict >> READY_SHIFT, verdict & 0xFF):
                        self._became_idle()
                    return
            held_before = not framer.at_boundary
            items = framer.feed(data)
            if items is None:
                self.client.write(data)
                return
            idle = False
            for item in items:
                if type(item) is Frame:
                    idle |= self._note_server(item.type, item.raw)
            if not held_before and framer.at_boundary:
                self.client.write(data)
            else:
                self.client.writelines([i.raw if type(i) is Frame else i for i in items])
            if idle:
                self._became_idle()
        except Exception:  # noqa: BLE001 - the last resort: see _internal_failure
            self._internal_failure("relaying the server's replies")

    def _server_input(self, data: bytes) -> None:
        """The upstream's chunks when the session may be lent to the pump."""
        self._server_data(data)
        self._lend_if_quiet()

    def _ready(self, count: int, status: int) -> bool:
        """Bookkeeping for `count` ReadyForQuery messages, the last with `status`
        (I/T/E): True when they ended the last request in flight."""
        self.txstatus = _STATUS[status]
        self.copy_in = False
        self.failed_since_sync = False
        self._answered_since_wake += count
        self.readies += count
        if not self._authenticated:  # the startup exchange is over
            self._authenticated = True
            self._cframer.set_limits(SESSION_LIMITS)
        return self.ends.ready(count)

    def _note_server(self, msg_type: int, raw: bytes | memoryview) -> bool:
        """Bookkeeping for one watched server message (`raw` is the whole message):
        transaction status, requests in flight, COPY IN state, error logging.
        True when this ReadyForQuery ended the last request in flight."""
        if msg_type == B_READY_FOR_QUERY:
            return self._ready(1, raw[5])
        if msg_type == B_COPY_IN:
            rewrite = self.rewrite
            if rewrite is not None and rewrite.hidden_next:
                return False  # the COPY of mlproxy's own deferred messages, not the client's
            began = self.ends.copy_began()
            if (began.ignored or began.flushes) and rewrite is not None:
                rewrite.ignored_in_copy(began.first, began.ignored, began.flushes)
            if began.flushes_since_sync:  # they opened no pipeline Postgres skips
                self._flushes_ignored(began.flushes_since_sync)
            if began.pipeline_open and not self.unsynced:
                # the Sync that ended the Execute's pipeline was read inside its COPY:
                # Postgres' pipeline goes on after the COPY, up to the next Sync
                self.unsynced = True
                self.unsynced_kinds.append(message_kind(F_EXECUTE, 0))
            if not began.copy_in:  # the client ended this COPY before it began here
                return False
            self.copy_in = True
            if self.state is State.HANDOVER:  # the statement waiting goes on as sent
                self._wake_handover()
            else:
                self._check_copy_in_hold()
        elif msg_type == B_ERROR:
            self.copy_in = False
            self.failed_since_sync = True
            if self.unsynced and not self.pending:
                self.skipping_to_sync = True
            self._log_server_error(Frame(msg_type, raw))
        return False

    def _server_frames(self, frames) -> None:
        """Bookkeeping and output for complete server messages (the leftovers of a
        takeover, which precede anything the framer still holds)."""
        if self.rewrite is not None:
            self.rewrite.server_frames(frames)
            return
        idle = False
        out = []
        for item in frames:
            raw = bytes(item.raw)
            idle |= self._note_server(item.type, raw)
            out.append(raw)
        if out:
            self.client.writelines(out)
        if idle:
            self._became_idle()

    # -- the reply rewrite (reply_rewrite.py) ------------------------------------------
    def attach_rewrite(self, rewrite: ReplyRewrite) -> None:
        """Every request and reply goes through `rewrite` from now on; the replies
        to what went upstream before (or untracked, while it was parked) come first."""
        self.parked_rewrite, self._rewrite_names = None, ()
        self.rewrite = rewrite
        self._answered_since_wake = 0
        rewrite.wake(self.pending, self.unsynced_kinds)
        self._sframer.assemble_limit = protocol.LARGE_MESSAGE_LIMIT + 1
        self._set_wanted(_CLIENT_TRACKED, ALL)

    def _set_wanted(self, client: frozenset, server: frozenset | None) -> None:
        """What the relay's framers frame, except a framer a takeover owns (it frames
        everything; _end_takeover sets it for the relay): the client's from the
        handover on, the server's during the takeover itself. (A rewrite attached or
        detached by an interceptor, or by replies relayed in a takeover, had the
        takeover's framers pass bytes where it takes messages.)"""
        if self._takeover is None:
            self._cframer.set_wanted(client)
        if self.state is not State.TAKEOVER:
            self._sframer.set_wanted(server)

    def detach_rewrite(self, park: bool) -> None:
        """Relay untracked again; `park`: until a message names one of the
        rewrite's statements (its park_names)."""
        rewrite, self.rewrite = self.rewrite, None
        self._park(rewrite if park else None)
        self._set_wanted(_CLIENT_WATCH, _SERVER_WATCH)

    def _park(self, rewrite: ReplyRewrite | None) -> None:
        """Park `rewrite` under its statements' names (its park_names); with none to
        wake it (or no rewrite), nothing stays parked."""
        names = rewrite.park_names() if rewrite is not None else None
        if names:
            self.parked_rewrite, self._rewrite_names = rewrite, names
        else:
            self.parked_rewrite, self._rewrite_names = None, ()

    @property
    def server_framer(self) -> Framer:
        return self._sframer

    @property
    def in_takeover(self) -> bool:
        return self.state is State.TAKEOVER

    @property
    def may_park(self) -> bool:
        """Enough requests were answered since the rewrite last woke or rewrote a
        request's replies to park it (`--relend-after`): a session mixing model calls
        and plain statements closely stays tracked, as waking and parking at every
        call would cost more."""
        return self._answered_since_wake >= self.config.relend_after

    def rewritten_request(self) -> None:
        """A request whose replies the rewrite rewrites went upstream: the count of
        requests before it may park (`may_park`) starts again."""
        self._answered_since_wake = 0

    @property
    def relaying(self) -> bool:
        """In the relay state (no takeover waiting or running)."""
        return self.state is _RELAY

    def pause_upstream(self) -> None:
        """Stop reading the upstream for the rewrite (rows wait on the workers)."""
        if not self._rewrite_paused and self.upstream is not None:
            self._rewrite_paused = True
            self.upstream.pause_reading()

    def resume_upstream(self) -> None:
        if self._rewrite_paused:
            self._rewrite_paused = False
            if not self._upstream_paused and self.upstream is not None:
                self.upstream.resume_reading()

    def _log_server_error(self, frame: Frame) -> None:
        fields = protocol.parse_fields(frame.body)
        STATS.error("upstream", fields.get("C"))
        severity = fields.get("V", fields.get("S", ""))
        if severity in ("FATAL", "PANIC"):
            log.info("upstream fatal session=%s sqlstate=%s message=%s", self.id,
                     fields.get("C"), fields.get("M"))
            self._upstream_said_fatal = True
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("upstream error session=%s sqlstate=%s message=%s", self.id,
                      fields.get("C"), fields.get("M"))

    _upstream_said_fatal = False

    def _wake_handover(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _became_idle(self) -> None:
        if self._async_out and self._sframer.at_boundary:
            self._flush_async()
        if self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        if self._draining:
            self.terminate()

    def send_async(self, data: bytes) -> None:
        """Send an asynchronous message (a NOTICE about a training job) to the client.
        It goes out only between requests, when the client's stream is at a message
        boundary and nothing is in flight; otherwise it waits for that moment."""
        if self.state is State.CLOSED:
            return
        self.take_back()
        self._async_out.append(data)
        if self.is_idle() and self._sframer.at_boundary:
            self._flush_async()

    def _flush_async(self) -> None:
        out, self._async_out = self._async_out, []
        if out:
            self._write_client(b"".join(out))

    def is_idle(self) -> bool:
        """No request in flight (while lent to the pump, as of the lending: take the
        session back first for the current answer)."""
        return self.state is State.RELAY and self.pending == 0

    # -- the relay pump -----------------------------------------------------------------
    def _lend_if_quiet(self) -> None:
        """Lend the session to the relay pump when nothing in it needs Python: in the
        relay state, no results rewritten, no extended-protocol messages awaiting
        their Sync, no flow control or pending writes of our own, both streams at a
        message boundary and both write buffers empty (so the pump's bytes cannot
        overtake ours)."""
        if (self._lent or self.state is not _RELAY or self.rewrite is not None
                or self.client.is_closing() or self.upstream.is_closing()
                or self.unsynced or self.ends.kind < 0 or self._client_pauses or self._upstream_paused
                or self._async_out or self._idle_waiters or self._draining
                or self._terminating or self._rewrite_paused
                or (self.parked_rewrite is not None
                    and self._answered_since_wake < self.config.relend_after)
                or not self._cframer.at_boundary or not self._sframer.at_boundary
                or self.client.get_write_buffer_size()
                or self.upstream.get_write_buffer_size()):
            return
        triggers = self._triggers.get(self.database)
        if triggers is None:
            triggers = self.server.triggers_for(self.database)
        self.client.pause_reading()
        self.upstream.pause_reading()
        try:
            self.server.pump.lend(self, *self._pump_fds, CLIENT_LIMITS, triggers, self._rewrite_names)
        except OSError as exc:  # e.g. out of descriptors: relay this one in Python
            log.warning("relay pump refused session=%s error=%s", self.id, exc)
            self._pump_fds = None
            self.client.resume_reading()
            self.upstream.resume_reading()
            return
        self._lent = True

    def take_back(self, keep_input: bool = True) -> None:
        """Bring the session back from the relay pump (if lent) before Python acts
        on it on its own; the input the pump had not handled yet is handled now,
        unless the session is ending (`keep_input=False`)."""
        if self._lent:
            record = self.server.pump.reclaim(self)
            if record is not None:
                self._resume(record, keep_input)

    def handed_back(self, record: Record) -> None:
        """The pump met input it does not handle (or an end of stream): go on here."""
        try:
            self._resume(record, True)
        except Exception:  # noqa: BLE001 - the last resort: see _internal_failure
            self._internal_failure("taking the session back from the relay pump")
            return
        # After an end of stream or a socket error the transports, reading again,
        # find out for themselves (and close); otherwise go back if nothing is left.
        if record.reason <= SERVER_DATA and self._pump_fds is not None and self.state is _RELAY:
            self._lend_if_quiet()

    def _resume(self, record: Record, keep_input: bool) -> None:
        self._lent = False
        # counted first: a reading while the pump held the session counted them already
        self.bytes_in += record.bytes_client
        self.bytes_out += record.bytes_server
        self.readies += record.readies
        if record.reason == FAILED:
            log.error("relay pump out of memory session=%s: closing it", self.id)
            if keep_input:  # else the session is ending already
                self._finish()
            return
        self.ends.reset(record.ends_kind, record.pending)
        self.copy_in = bool(record.copy_in)
        if record.ready_seen:
            self.txstatus = _STATUS[record.txstatus]
            self.failed_since_sync = False
        if record.skip_client:
            self._cframer.pass_through(record.skip_client)
        if record.skip_server:
            self._sframer.pass_through(record.skip_server)
        client, upstream = self.client, self.upstream
        # Reading resumes before the pump's unsent bytes are written, so that a
        # full buffer's pause_writing (flow control) is the last word.
        if not client.is_closing():
            client.resume_reading()
        if not upstream.is_closing():
            upstream.resume_reading()
        if record.to_server:
            self._write_upstream(record.to_server)
        if record.to_client:
            self._write_client(record.to_client)
        if keep_input and record.data and self.state is _RELAY:
            if record.reason == CLIENT_DATA:
                self.bytes_in += len(record.data)
                self._client_relay(record.data)
            else:
                self._server_data(record.data)

    def _server_lost(self, exc: Exception | None) -> None:
        if self.state is State.CLOSED:
            return
        if self._takeover is not None:
            self._takeover._close(client=False)
        if not self._terminating and self.client is not None and not self.client.is_closing():
            if self._sframer.at_boundary and not self._upstream_said_fatal and not self._client_broken:
                self._write_client(protocol.error_response(PgError(
                    errors.CONNECTION_FAILURE,
                    "upstream server closed the connection unexpectedly",
                    detail="The server terminated abnormally before or while processing the request.",
                    severity="FATAL")))
            log.warning("upstream connection lost session=%s%s", self.id,
                        f" error={exc}" if exc else "")
        self._finish()

    # -- takeover (interception) ----------------------------------------------------
    def _begin_handover(self, interceptor, frame: Frame, rest: list) -> None:
        """Stop relaying client messages; once the upstream has answered everything
        sent before `frame`, let the interceptor own the session."""
        held = bytes(self._cframer._carry)
        tail = b"".join(bytes(i.raw) if type(i) is Frame else bytes(i) for i in rest) + held
        # (a takeover from the login on, the admin console's, relays PasswordMessages)
        self._cframer = Framer(ALL, limits=SESSION_LIMITS if self._authenticated else FRONTEND_LIMITS,
                               assemble_limit=protocol.LARGE_MESSAGE_LIMIT + 1)
        self._takeover = Takeover(self)
        self.state = State.HANDOVER
        if tail:
            self._client_takeover_data(tail)
        self._spawn(self._run_takeover(interceptor, frame))

    async def _run_takeover(self, interceptor, frame: Frame) -> None:
        takeover = self._takeover
        try:
            # (a CopyInResponse that came before this task ran woke no waiter: the
            # statement goes on as sent, below)
            if self.pending and not self.copy_in:
                fut = asyncio.get_running_loop().create_future()
                self._idle_waiters.append(fut)
                await fut
            if self.state is State.CLOSED:
                return
            self.state = State.TAKEOVER
            self._sframer.set_wanted(ALL)
            if self.copy_in:
                # a COPY FROM STDIN sent before it began meanwhile: Postgres refuses
                # the statement (and ends the COPY) as it would any message there.
                # It goes with what followed it in one write, as the client sent
                # them: Postgres closes at once, and bytes it had not read would
                # turn its close into a reset that loses its error on the way.
                takeover.unread_client(frame)
            elif await self._query_turn(frame, takeover):
                if frame.type == F_QUERY:
                    runs = query_runs(frame.raw)
                    takeover.query_begins(drops_unnamed=runs)
                    if runs:
                        self._unnamed_dropped()
                await interceptor.handle(frame, takeover)
                if frame.type == F_QUERY and self.state is not State.CLOSED:
                    await takeover.query_ends()
        except ConnectionResetError:
            violation = self._takeover_violation
            if violation is not None and not violation.silent:
                self._fatal(violation)  # what Postgres says when it reaches the bad bytes
            else:
                self._finish()
            return
        except Exception:  # an interceptor bug must not take the proxy down
            self._internal_failure("intercepting a statement")
            return
        if self.state is State.CLOSED:
            return
        self._end_takeover(takeover)

    async def _query_turn(self, frame: Frame, takeover: Takeover) -> bool:
        """Whether Postgres would run this Query or FunctionCall now. One sent after
        extended-protocol messages with no Sync between runs once their replies are
        out (they are relayed first, so that no reply owed to the client is lost or
        read as the interceptor's own), and ends their batch as a Sync would; after
        an error among them Postgres is skipping to the client's Sync and ignores
        it, with no ReadyForQuery: so does the proxy (False), so that no request is
        counted in flight that never will be answered."""
        if (frame.type != F_QUERY and frame.type != F_FUNCTION_CALL) \
                or not (self.unsynced or self.failed_since_sync):
            return True
        if not await relay_owed(takeover):
            log.debug("query ignored while skipping to Sync session=%s", self.id)
            return False
        self.unsynced = False
        self.unsynced_kinds.clear()
        return True

    def _unnamed_dropped(self) -> None:
        """A taken-over Query drops the unnamed statement (Takeover.query_begins):
        so does the reply rewrite's record of it, parked or not."""
        if self.rewrite is not None:
            self.rewrite.unnamed_dropped()
        elif self.parked_rewrite is not None:
            self.parked_rewrite.unnamed_dropped()
            self._park(self.parked_rewrite)

    def _end_takeover(self, takeover: Takeover) -> None:
        tracking = self.rewrite is not None
        self._sframer.set_wanted(ALL if tracking else _SERVER_WATCH)
        backlog = b"".join(bytes(f.raw) for f in takeover._drain_client())
        backlog += bytes(self._cframer._carry)
        violation, self._takeover_violation = self._takeover_violation, None
        if violation is not None:
            backlog += violation.rest
            self._resume_client_reading("violation")
        self._cframer = Framer(_CLIENT_TRACKED if tracking else _CLIENT_WATCH,
                               limits=SESSION_LIMITS,
                               assemble_limit=self.config.intercept_limit)
        self._takeover = None
        self.state = State.RELAY
        leftover = takeover._drain_server()
        if leftover:  # replies to what the interceptor sent on and left to the relay
            self._server_frames(leftover)
        self._takeover_drained()
        self._resume_client_reading("takeover")
        if self.pending == 0 and self._draining:
            self.terminate()
            return
        if backlog:
            self._client_relay(backlog)

    def _client_takeover_data(self, data: bytes) -> None:
        violation = None
        try:
            items = self._cframer.feed(data)
        except ProtocolViolation as err:
            violation, items = err, err.before
        takeover = self._takeover
        for item in items or ():
            takeover._push_client(item)  # ALL framer: every item is a Frame
        if violation is not None and any(item.type == F_TERMINATE for item in items or ()):
            violation.silent = True  # Postgres ends the session at the Terminate: it never reads them
        if violation is not None:
            # the interceptor gets the messages before the bad header, then the
            # client's end; if it does not need them, the relay gets the bad bytes
            self._takeover_violation = violation
            self._pause_client_reading("violation")
            takeover._close(client=True)
            return
        if takeover.queued_client_bytes > _TAKEOVER_QUEUE_LIMIT:
            self._pause_client_reading("takeover")

    def _server_takeover_data(self, data: bytes) -> None:
        takeover = self._takeover
        for item in self._sframer.feed(data) or ():
            if item.type == B_READY_FOR_QUERY:
                self.txstatus = bytes(item.raw[5:6])
            elif item.type == B_ERROR:
                self._log_server_error(item)  # (a FATAL: its close is no surprise)
            takeover._push_server(item)
        if takeover.queued_server_bytes > _TAKEOVER_QUEUE_LIMIT and not self._upstream_paused:
            self._upstream_paused = True  # a slow consumer (e.g. writing an export to disk)
            self.upstream.pause_reading()

    def _takeover_drained(self) -> None:
        if self._upstream_paused and self.upstream is not None:
            self._upstream_paused = False
            self.upstream.resume_reading()

    # -- writing and flow control ------------------------------------------------------
    def relay_server_frames(self, frames: list[Frame]) -> None:
        """During a takeover, pass server replies that answer the client's own earlier
        requests on to the client as the relay would (tracked, bookkept)."""
        self._server_frames(frames)

    async def relayed(self) -> None:
        """Wait until the replies relayed so far have reached the client's stream
        (none is still being rewritten on a worker thread or held back behind one),
        so that what an interceptor writes next comes after them."""
        while self.rewrite is not None and self.rewrite.busy:
            await asyncio.sleep(0.001)

    def relay_frame(self, frame: Frame) -> None:
        """Send on a client message that an interceptor examined and left alone."""
        raw = bytes(frame.raw)
        if self.rewrite is not None:
            raw = self.rewrite.client_message(frame.type, raw)
        self.forward_request(raw)

    def forward_request(self, raw: bytes) -> None:
        """Send a (possibly rewritten) client request upstream as the relay would:
        a Query or Sync counts as in flight until its ReadyForQuery."""
        self._account(raw[0], raw[5] if len(raw) > 5 else 0, len(raw) - 1)
        self._write_upstream(raw)

    def _write_upstream(self, data: bytes) -> None:
        if self._takeover is not None:
            data = self._takeover._upstream(data)
        if self.upstream is not None and not self.upstream.is_closing():
            self.upstream.write(data)

    def _write_client(self, data: bytes) -> None:
        if self.client is not None and not self.client.is_closing():
            self.client.write(data)

    def _pause_client_reading(self, reason: str) -> None:
        if not self._client_pauses and self.client is not None and not self.client.is_closing():
            self.client.pause_reading()
        self._client_pauses.add(reason)

    def _resume_client_reading(self, reason: str | None = None) -> None:
        if reason is None:
            reason = "takeover"
        if reason in self._client_pauses:
            self._client_pauses.discard(reason)
            if not self._client_pauses and self.client is not None and not self.client.is_closing():
                self.client.resume_reading()

    _takeover_violation: ProtocolViolation | None = None

    # -- ending -----------------------------------------------------------------------
    def _internal_failure(self, doing: str) -> None:
        """The last resort for an exception that escaped the session's code (a bug):
        logged with its traceback, the client told (08P01 if it was the client's
        malformed input, else XX000) and the session closed, never silently."""
        exc = sys.exc_info()[1]
        log.error("internal error while %s session=%s peer=%s", doing, self.id, self.peer,
                  exc_info=True)
        if isinstance(exc, PgError):
            err = PgError(exc.sqlstate, exc.message, severity="FATAL")
        else:
            err = PgError(errors.INTERNAL_ERROR, "internal error in mlproxy", severity="FATAL")
        try:
            self._fatal(err)
        except Exception:  # noqa: BLE001 - closing must not fail in turn
            log.error("closing after an internal error failed session=%s", self.id, exc_info=True)
            self.state = State.CLOSED
            for transport in (self.client, self.upstream):
                if transport is not None:
                    transport.abort()

    def _fatal(self, err: PgError) -> None:
        """Report an error the session cannot survive, then close it."""
        log.info("closing session=%s peer=%s sqlstate=%s reason=%s", self.id, self.peer,
                 err.sqlstate, err.message)
        if self._sframer.at_boundary:
            self._write_client(protocol.error_response(err))
        self._finish()

    def begin_shutdown(self) -> None:
        """Proxy shutdown: close now if idle, else as soon as the request in flight ends."""
        self._draining = True
        self.take_back()
        if self.state in (State.STARTUP, State.CONNECTING) or self.is_idle():
            self.terminate()

    def terminate(self) -> None:
        """Close both sides, telling the client why (like a server shutdown does)."""
        if self.state is State.CLOSED:
            return
        self.take_back(keep_input=False)
        self._terminating = True
        if self.state not in (State.STARTUP,) and self._sframer.at_boundary:
            self._write_client(protocol.error_response(PgError(
                errors.ADMIN_SHUTDOWN, "terminating connection due to administrator command",
                severity="FATAL")))
        if self.upstream is not None and self._cframer.at_boundary:
            self._write_upstream(protocol.message(b"X"))
        self._finish()

    def _finish(self) -> None:
        if self.state is State.CLOSED and self.closed.done():
            return
        self.take_back(keep_input=False)
        self.state = State.CLOSED
        if self._startup_timer is not None:
            self._startup_timer.cancel()
        if self.client is not None:
            self.client.close()
        if self.upstream is not None:
            self.upstream.close()
        for fut in self._idle_waiters:
            if not fut.done():
                fut.cancel()
        if not self.closed.done():
            self.closed.set_result(None)
            STATS.session_closed(self)
            if self.startup is not None:
                log.info("connection closed session=%s peer=%s seconds=%.3f bytes_in=%d bytes_out=%d",
                         self.id, self.peer, time.monotonic() - self.opened,
                         self.bytes_in, self.bytes_out)
        self.server.unregister(self)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(self._guarded(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, coro) -> None:
        """A task of this session: no exception escapes it (see _internal_failure)."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the last resort
            self._internal_failure("running a session task")

    # What a reply rewrite (reply_rewrite.py) calls back.
    ready = _ready
    note_server = _note_server
    became_idle = _became_idle
    fatal = _fatal
    internal_failure = _internal_failure
    server_data = _server_data


class _TakesItsTurn:
    """The handover of a Query or FunctionCall that is no interceptor's, sent while
    extended-protocol messages await their Sync: once Session._query_turn has
    relayed their replies and found that Postgres runs it, it goes on as sent."""

    async def handle(self, frame: Frame, takeover: Takeover) -> None:
        takeover.session.relay_frame(frame)


_TAKES_ITS_TURN = _TakesItsTurn()


class _CancelSink(asyncio.Protocol):
    """Upstream side of a forwarded cancel: the server answers by closing."""

    def __init__(self) -> None:
        self._closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._closed)
        except TimeoutError:
            pass


def _tls_required_error(client: asyncio.Transport, packet: StartupMessage) -> PgError:
    """What a plaintext client of a proxy run with --tls-required gets: the FATAL
    Postgres gives where pg_hba.conf only has hostssl lines."""
    peer = client.get_extra_info("peername")
    host = peer[0] if isinstance(peer, tuple) else "[local]"
    return PgError(errors.INVALID_AUTHORIZATION_SPECIFICATION,
                   f'mlproxy accepts only TLS connections: host "{host}", user "{packet.user}", '
                   f'database "{packet.database}", no encryption',
                   hint="Connect with sslmode=require (mlproxy runs with --tls-required).",
                   severity="FATAL")


def _pump_descriptors(pump, client: asyncio.Transport,
                      upstream: asyncio.Transport) -> tuple[int, int] | None:
    """The client's and upstream's socket descriptors, when a session on these
    transports may be lent to the relay pump: there is one, and neither side speaks
    TLS (the pump relays the bytes on the wire as messages)."""
    if pump is None:
        return None
    if client.get_extra_info("ssl_object") is not None or upstream.get_extra_info("ssl_object") is not None:
        return None
    client_sock, upstream_sock = client.get_extra_info("socket"), upstream.get_extra_info("socket")
    if client_sock is None or upstream_sock is None:
        return None
    return client_sock.fileno(), upstream_sock.fileno()
