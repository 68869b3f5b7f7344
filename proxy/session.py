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
from collections import deque
from concurrent.futures import Future
from enum import Enum, auto
from typing import TYPE_CHECKING

from . import errors, protocol
from .errors import PgError
from .framing import ALL, Frame, Framer, ProtocolViolation
from .intercept import Takeover
from .observe.stats import STATS
from .inference import workers
from .inference.extended_session import relay_owed
from .inference.rowscan import count_data_rows
from .inference.tracker import ResponseTracker, expectation_kind
from .pump import CLIENT_DATA, FAILED, SERVER_DATA, Record
from .protocol import (B_COPY_IN, B_DATA_ROW, B_ERROR, B_READY_FOR_QUERY, F_BIND, F_CLOSE, F_COPY_DONE,
                       F_COPY_FAIL, F_DESCRIBE, F_EXECUTE, F_FUNCTION_CALL, F_PARSE, F_QUERY,
                       F_SYNC, F_TERMINATE, COPY_IN_TYPES, FRONTEND_LIMITS, SESSION_LIMITS)
from .startup import (CancelRequest, GSSENCRequest, SSLRequest, StartupMessage,
                      parse_first_packet, unsupported_protocol)
from .upstream import UpstreamUnavailable, open_upstream
from .wire_scan import (CLIENT_LIMITS, COPY_IN_CLEARED, ENDS_READY, READY_SHIFT, REQUEST_SHIFT,
                        UNSYNCED_CLEARED, client_chunk, server_chunk)

if TYPE_CHECKING:
    from .server import ProxyServer

log = logging.getLogger("mlproxy.session")

_CLIENT_WATCH = frozenset((F_QUERY, F_PARSE, F_SYNC, F_FUNCTION_CALL, F_TERMINATE,
                           F_COPY_DONE, F_COPY_FAIL, F_BIND, F_DESCRIBE, F_EXECUTE, F_CLOSE))
