"""The requests in flight on a session, in the client's order, as Postgres ends them.

Each Query, FunctionCall and Sync the client sends is a request that Postgres ends
with a ReadyForQuery, except a Sync that Postgres reads inside a COPY FROM STDIN:
it ignores it there, "for the convenience of client libraries (such as libpq) that
may send those without noticing that the command they just sent was COPY"
(copyfromparse.c). The proxy counts a request when it relays it, and learns that a
COPY began only when the server's CopyInResponse comes back, by which time the
client may have sent such Syncs: libpq's PQexecParams sends Parse, Bind, Execute
and Sync together, and a pipelining client sends the data, CopyDone and more
requests behind them. So the order of what is in flight is kept, and a COPY's
beginning (`copy_began`) takes back the Syncs Postgres ignores:

- the COPY began in the first request in flight (every one before it is answered):
  a Query, or an Execute of the pipeline that the first Sync in flight ends, and
  then that Sync is read inside the COPY, so it is ignored;
- every Sync after it is ignored too, up to the client's CopyDone or CopyFail, if
  the client sent one already (then the COPY is over in the client's stream, and
  the session is not in COPY IN); Postgres answers the Syncs after that.

A CopyDone or CopyFail the client sends outside a COPY the server has said began is
kept in place (`copy_ended_ahead`): it may end the COPY of the request before it,
or of an Execute in the pipeline still open (whose Sync comes after it). With
neither, Postgres ignores it, and so does this record. (Postgres ignores it too
when that request began no COPY: it is dropped when the request is answered.)

Only where an error ends a COPY before the client's CopyDone is this not exact:
Postgres answers the Syncs it reads after the error (they are no longer inside the
COPY), and which those are depends on when Postgres read them. docs/relay.md says
what follows from that.

The relay's fast paths (wire_scan.client_chunk, the relay pump) count requests of
one kind at a time (QUERY or SYNC, their bits); `kind` says whether the record is
one run of one kind they can continue.
"""

from __future__ import annotations

from typing import NamedTuple

# Request kinds, the bits the fast paths use (wire_scan.SYNC_ENDS, _wire_rules.h)
QUERY = 1  # a Query or FunctionCall (or the startup exchange): always answered
SYNC = 2  # a Sync: ignored by Postgres inside a COPY FROM STDIN
# A CopyDone/CopyFail sent outside a COPY the server said began, which may end
_ENDS_BEFORE = 4  # the COPY of the request before it
_ENDS_NEXT = 8  # the COPY of an Execute whose pipeline's request comes after it


class CopyBegan(NamedTuple):
    """What a CopyInResponse means for the requests in flight (RequestEnds.copy_began)."""

    first: int  # Postgres ignores `ignored` requests in flight from the `first` on,
    ignored: int  # all Syncs, now taken out of the record
    copy_in: bool  # in COPY IN now (False: the client ended this COPY already)
    # the COPY is an Execute's and the Sync that ended its pipeline was read inside
    # it: Postgres' pipeline goes on after the COPY, and no Sync was sent after it
    pipeline_open: bool


