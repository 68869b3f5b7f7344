"""The reply rewrite of sessions with model calls (proxy/reply_rewrite.py).

While a session has statements whose results the proxy rewrites, its replies are
matched to its requests (tracker.py) and the rows of a rewritten result are held
in batches, rewritten (a small batch here, a big one on a worker thread, see
workers.py) and spliced back in result order. What a chunk produces goes to the
client in one write, after the batches still on the workers (replies behind them
wait in `_held_back`).

When nothing is in flight and only prepared statements of the proxy remain, the
rewrite is parked (the session relays at full speed, lent to the relay pump) until
a client message names one of them.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future

from .. import errors, protocol
from ..errors import PgError
from ..framing import Frame
from ..protocol import B_DATA_ROW, B_READY_FOR_QUERY
from ..owed_replies import relay_owed, skip_to_sync
from ..wire_scan import ENDS_READY, READY_SHIFT, server_chunk
from . import workers
from .rowscan import count_data_rows
from .tracker import EXECUTE, QUERY, ResponseTracker, expectation_kind

log = logging.getLogger("mlproxy.session")

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


def start_tracking(session) -> ResponseTracker:
    """Match requests and replies of `session` from now on (results are about to be
    rewritten): its tracker, the one it had if it was parked."""
    rewrite = session.rewrite
    if rewrite is None:
        rewrite = session.parked_rewrite
        if rewrite is None:
            rewrite = TrackedRelay(session)
        session.attach_rewrite(rewrite)
    session.rewritten_request()
    return rewrite.tracker


def tracker_of(session) -> ResponseTracker | None:
    """The session's tracker while its replies are matched, else None."""
    rewrite = session.rewrite
    return rewrite.tracker if rewrite is not None else None


