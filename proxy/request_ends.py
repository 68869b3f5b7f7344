"""The requests in flight on a session, in the client's order, as Postgres ends them.

Each Query, FunctionCall and Sync the client sends is a request that Postgres ends
with a ReadyForQuery, except a Sync that Postgres reads inside a COPY FROM STDIN:
it ignores it there, "for the convenience of client libraries (such as libpq) that
may send those without noticing that the command they just sent was COPY"
(copyfromparse.c), and so it ignores a Flush, which outside a COPY it refuses when
the Flush has a body (08P01, then it skips to the next Sync). The proxy notes a
message when it relays it, and learns that a COPY began only when the server's
CopyInResponse comes back, by which time the client may have sent such messages:
libpq's PQexecParams sends Parse, Bind, Execute and Sync together, and a pipelining
client sends the data, CopyDone and more requests behind them. So the order of
what is in flight is kept, and a COPY's beginning (`copy_began`) takes back what
Postgres ignores:

- the COPY began in the first request in flight (every one before it is answered):
  a Query, or an Execute of the pipeline that the first Sync in flight ends, and
  then that Sync is read inside the COPY, so it is ignored;
- every Sync and Flush with a body after it is ignored too, up to the client's
  CopyDone or CopyFail, if the client sent one already (then the COPY is over in
  the client's stream, and the session is not in COPY IN); Postgres reads what
  follows as usual.

A CopyDone, CopyFail or Flush with a body that the client sends outside a COPY the
server has said began is kept in place (`copy_ended_ahead`, `flush_refused`): it
may belong to the COPY of the request before it, or of an Execute in the pipeline
still open (whose Sync comes after it). With neither, Postgres cannot read it inside
a COPY, and this record keeps nothing. One kept for the request before it is
dropped when that request is answered (it began no COPY then).

Only where an error ends a COPY before the client's CopyDone is this not exact:
Postgres answers the Syncs it reads after the error (they are no longer inside the
COPY), and which those are depends on when Postgres read them. docs/relay.md says
what follows from that.

The relay's fast paths (wire_scan.client_chunk, the relay pump) count requests of
one kind at a time (QUERY or SYNC, their bits) and leave CopyDone, CopyFail and a
Flush with a body outside COPY IN to the session; `kind` says whether the record is
one run of one kind they can continue.
"""

from __future__ import annotations

from typing import NamedTuple

# Request kinds, the bits the fast paths use (wire_scan.SYNC_ENDS, _wire_rules.h)
QUERY = 1  # a Query or FunctionCall (or the startup exchange): always answered
SYNC = 2  # a Sync: ignored by Postgres inside a COPY FROM STDIN
# Kept in place, sent outside a COPY the server said began: a CopyDone or CopyFail
# (which may end a COPY) and a Flush with a body (which Postgres refuses, unless it
# reads it inside a COPY), each for the COPY of the request before it (BEFORE) or of
# an Execute whose pipeline's request comes after it (NEXT)
_ENDS_BEFORE = 4
_ENDS_NEXT = 8
_FLUSH_BEFORE = 16
_FLUSH_NEXT = 32
_ENDS = _ENDS_BEFORE | _ENDS_NEXT
_FLUSHES = _FLUSH_BEFORE | _FLUSH_NEXT
_BEFORE = _ENDS_BEFORE | _FLUSH_BEFORE


class CopyBegan(NamedTuple):
    """What a CopyInResponse means for what is in flight (RequestEnds.copy_began)."""

    first: int  # Postgres ignores `ignored` requests in flight from the `first` on,
    ignored: int  # all Syncs, now taken out of the record
    flushes: int  # and the first `flushes` Flushes with a body kept (it refuses none),
    flushes_since_sync: int  # of which these came after the last Sync or Query sent
    copy_in: bool  # in COPY IN now (False: the client ended this COPY already)
    # the COPY is an Execute's and the Sync that ended its pipeline was read inside
    # it: Postgres' pipeline goes on after the COPY, and no Sync was sent after it
    pipeline_open: bool


