"""The requests in flight and the Syncs Postgres ignores inside a COPY (proxy/request_ends.py).

Without sockets: a model of Postgres reads a client's stream in order and answers
it; the record sees the same stream as the proxy does, with the answers arriving
at any point after the message that caused them (hypothesis picks the
interleaving). It must never count a request Postgres will not answer, nor miss one
it will.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.request_ends import QUERY, SYNC, RequestEnds

# Client events: a Query (Q) or an Execute (E), either of a COPY FROM STDIN or not
# (the proxy cannot tell them apart), a Sync, a CopyDone, a Flush with a body (H);
# server events: the CopyInResponse (G), ErrorResponse (E) and ReadyForQuery (Z).
Q, Q_COPY, E, E_COPY, S, C, H = "Q", "Q copy", "E", "E copy", "S", "c", "H"


@dataclass
class Postgres:
    """What Postgres does with the events: it answers a Query and a Sync with
    ReadyForQuery, except a Sync inside a COPY, which it ignores, as it ignores a
    Flush there; outside one it refuses a Flush with a body, then skips everything
    up to the next Sync. A CopyDone ends the COPY (a Query's then gets its
    ReadyForQuery) or, outside one, is ignored."""

    copy: str | None = None  # None, "query" or "execute"
    pipeline_open: bool = False  # an extended-protocol message since the last Sync (or Query)
    skipping: bool = False
    stray_in_pipeline: bool = False  # a CopyDone outside a COPY, ignored, with it open
    out: list[str] = field(default_factory=list)

    def read(self, event: str) -> None:
        if self.copy is not None:
            assert event in (S, C, H), "no Query or Execute inside a COPY (Postgres closes)"
            if event == C:
                if self.copy == "query":
                    self.out.append("Z")
                self.copy = None
            return
        if self.skipping:
            if event == S:
                self.skipping = self.pipeline_open = self.stray_in_pipeline = False
                self.out.append("Z")
            return
        if event in (Q, Q_COPY):
            self.pipeline_open = self.stray_in_pipeline = False
            if event == Q_COPY:
                self.copy = "query"
                self.out.append("G")
            else:
                self.out.append("Z")
        elif event in (E, E_COPY):
            self.pipeline_open = True
            if event == E_COPY:
                self.copy = "execute"
                self.out.append("G")
        elif event == S:
            self.pipeline_open = self.stray_in_pipeline = False
            self.out.append("Z")
        elif event == H:
            self.out.append("E")
            self.skipping = self.pipeline_open = True
        elif event == C:
            self.stray_in_pipeline = self.pipeline_open

    def may_send(self) -> list[str]:
        """What the client may send. Not an Execute after a CopyDone that ended no
        COPY in the same pipeline as an Execute before it: the one case the record
        cannot judge (the CopyInResponse that follows may be either Execute's;
        request_ends.py)."""
        if self.copy is not None:
            return [S, C, H]
        if self.stray_in_pipeline:
            return [Q, Q_COPY, S, C, H]
        return [Q, Q_COPY, E, E_COPY, S, C, H]


@dataclass
class Proxy:
    """The session's bookkeeping as Session._account and _note_server do it."""

    ends: RequestEnds = field(default_factory=RequestEnds)
    copy_in: bool = False
    unsynced: bool = False
    kinds: list[str] = field(default_factory=list)  # Session.unsynced_kinds, E or H
    failed_since_sync: bool = False
    skipping_to_sync: bool = False

    @property
    def execute_open(self) -> bool:
        return E in self.kinds

    def client(self, event: str) -> None:
        if event in (Q, Q_COPY):
            if not self.skipping_to_sync:
                self.unsynced = False
                self.kinds.clear()
                self.ends.add(QUERY)
        elif event in (E, E_COPY):
            self.unsynced = True
            self.kinds.append(E)
        elif event == S:
            if not self.copy_in:
                self.unsynced = self.skipping_to_sync = False
                self.kinds.clear()
                self.ends.add(SYNC)
        elif event == C:
            if self.copy_in:
                self.copy_in = False
            else:
                self.ends.copy_ended_ahead(self.execute_open)
        elif event == H and not self.copy_in:
            self.unsynced = True
            self.ends.flush_refused(self.execute_open)
            self.kinds.append(H)

    def server(self, event: str) -> bool:
        if event == "Z":
            self.copy_in = self.failed_since_sync = False
            return self.ends.ready(1)
        if event == "E":
            self.copy_in = False
            self.failed_since_sync = True
            if self.unsynced and not self.ends.count:
                self.skipping_to_sync = True
            return False
        began = self.ends.copy_began()
        del self.kinds[:began.flushes_since_sync]
        if began.flushes_since_sync and not self.kinds:
            self.unsynced = False
        if began.pipeline_open:
            self.unsynced = True
            self.kinds.append(E)
        self.copy_in = began.copy_in
        return False


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_requests_in_flight_match_what_postgres_answers(data):
    postgres, proxy = Postgres(), Proxy()
    delivered = 0

    def deliver(event: str) -> None:
        if event == "Z":
            assert proxy.ends.count > 0, "a ReadyForQuery for no request counted"
        idle = proxy.server(event)
        assert idle == (proxy.ends.count == 0 and event == "Z")

    for _ in range(data.draw(st.integers(1, 14), label="steps")):
        owed = len(postgres.out) - delivered
        if owed and data.draw(st.booleans(), label="deliver"):
            deliver(postgres.out[delivered])
            delivered += 1
            continue
        event = data.draw(st.sampled_from(postgres.may_send()), label="client")
        if event in (Q, Q_COPY) and proxy.unsynced and not proxy.copy_in and not proxy.skipping_to_sync:
            # after extended-protocol messages with no Sync, a Query waits for their
            # replies (Session._query_turn, owed_replies.relay_owed), and is dropped
            # if one of them failed: Postgres skips it
            if not proxy.failed_since_sync:
                for reply in postgres.out[delivered:]:
                    deliver(reply)
                delivered = len(postgres.out)
                proxy.ends.pipeline_answered()
                proxy.kinds.clear()
            if proxy.failed_since_sync:
                continue
            proxy.unsynced = False
        postgres.read(event)
        proxy.client(event)
        # never idle while a ReadyForQuery is still to come
        still_to_come = postgres.out[delivered:].count("Z")
        assert proxy.ends.count >= still_to_come, (proxy.ends, postgres.out[delivered:])
    if postgres.copy is not None:  # the client ends it
        postgres.read(C)
        proxy.client(C)
    for event in postgres.out[delivered:]:
        deliver(event)
    assert proxy.ends.count == 0, proxy.ends
    assert proxy.copy_in == (postgres.copy is not None)
    assert proxy.unsynced == postgres.pipeline_open