class TrackedRelay:
    """A session's reply stream while model calls' results are rewritten."""

    def __init__(self, session) -> None:
        self.session = session
        self.tracker = ResponseTracker()
        # Rewritten batches on the worker threads (in result order), the server's
        # input that waits behind them, and what is to be written.
        self._batches: deque[Future] = deque()
        self._held_back: deque = deque()
        self._batch_paused = False
        self._out: list[bytes] = []
        self._idle = False
        self._loop = session.loop

    # -- ReplyRewrite ----------------------------------------------------------------
    def client_message(self, msg_type: int, raw: bytes) -> bytes:
        tracker = self.tracker
        forwarded = tracker.client_message(msg_type, raw)
        queue = tracker.queue
        if queue and queue[-1].rewriter is not None and queue[-1].kind == EXECUTE:
            self.session.rewritten_request()
        return forwarded

    def client_chunk(self, data: bytes) -> bytes | None:
        forwarded = self.tracker.client_pipeline(data)
        if forwarded is not None:
            self.session.rewritten_request()
        return forwarded

    def interceptor_for(self, raw):
        return self.tracker.interceptor_for(raw)

    @property
    def busy(self) -> bool:
        return bool(self._batches or self._held_back)

    @property
    def hidden_next(self) -> bool:
        return self.tracker.hidden_next

    def answered(self) -> bool:
        self.tracker.answered()
        return not self.tracker.discarding

    def park_names(self) -> tuple[bytes, ...] | None:
        if self._batches or self._held_back or self._out:
            return None
        return self.tracker.park_names()

    def unnamed_dropped(self) -> None:
        self.tracker.unnamed_dropped()

    def wake(self, pending: int, unsynced_kinds: Sequence[int]) -> None:
        tracker = self.tracker
        tracker.expect_plain([QUERY] * pending)
        tracker.expect_plain([expectation_kind(k >> 8, k & 0xFF) for k in unsynced_kinds])

    def ignored_in_copy(self, first: int, count: int, flushes: int) -> None:
        self.tracker.ignored_in_copy(first, count, flushes)

    def wake_interceptor(self):
        return _WAKE

    def server_data(self, data: bytes) -> None:
        """Relay with request/reply matching, rewriting the results of statements
        with model calls. Runs of DataRows of a rewritten result are handed over as
        slices of the chunk (no object per row); other messages one by one."""
        if self._held_back:
            self._held_back.append(data)
        elif not self._plain_replies(data) and not self._pipeline_reply(data):
            self._track_chunk(data)
        self._emit()

    def server_frames(self, frames) -> None:
        self._track_frames(frames, True)
        self._emit()

    # -- the reply stream -----------------------------------------------------------
    def _plain_replies(self, data: bytes) -> bool:
        """Relay a chunk of whole replies to requests none of which is rewritten (a
        session that holds a prepared model statement runs others too) as the
        untracked relay does: one scan for its ReadyForQuery messages, each of which
        answers one awaited request, the chunk ending with one. False, and nothing
        done, for anything else (an ErrorResponse, a reply to a rewritten request,
        replies of a request not all there, a message cut)."""
        tracker, session = self.tracker, self.session
        if self._batches or self._out or not session.server_framer.at_boundary:
            return False
        groups = tracker.plain_groups()
        if groups < 0:
            return False
        verdict = server_chunk(data)
        # ending with a ReadyForQuery, the chunk holds whole groups' replies
        if verdict is None or not verdict & ENDS_READY or verdict >> READY_SHIFT > groups:
            return False
        tracker.answered_groups(verdict >> READY_SHIFT, verdict & 0xFF)
        session.client.write(data)
        if session.ready(verdict >> READY_SHIFT, verdict & 0xFF):
            self._idle = True
        self._maybe_stop()
        return True

    def _pipeline_reply(self, data: bytes) -> bool:
        """Relay the whole reply to a prepared model statement's request in one pass
        (tracker.pipeline_reply): the same bytes as _track_chunk, without its
        framing and per-message steps. False, nothing done, for anything else."""
        session = self.session
        if self._batches or self._out or not session.server_framer.at_boundary:
            return False
        try:
            done = self.tracker.pipeline_reply(data)
        except Exception as exc:  # noqa: BLE001 - as _track_frames: the session ends
            log.exception("rewriting results failed session=%s", session.id)
            session.fatal(PgError(errors.INTERNAL_ERROR,
                                  f"mlproxy could not evaluate a model: {exc}", severity="FATAL"))
            return True
        if done is None:
            return False
        out, ready, failed = done
        self._out = [b"".join(out)]  # one buffer: the transport's write of a list costs more
        if failed:  # the end of a failed result: as any (_track_frames)
            self._track_frames([Frame(B_READY_FOR_QUERY, ready)], False)
            return True
        self._idle |= session.note_server(B_READY_FOR_QUERY, ready)
        self._maybe_stop()
        return True

    def _track_chunk(self, data: bytes) -> None:
        session, tracker = self.session, self.tracker
        framer = session.server_framer
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
        while pos < n and session.rewrite is self:
            if data[pos] == B_DATA_ROW and tracker.wants_rows():
                count, stop = count_data_rows(data, pos)
                if count:
                    run = data if stop - pos == n else data[pos:stop]
                    self._out.extend(tracker.add_rows(run, count))
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
            self._emit()
            session.server_data(data[pos:])
            return
        self._track_frames((), short)

    def _track_frames(self, frames, short_read: bool, rest: bytes = b"", rest_at: int = 0) -> bool:
        """Bookkeeping and output (into `_out`) for complete server messages. A
        message that must wait for the batches on the workers is held back with the
        ones after it and `rest[rest_at:]`, the rest of the chunk; False then, or if
        the session ended."""
        session, tracker = self.session, self.tracker
        attached = session.rewrite is self
        out = self._out
        frames = frames if type(frames) is list else list(frames)
        for index, item in enumerate(frames):
            if type(item) is not Frame:  # passed through by the framer (not ours)
                out.append(bytes(item))
                continue
            msg_type = item.type
            if attached:
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
            if msg_type == B_READY_FOR_QUERY and attached and tracker.discarding \
                    and tracker.fail_block(raw):
                # the proxy failed a result Postgres ran, in a transaction block: a
                # statement of Postgres' own fails the block, as Postgres' error
                # would have; its ReadyForQuery (E) is relayed in this one's place
                session.upstream.write(protocol.FAIL_BLOCK_QUERY)
                continue
            self._idle |= session.note_server(msg_type, raw)
            if not attached:
                out.append(raw)
                continue
            try:
                out.extend(tracker.server_message(msg_type, raw))
            except Exception as exc:  # noqa: BLE001 - a failed prediction ends the session
                log.exception("rewriting results failed session=%s", session.id)
                session.fatal(PgError(errors.INTERNAL_ERROR,
                                      f"mlproxy could not evaluate a model: {exc}", severity="FATAL"))
                return False
        if attached:
            held = tracker.holding_rows
            # A drained socket flushes what is held, unless batches are still on the
            # workers: their completion flushes it (_batches_done), and meanwhile
            # the rows that arrive join it. Batches thus grow with the load instead
            # of being one read each, whose fixed costs would dominate.
            if held >= _ROW_BATCH or tracker.holding_bytes >= _BATCH_BYTES \
                    or (held and short_read and not self._batches):
                self._flush_rows()
            self._maybe_stop()
        return True

    def _maybe_stop(self) -> None:
        """Detach when nothing is left to rewrite (a takeover frames every message:
        not then); park when only the proxy's prepared statements remain."""
        if self._batches or self._held_back or self.tracker.holding_rows:
            return
        session = self.session
        if session.in_takeover:
            return
        if not self.tracker.active:
            self._emit()
            session.detach_rewrite(park=False)
        elif self._idle and session.pending == 0 and session.relaying and session.may_park \
                and self.park_names() is not None:
            # (not while a takeover waits: its interceptor may be this rewrite's own,
            # for a Bind of one of its statements)
            self._emit()
            session.detach_rewrite(park=True)

    def _flush_rows(self) -> None:
        """Rewrite the rows the tracker holds: a small batch here and now, a big one
        (or any behind one) on a worker thread, its result written in order."""
        tracker = self.tracker
        if tracker.holding_rows < workers.THREAD_MIN_ROWS and tracker.holding_bytes < workers.THREAD_MIN_BYTES \
                and not self._batches:
            self._out.extend(tracker.flush())
            return
        rewriter, rows, count, starts = tracker.take_rows()
        if self._out:  # what precedes the batch goes out now
            self.session.client.writelines(self._out)
            self._out = []
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
        except Exception:  # noqa: BLE001 - the last resort: see Session.internal_failure
            self.session.internal_failure("writing rewritten results")

    def _write_batches(self) -> None:
        session = self.session
        if session.closed.done():
            self._batches.clear()
            self._held_back.clear()
            return
        batches = self._batches
        while batches and batches[0].done():
            future = batches.popleft()
            try:
                self._out.append(future.result())
            except Exception as exc:  # noqa: BLE001 - the statement's error, in place of its rows
                self._out.append(self.tracker.fail(exc))
                for later in batches:  # later rows of the same result: dropped
                    later.cancel()
                batches.clear()
        if self.tracker.holding_rows and len(batches) < workers.WORKERS_PER_SESSION:
            self._flush_rows()  # the rows that came in meanwhile (they precede _held_back)
        self._emit()
        while self._held_back and not batches and not session.closed.done():
            item = self._held_back.popleft()
            if type(item) is Frame:
                self._track_frames((item,), False)
            elif session.rewrite is self:
                self._track_chunk(item)
            else:
                session.server_data(item)
            self._emit()
        self._batch_flow()

    def _batch_flow(self) -> None:
        """Stop reading the upstream while enough batches are on the workers or
        replies wait behind them; read again once they are done."""
        want = len(self._batches) > workers.WORKERS_PER_SESSION or bool(self._held_back)
        if want and not self._batch_paused:
            self._batch_paused = True
            self.session.pause_upstream()
        elif not want and self._batch_paused:
            self._batch_paused = False
            self.session.resume_upstream()

    def _emit(self) -> None:
        out, idle = self._out, self._idle
        if out:
            self._out = []
            self.session.client.writelines(out)
        if idle:
            self._idle = False
            self.session.became_idle()


class _Wake:
    """Wakes a parked rewrite inside a takeover: the replies owed to untracked
    messages are relayed first (relay_owed), then the message goes on tracked."""

    async def handle(self, frame: Frame, takeover) -> None:
        session = takeover.session
        if not await relay_owed(takeover):  # Postgres skips to the client's Sync
            session.relay_frame(frame)
            await skip_to_sync(takeover)
            return
        tracker = start_tracking(session)
        if frame.type == protocol.F_BIND or frame.type == protocol.F_DESCRIBE:
            interceptor = tracker.interceptor_for(frame.raw)
            if interceptor is not None:
                await interceptor.handle(frame, takeover)
                return
        session.relay_frame(frame)


_WAKE = _Wake()