class RequestEnds:
    """Requests in flight (`count`), in order, and the client's COPY ends among them."""

    __slots__ = ("count", "_runs")

    def __init__(self) -> None:
        self.count = 0
        self._runs: list[list[int]] = []  # [kind, how many] in the client's order

    def __repr__(self) -> str:
        return f"RequestEnds({self._runs!r})"

    def add(self, kind: int, n: int = 1) -> None:
        """`n` requests of `kind` went upstream."""
        self._push(kind, n)
        self.count += n

    def reset(self, kind: int, n: int) -> None:
        """In flight now: `n` requests of `kind` and nothing else (the pump's record,
        the startup exchange)."""
        self._runs = [[kind, n]] if n else []
        self.count = n

    @property
    def kind(self) -> int:
        """QUERY or SYNC when every request in flight is of that kind and no COPY end
        is kept among them (0: none in flight); -1 otherwise."""
        runs = self._runs
        if not runs:
            return 0
        if len(runs) == 1 and runs[0][0] <= SYNC:
            return runs[0][0]
        return -1

    def kinds(self) -> list[int]:
        """The kinds of the requests in flight, in order."""
        return [kind for kind, n in self._runs if kind <= SYNC for _ in range(n)]

    def copy_ended_ahead(self, execute_open: bool) -> None:
        """The client sent a CopyDone or CopyFail with no COPY begun as far as the
        server said; `execute_open`: an Execute was sent since the last Sync."""
        if execute_open:
            self._push(_ENDS_NEXT, 1)
        elif self.count:
            self._push(_ENDS_BEFORE, 1)

    def pipeline_answered(self) -> None:
        """Every reply to the extended-protocol messages since the last Sync came
        (owed_replies.relay_owed): a COPY end kept for an Execute among them ended
        no COPY (its CopyInResponse would have come first), and Postgres ignored it."""
        runs = self._runs
        if runs and runs[-1][0] == _ENDS_NEXT:
            runs.pop()

    def ready(self, n: int) -> bool:
        """`n` ReadyForQuery messages came: True when they answered the last
        request in flight. (More than are in flight answer nothing known.)"""
        if not self.count:
            return False
        runs = self._runs
        while n and self.count:
            while runs[0][0] > SYNC:  # its request is answered: they end no COPY now
                runs.pop(0)
            run = runs[0]
            take = min(n, run[1])
            run[1] -= take
            n -= take
            self.count -= take
            if not run[1]:
                runs.pop(0)
        while runs and runs[0][0] == _ENDS_BEFORE:  # those of the request answered
            runs.pop(0)
        return not self.count

    def copy_began(self) -> CopyBegan:
        """The server's CopyInResponse came: the Syncs Postgres reads inside this
        COPY are taken out of the record."""
        runs = self._runs
        if not runs:  # an Execute whose Sync is still to come
            return CopyBegan(0, 0, True, False)
        if runs[0][0] > SYNC:  # the COPY of an Execute, ended before its Sync
            self._take(0, 1)
            return CopyBegan(0, 0, False, False)
        of_execute = runs[0][0] == SYNC  # (a Query's own ReadyForQuery comes)
        first = 0 if of_execute else 1
        at, skip = 0, first  # position (run, offset) of the first request after `first`
        if skip and skip == runs[0][1]:
            at, skip = 1, 0
        ignored, ended, after = 0, False, False
        while at < len(runs):
            kind, n = runs[at]
            if kind == SYNC:
                ignored += n - skip
            elif kind == QUERY:
                after = True
                break  # Postgres reads it during the COPY: 08P01, and it closes
            else:
                ended = True
                after = any(kind <= SYNC for kind, _ in runs[at + 1:])
                break
            at, skip = at + 1, 0
        if ignored:
            self._drop_syncs(first, ignored)
        if ended:
            self._take_marker()
        return CopyBegan(first, ignored, not ended, of_execute and not after)

    # -- the runs --------------------------------------------------------------------
    def _push(self, kind: int, n: int) -> None:
        runs = self._runs
        if runs and runs[-1][0] == kind:
            runs[-1][1] += n
        else:
            runs.append([kind, n])

    def _take(self, index: int, n: int) -> None:
        run = self._runs[index]
        run[1] -= n
        if not run[1]:
            del self._runs[index]
            self._merge(index)

    def _merge(self, index: int) -> None:
        runs = self._runs
        if 0 < index < len(runs) and runs[index - 1][0] == runs[index][0]:
            runs[index - 1][1] += runs.pop(index)[1]

    def _drop_syncs(self, first: int, n: int) -> None:
        """Take out `n` Syncs, all of them requests from the `first` on."""
        runs = self._runs
        index, seen = 0, 0
        while True:  # the run holding request `first`
            kind, count = runs[index]
            if kind <= SYNC:
                if seen + count > first:
                    break
                seen += count
            index += 1
        offset = first - seen
        while n:
            kind, count = runs[index]
            if kind != SYNC:
                index += 1
                continue
            take = min(n, count - offset)
            runs[index][1] -= take
            self.count -= take
            n -= take
            if not runs[index][1]:
                del runs[index]
                self._merge(index)
            else:
                index += 1
            offset = 0

    def _take_marker(self) -> None:
        """Drop the first COPY end kept, the one that ended the COPY just begun, and
        the others of the request before it: Postgres ignores them (the COPY is over
        and no request between began another)."""
        for index, (kind, _) in enumerate(self._runs):
            if kind == _ENDS_BEFORE:
                del self._runs[index]
                self._merge(index)
                return
            if kind == _ENDS_NEXT:  # (another may end a later Execute's COPY)
                self._take(index, 1)
                return