def _through(events: list[str], replies_after: int) -> Proxy:
    """The events sent, Postgres' replies arriving after the first `replies_after`."""
    postgres, proxy = Postgres(), Proxy()
    for event in events[:replies_after]:
        postgres.read(event)
        proxy.client(event)
    for reply in postgres.out:
        proxy.server(reply)
    seen = len(postgres.out)
    for event in events[replies_after:]:
        postgres.read(event)
        proxy.client(event)
    for reply in postgres.out[seen:]:
        proxy.server(reply)
    return proxy


def test_libpq_extended_protocol_copy():
    """PQexecParams: Parse, Bind, Execute and Sync together, then the data, CopyDone
    and a Sync of its own (the first Sync Postgres reads inside the COPY)."""
    ends = RequestEnds()
    ends.add(SYNC)
    began = ends.copy_began()
    assert began == (0, 1, 0, 0, True, True)
    assert ends.count == 0
    ends.add(SYNC)  # after the CopyDone
    assert ends.ready(1)
    for at in range(5):
        proxy = _through([E_COPY, S, C, S, Q], at)
        assert (proxy.ends.count, proxy.copy_in, proxy.unsynced) == (0, False, False), at


def test_a_query_copy_with_syncs_spliced_into_its_data():
    ends = RequestEnds()
    ends.add(QUERY)
    ends.add(SYNC, 2)
    ends.copy_ended_ahead(False)
    ends.add(SYNC)
    assert ends.copy_began() == (1, 2, 0, 0, False, False)  # the last Sync follows the CopyDone
    assert ends.kinds() == [QUERY, SYNC]
    assert not ends.ready(1) and ends.ready(1)


def test_a_copy_done_sent_before_its_copy_began():
    # of a Query: it ends the COPY the Query began
    ends = RequestEnds()
    ends.add(QUERY)
    ends.copy_ended_ahead(False)
    assert ends.copy_began() == (1, 0, 0, 0, False, False)
    assert ends.ready(1) and repr(ends) == "RequestEnds([])"
    # of an Execute whose Sync came after it
    ends.copy_ended_ahead(True)
    ends.add(SYNC)
    assert ends.kind == -1  # not one run of one kind: the fast paths cannot go on from it
    assert ends.copy_began() == (0, 0, 0, 0, False, False)
    assert ends.kind == SYNC and ends.ready(1)
    # of a request that began no COPY: Postgres ignored it, and so does the record
    ends.add(QUERY)
    ends.copy_ended_ahead(False)
    ends.add(QUERY)
    assert not ends.ready(1)
    assert ends.copy_began() == (1, 0, 0, 0, True, False)
    # with nothing that may begin a COPY in flight, a stray one is not kept
    ends = RequestEnds()
    ends.copy_ended_ahead(False)
    assert repr(ends) == "RequestEnds([])"


def test_a_query_sent_behind_a_copy_is_read_after_it():
    """A Query the client sent behind the COPY's start, before its CopyDone: Postgres
    reads it once an error ended the COPY (a refused CopyData), or inside the COPY,
    and then closes (08P01). Either way the messages after it are not read inside
    the COPY: the session is not in COPY IN (a model statement behind it waits for
    its turn as usual; it went on as sent, and Postgres ran mlproxy's statement
    without the client's privilege check: the fuzzer's model_psycopg_copy seed)."""
    ends = RequestEnds()
    ends.add(QUERY, 2)
    ends.copy_ended_ahead(False)
    assert ends.copy_began() == (1, 0, 0, 0, False, False)
    assert ends.count == 2 and not ends.ready(1) and ends.ready(1)
    assert repr(ends) == "RequestEnds([])"


def test_more_ready_for_query_than_requests_answer_nothing():
    ends = RequestEnds()
    assert not ends.ready(1)
    ends.add(QUERY, 2)
    assert ends.ready(5) and ends.count == 0