_EXTENDED = frozenset((F_PARSE, F_BIND, F_DESCRIBE, F_EXECUTE, F_CLOSE))
_SERVER_WATCH = frozenset((B_READY_FOR_QUERY, B_ERROR, B_COPY_IN))
# While results are rewritten, every request and reply is matched (see tracker.py).
_CLIENT_TRACKED = _CLIENT_WATCH
_TAKEOVER_QUEUE_LIMIT = 4 << 20  # stop reading the client beyond this much queued
# ReadyForQuery's status byte as the bytes object the session keeps.
_STATUS = [bytes([b]) for b in range(256)]
# Rewritten DataRows are held for one predictor call per batch, up to this many; a
# smaller batch goes out at the end of a short read (the server is not streaming)
# or, while batches are on the workers, when one of them is done.
_ROW_BATCH = 16384
_BATCH_BYTES = 4 << 20  # and at most about this many bytes of them (wide rows)
# A DataRow cut by a read, up to this size, is read again whole with the next chunk
# (bigger ones are assembled by the framer: a row that spans several reads would be
# copied again at each of them).
_REREAD_LIMIT = 1 << 13
_SHORT_READ = 32768


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

    def __init__(self, server: "ProxyServer") -> None:
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
        self.pending = 0  # requests sent upstream whose ReadyForQuery has not come back
        # The server ignores Sync while in COPY IN (from CopyInResponse until the
        # client's CopyDone/CopyFail, or until it gives up with an error): such a
        # Sync gets no ReadyForQuery, so it must not count as a request.
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
        self.tracker: ResponseTracker | None = None  # set while results are rewritten
        # Rewritten batches on the worker threads (in result order), the server's
        # input that waits behind them, and what the tracked path has to write.
        self._batches: deque[Future] = deque()
        self._held_back: deque = deque()
        self._batch_paused = False
        self._tracked_out: list[bytes] = []
        self._tracked_idle = False
        self._loop = asyncio.get_running_loop()
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
        self.pending = 1  # the startup exchange ends with a ReadyForQuery
        self.state = State.RELAY
        leftover = bytes(self._buf)
        self._buf.clear()
        self._resume_client_reading("connecting")
        if self.console:  # it sends the login upstream and relays it, then answers commands
            self.pending = 0
            self._begin_handover(console, Frame(0, console.upstream_login(startup).raw), [leftover])
            return
        if leftover:
            self._client_relay(leftover)

    # -- relay --------------------------------------------------------------------------
    def _client_relay(self, data: bytes) -> None:
        framer = self._cframer
        if self.tracker is None and framer.at_boundary and not self.skipping_to_sync:
            triggers = self._triggers.get(self.database)
            if triggers is None:
                triggers = self.server.triggers_for(self.database)
            verdict = client_chunk(data, CLIENT_LIMITS, triggers, self.copy_in)
            if verdict is not None:  # whole messages, nothing to intercept
                if verdict & UNSYNCED_CLEARED:
                    self.unsynced = False
                    if self.unsynced_kinds:
                        self.unsynced_kinds.clear()
                if verdict & COPY_IN_CLEARED:
                    self._copy_ended()
                self.pending += verdict >> REQUEST_SHIFT
                self.upstream.write(data)
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
        out: list = []
        for index, item in enumerate(items):
            if type(item) is not Frame:
                out.append(item)
                continue
            msg_type = item.type
            interceptor = None
            if (msg_type == F_QUERY or msg_type == F_PARSE) and not self.copy_in \
                    and self._triggered(item.raw):
                # (during COPY FROM STDIN Postgres refuses either: it goes on as sent)
                interceptor = self._intercepting(item)
            elif msg_type == F_BIND and self.tracker is not None:
                interceptor = self.tracker.bind_interceptor(item.raw)
            if interceptor is not None:
                if out:
                    self.upstream.writelines(out)
                rest = items[index + 1:]
                if violation is not None:
                    rest.append(violation.rest)
                self._begin_handover(interceptor, item, rest)
                return
            if self.tracker is not None:
                raw = self.tracker.client_message(msg_type, bytes(item.raw))
                if raw is not item.raw:
                    item = Frame(msg_type, raw)
            self._account(msg_type, item.raw[5] if len(item.raw) > 5 else 0)
            out.append(item.raw)
        if violation is not None:
            self._relay_violation(out, violation)
            return
        if self.tracker is not None or held_before or not framer.at_boundary:
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
    # CopyDone/CopyFail the client sent, with a request in flight, before the server
    # said its COPY began (a pipelining client): that COPY is over in the client's
    # stream, so its CopyInResponse does not put the session in COPY IN.
    _copy_ends_ahead = 0

    def _copy_ended(self) -> None:
        if self.copy_in:
            self.copy_in = False
        elif self.pending:
            self._copy_ends_ahead += 1

    def _check_copy_in_hold(self) -> None:
        """During COPY FROM STDIN Postgres judges a message by its type byte alone:
        the start of one of another type, held until its length comes, goes on at
        once, so that Postgres answers it (08P01, then FATAL) as it would directly."""
        framer = self._cframer
        held = framer.held_type
        if held is None or held in COPY_IN_TYPES or self.state is not State.RELAY:
            return
        violation = ProtocolViolation(f"unexpected message type 0x{held:02X} during COPY from stdin")
        violation.rest = framer.take_carry(held, protocol.LARGE_MESSAGE_LIMIT + 1) or b""
        self._relay_violation([], violation)

    def _account(self, msg_type: int, first_byte: int = 0) -> None:
        """Bookkeeping for a client message on its way upstream: requests in flight
        (each Query, FunctionCall and Sync gets a ReadyForQuery), COPY state, and the
        extended-protocol messages that await their Sync (`unsynced`; their kinds,
        so that tracking started mid-pipeline knows whose replies come first)."""
        if msg_type in _EXTENDED:
            self.unsynced = True
            self.unsynced_kinds.append(expectation_kind(msg_type, first_byte))
        elif msg_type == F_SYNC:
            self.unsynced = False
            self.unsynced_kinds.clear()
            self.skipping_to_sync = False
            if not self.copy_in:
                self.pending += 1
        elif self.skipping_to_sync and (msg_type == F_QUERY or msg_type == F_FUNCTION_CALL):
            pass  # ignored by the server (see skipping_to_sync)
        elif msg_type == F_QUERY:
            self.unsynced = False
            self.unsynced_kinds.clear()
            self.pending += 1
        elif msg_type == F_FUNCTION_CALL:
            self.pending += 1
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
            if self.tracker is not None:
                self._server_tracked(data)
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
        self.readies += count
        if not self._authenticated:  # the startup exchange is over
            self._authenticated = True
            self._cframer.set_limits(SESSION_LIMITS)
        if not self.pending:
            self._copy_ends_ahead = 0
            return False
        self.pending = max(0, self.pending - count)
        if self.pending:
            return False
        self._copy_ends_ahead = 0  # no request in flight: no COPY can still begin
        return True

    def _note_server(self, msg_type: int, raw: bytes | memoryview) -> bool:
        """Bookkeeping for one watched server message (`raw` is the whole message):
        transaction status, requests in flight, COPY IN state, error logging.
        True when this ReadyForQuery ended the last request in flight."""
        if msg_type == B_READY_FOR_QUERY:
            return self._ready(1, raw[5])
        if msg_type == B_COPY_IN:
            if self.tracker is not None and self.tracker.hidden_next:
                return False  # the COPY of mlproxy's own deferred messages, not the client's
            if self._copy_ends_ahead:  # the client ended this COPY before it began here
                self._copy_ends_ahead -= 1
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

    def _server_tracked(self, data: bytes) -> None:
        """Relay with request/reply matching, rewriting the results of statements
        with model calls. Runs of DataRows of a rewritten result are handed over as
        slices of the chunk (no object per row); other messages one by one. What a
        chunk produces goes to the client in one write, after the batches still on
        the workers (replies behind them wait in `_held_back`)."""
        if self._held_back:
            self._held_back.append(data)
        elif not self._plain_replies(data):
            self._track_chunk(data)
        self._emit_tracked()

    def _plain_replies(self, data: bytes) -> bool:
        """Relay a chunk of whole replies to requests none of which is rewritten (a
        session that holds a prepared model statement runs others too) as the
        untracked relay does: one scan for its ReadyForQuery messages, each of which
        answers one awaited request, the chunk ending with one. False, and nothing
        done, for anything else (an ErrorResponse, a reply to a rewritten request,
        replies of a request not all there, a message cut)."""
        tracker = self.tracker
        if self._batches or self._tracked_out or not self._sframer.at_boundary:
            return False
        groups = tracker.plain_groups()
        if groups < 0:
            return False
        verdict = server_chunk(data)
        # ending with a ReadyForQuery, the chunk holds whole groups' replies
        if verdict is None or not verdict & ENDS_READY or verdict >> READY_SHIFT > groups:
            return False
        tracker.answered_groups(verdict >> READY_SHIFT)
        self.client.write(data)
        if self._ready(verdict >> READY_SHIFT, verdict & 0xFF):
            self._tracked_idle = True
        if not tracker.active:
            self._stop_tracking()
        return True

    def _track_chunk(self, data: bytes) -> None:
        framer, tracker = self._sframer, self.tracker
        short = len(data) < _SHORT_READ
        if framer.bytes_to_boundary != 0 and tracker.wants_rows():
            # Reads cut rows: read the one the last chunk ended in again with this
            # chunk, so that the run is whole messages without a framing step
            carried = framer.take_carry(B_DATA_ROW, _REREAD_LIMIT)
            if carried is not None:
                data = carried + data
        n = len(data)
        pos = 0
        need = framer.bytes_to_boundary
        if need:  # finish the message the last chunk ended in
            if need > n:
                self._track_frames(framer.feed(data) or (), short)
                return
            if not self._track_frames(framer.feed(data[:need]) or (), False, data, need):
                return
            pos = need
        elif need is None:
            self._track_frames(framer.feed(data) or (), short)
            return
        while pos < n and self.tracker is tracker:
            if data[pos] == B_DATA_ROW and tracker.wants_rows():
                count, stop = count_data_rows(data, pos)
                if count:
                    run = data if stop - pos == n else data[pos:stop]
                    self._tracked_out.extend(tracker.add_rows(run, count))
                    pos = stop
                    continue
            # the whole messages up to the next DataRow that may be wanted (a reply
            # other than a row can change which rows are), in one call
            frames: list[Frame] = []
            end, changed = pos, False
            while n - end >= 5:
                msg_type = data[end]
                if msg_type == B_DATA_ROW and changed:
                    break
                after = end + 1 + int.from_bytes(data[end + 1:end + 5], "big")
                if after > n:
                    break
                frames.append(Frame(msg_type, data[end:after]))
                changed |= msg_type != B_DATA_ROW
                end = after
            if frames:
                if not self._track_frames(frames, False, data, end):
                    return
                pos = end
                continue
            self._track_frames(framer.feed(data[pos:]) or (), short)
            return
        if pos < n:  # tracking ended mid-chunk: the rest is plain relay
            self._emit_tracked()
            self._server_data(data[pos:])
            return
        self._track_frames((), short)

    def _server_frames(self, frames, short_read: bool = True) -> None:
        """Bookkeeping and output for complete server messages (the leftovers of a
        takeover, which precede anything the framer still holds)."""
        self._track_frames(frames, short_read)
        self._emit_tracked()

    def _track_frames(self, frames, short_read: bool, rest: bytes = b"", rest_at: int = 0) -> bool:
        """Bookkeeping and output (into `_tracked_out`) for complete server messages
        (tracking mode, or a takeover's leftovers). A message that must wait for the
        batches on the workers is held back with the ones after it and
        `rest[rest_at:]`, the rest of the chunk; False then, or if the session ended."""
        tracker = self.tracker
        out = self._tracked_out
        frames = frames if type(frames) is list else list(frames)
        for index, item in enumerate(frames):
            msg_type = item.type
            if tracker is not None:
                if msg_type == B_DATA_ROW and tracker.wants_rows():
                    out.extend(tracker.add_rows(bytes(item.raw), 1))
                    continue
                if tracker.holding_rows:
                    self._flush_rows()
                if self._batches:
                    held = [*frames[index:], *([rest[rest_at:]] if rest_at < len(rest) else [])]
                    self._held_back.extendleft(reversed(held))
                    self._batch_flow()
                    return False
            raw = bytes(item.raw)
            self._tracked_idle |= self._note_server(msg_type, raw)
            if tracker is None:
                out.append(raw)
                continue
            try:
                out.extend(tracker.server_message(msg_type, raw))
            except Exception as exc:  # noqa: BLE001 - a failed prediction ends the session
                log.exception("rewriting results failed session=%s", self.id)
                self._fatal(PgError(errors.INTERNAL_ERROR,
                                    f"mlproxy could not evaluate a model: {exc}", severity="FATAL"))
                return False
        if tracker is not None:
            held = tracker.holding_rows
            # A drained socket flushes what is held, unless batches are still on the
            # workers: their completion flushes it (_batches_done), and meanwhile
            # the rows that arrive join it. Batches thus grow with the load instead
            # of being one read each, whose fixed costs would dominate.
            if held >= _ROW_BATCH or tracker.holding_bytes >= _BATCH_BYTES \
                    or (held and short_read and not self._batches):
                self._flush_rows()
            if not tracker.active and not tracker.holding_rows and not self._batches \
                    and self.state is not State.TAKEOVER:  # a takeover frames every message
                self._stop_tracking()
        return True

    def _flush_rows(self) -> None:
        """Rewrite the rows the tracker holds: a small batch here and now, a big one
        (or any behind one) on a worker thread, its result written in order."""
        tracker = self.tracker
        if tracker.holding_rows < workers.THREAD_MIN_ROWS and tracker.holding_bytes < workers.THREAD_MIN_BYTES \
                and not self._batches:
            self._tracked_out.extend(tracker.flush())
            return
        rewriter, rows, count, starts = tracker.take_rows()
        if self._tracked_out:  # what precedes the batch goes out now
            self.client.writelines(self._tracked_out)
            self._tracked_out = []
        future = workers.submit(rewriter, rows, count, starts)
        self._batches.append(future)
        future.add_done_callback(self._batch_finished)
        self._batch_flow()

    def _batch_finished(self, _future) -> None:
        """Worker thread: wake the event loop to write what is ready."""
        try:
            self._loop.call_soon_threadsafe(self._batches_done)
        except RuntimeError:  # the loop is closed: the proxy is shutting down
            pass

    def _batches_done(self) -> None:
        """Write the finished batches at the head of the line (in order), then the
        replies that waited behind them."""
        try:
            self._write_batches()
        except Exception:  # noqa: BLE001 - the last resort: see _internal_failure
            self._internal_failure("writing rewritten results")

    def _write_batches(self) -> None:
        if self.state is State.CLOSED:
            self._batches.clear()
            self._held_back.clear()
            return
        batches = self._batches
        while batches and batches[0].done():
            future = batches.popleft()
            try:
                self._tracked_out.append(future.result())
            except Exception as exc:  # noqa: BLE001 - the statement's error, in place of its rows
                self._tracked_out.append(self.tracker.fail(exc))
                for later in batches:  # later rows of the same result: dropped
                    later.cancel()
                batches.clear()
        tracker = self.tracker
        if tracker is not None and tracker.holding_rows and len(batches) < workers.WORKERS_PER_SESSION:
            self._flush_rows()  # the rows that came in meanwhile (they precede _held_back)
        self._emit_tracked()
        while self._held_back and not batches and self.state is not State.CLOSED:
            item = self._held_back.popleft()
            if type(item) is Frame:
                self._track_frames((item,), False)
            elif self.tracker is not None:
                self._track_chunk(item)
            else:
                self._server_data(item)
            self._emit_tracked()
        self._batch_flow()

    def _batch_flow(self) -> None:
        """Stop reading the upstream while enough batches are on the workers or
        replies wait behind them; read again once they are done."""
        want = len(self._batches) > workers.WORKERS_PER_SESSION or bool(self._held_back)
        if want and not self._batch_paused and self.upstream is not None:
            self._batch_paused = True
            self.upstream.pause_reading()
        elif not want and self._batch_paused:
            self._batch_paused = False
            if not self._upstream_paused and self.upstream is not None:
                self.upstream.resume_reading()

    def _emit_tracked(self) -> None:
        out, idle = self._tracked_out, self._tracked_idle
        if out:
            self._tracked_out = []
            self.client.writelines(out)
        if idle:
            self._tracked_idle = False
            self._became_idle()

    def start_tracking(self) -> ResponseTracker:
        """Match requests and replies from now on (results are about to be rewritten)."""
        if self.tracker is None:
            self.tracker = ResponseTracker()
            # replies to the pipeline sent before tracking began come first
            self.tracker.expect_plain(self.unsynced_kinds)
            self._cframer.set_wanted(_CLIENT_TRACKED)
            self._sframer.set_wanted(ALL)
            self._sframer.assemble_limit = protocol.LARGE_MESSAGE_LIMIT + 1
        return self.tracker

    def _stop_tracking(self) -> None:
        self.tracker = None
        self._cframer.set_wanted(_CLIENT_WATCH)
        self._sframer.set_wanted(_SERVER_WATCH)

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
        if (self._lent or self.state is not _RELAY or self.tracker is not None
                or self.client.is_closing() or self.upstream.is_closing()
                or self.unsynced or self._client_pauses or self._upstream_paused
                or self._async_out or self._idle_waiters or self._draining
                or self._terminating or self._batches or self._held_back
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
            self.server.pump.lend(self, *self._pump_fds, CLIENT_LIMITS, triggers)
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
        if record.reason == FAILED:
            log.error("relay pump out of memory session=%s: closing it", self.id)
            if keep_input:  # else the session is ending already
                self._finish()
            return
        self.pending = record.pending
        self.copy_in = bool(record.copy_in)
        if record.ready_seen:
            self.txstatus = _STATUS[record.txstatus]
            self.failed_since_sync = False
        self.bytes_in += record.bytes_client
        self.bytes_out += record.bytes_server
        self.readies += record.readies
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
            if self.pending:
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
                await interceptor.handle(frame, takeover)
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
        """Whether Postgres would run this Query now. One sent after extended-protocol
        messages with no Sync between runs once their replies are out (they are
        relayed first, so that no reply owed to the client is lost or read as the
        interceptor's own), and ends their batch as a Sync would; after an error
        among them Postgres is skipping to the client's Sync and ignores the Query:
        so does the proxy (False)."""
        if frame.type != F_QUERY or not (self.unsynced or self.failed_since_sync):
            return True
        if not await relay_owed(takeover):
            log.debug("query ignored while skipping to Sync session=%s", self.id)
            return False
        self.unsynced = False
        self.unsynced_kinds.clear()
        return True

    def _end_takeover(self, takeover: Takeover) -> None:
        tracking = self.tracker is not None
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
        while self._batches or self._held_back:
            await asyncio.sleep(0.001)

    def relay_frame(self, frame: Frame) -> None:
        """Send on a client message that an interceptor examined and left alone."""
        raw = bytes(frame.raw)
        if self.tracker is not None:
            raw = self.tracker.client_message(frame.type, raw)
        self.forward_request(raw)

    def forward_request(self, raw: bytes) -> None:
        """Send a (possibly rewritten) client request upstream as the relay would:
        a Query or Sync counts as in flight until its ReadyForQuery."""
        self._account(raw[0], raw[5] if len(raw) > 5 else 0)
        self._write_upstream(raw)

    def _write_upstream(self, data: bytes) -> None:
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


class _CancelSink(asyncio.Protocol):
    """Upstream side of a forwarded cancel: the server answers by closing."""

    def __init__(self) -> None:
        self._closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), timeout)
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