class RequestEnds:
    """Requests in flight (`count`), in order, and what the client sent among them
    that a COPY may make Postgres ignore or end."""

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
        """QUERY or SYNC when every request in flight is of that kind and nothing is
        kept among them (0: none in flight); -1 otherwise."""
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
        self._keep(_ENDS_NEXT if execute_open else _ENDS_BEFORE)

    def flush_refused(self, execute_open: bool) -> None:
        """The client sent a Flush with a body with no COPY begun as far as the
        server said: Postgres refuses it, unless it reads it inside a COPY."""
        self._keep(_FLUSH_NEXT if execute_open else _FLUSH_BEFORE)

    def pipeline_answered(self) -> None:
        """Every reply to the extended-protocol messages since the last Sync came
        (owed_replies.relay_owed): what was kept for an Execute among them met no
        COPY (its CopyInResponse would have come first)."""
        runs = self._runs
        while runs and runs[-1][0] & (_ENDS_NEXT | _FLUSH_NEXT):
            runs.pop()

    def ready(self, n: int) -> bool:
        """`n` ReadyForQuery messages came: True when they answered the last
        request in flight. (More than are in flight answer nothing known.)"""
        if not self.count:
            return False
        runs = self._runs
        while n and self.count:
            while runs[0][0] > SYNC:  # its request is answered: they met no COPY
                runs.pop(0)
            run = runs[0]
            take = min(n, run[1])
            run[1] -= take
            n -= take
            self.count -= take
            if not run[1]:
                runs.pop(0)
        while runs and runs[0][0] & _BEFORE:  # those of the request answered
            runs.pop(0)
        return not self.count

    def copy_began(self) -> CopyBegan:
        """The server's CopyInResponse came: what Postgres reads inside this COPY
        and ignores is taken out of the record."""
        items = [kind for kind, n in self._runs for _ in range(n)]
        at, ended = 0, None
        flushed = []  # the Flushes with a body read inside the COPY
        # what is kept before the first request: for an Execute of its pipeline
        while at < len(items) and items[at] > SYNC and ended is None:
            if items[at] & _FLUSHES:
                flushed.append(at)
            else:
                ended = at
            at += 1
        dropped = set(range(at))  # (with the CopyDone, if one ended the COPY)
        of_execute = first = ignored = 0
        if ended is None and at < len(items):
            # the COPY began in this request: a Query's own ReadyForQuery comes; an
            # Execute's pipeline ends with this Sync, read inside the COPY
            of_execute = items[at] == SYNC
            first = 0 if of_execute else 1
            if of_execute:
                dropped.add(at)
                ignored += 1
            at += 1
            while at < len(items):
                kind = items[at]
                if kind == QUERY:
                    # Postgres reads it after an error ended the COPY, or inside the
                    # COPY (then 08P01, and it closes): either way nothing after it
                    # is read inside this COPY
                    ended = at
                    break
                if kind & _ENDS:
                    ended = at
                    dropped.add(at)
                    at += 1
                    while at < len(items) and items[at] == _ENDS_BEFORE:
                        dropped.add(at)  # strays: Postgres ignores them too
                        at += 1
                    break
                dropped.add(at)
                if kind == SYNC:
                    ignored += 1
                else:
                    flushed.append(at)
                at += 1
        after = any(kind <= SYNC for kind in items[at:])
        last_request = max((i for i, kind in enumerate(items) if kind <= SYNC), default=-1)
        self._runs = []
        for index, kind in enumerate(items):
            if index not in dropped:
                self._push(kind, 1)
        self.count -= ignored
        return CopyBegan(first, ignored, len(flushed), sum(i > last_request for i in flushed),
                         ended is None, bool(of_execute) and not after)

    # -- the runs --------------------------------------------------------------------
    def _keep(self, kind: int) -> None:
        """Keep a message of `kind` in place, when it may meet a COPY at all."""
        if kind & (_ENDS_NEXT | _FLUSH_NEXT) or self.count:
            self._push(kind, 1)

    def _push(self, kind: int, n: int) -> None:
        runs = self._runs
        if runs and runs[-1][0] == kind:
            runs[-1][1] += n
        else:
            runs.append([kind, n])
