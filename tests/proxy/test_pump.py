"""The relay pump (proxy/pump.py, proxy/_relay_pump.c) on real socket pairs.

Each test lends one or more "sessions" made of two socket pairs: the test plays the
client and the server on the far ends and, where the pump hands a session back, the
session's Python side (forwarding the rest and accounting for it with
Session._account, the framed path's own bookkeeping). Through the proxy the pump is
exercised by every driver test; these pin down its contract piece by piece.
"""

from __future__ import annotations

import hashlib
import select
import socket
import threading
import time
from types import MethodType, SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy import protocol as p
from proxy import pump
from proxy.framing import Framer
from proxy import request_ends
from proxy.request_ends import QUERY, RequestEnds
from proxy.session import Session
from proxy.wire_scan import CLIENT_LIMITS

from tests.proxy.test_wire_scan import backend_message, frontend_message

pytestmark = pytest.mark.skipif(
    not pump.AVAILABLE,
    reason="_mlproxy_pump is not built (test_wire_scan fails where it should have been)")

TRIGGERS = (b"predict_x", b"model")
Q1 = p.message(b"Q", b"select 1\x00")
Z_IDLE, Z_TX = p.message(b"Z", b"I"), p.message(b"Z", b"T")
SYNC = p.message(b"S")


class Lent:
    """One session lent to a pump: `client`/`server` are the test's ends."""

    def __init__(self, native, key: int, *, triggers=TRIGGERS, pending: int = 0,
                 copy_in: bool = False, names: tuple[bytes, ...] = (), kind: int = QUERY) -> None:
        self.native, self.key, self.names = native, key, names
        self.client, self._client_proxy = socket.socketpair()
        self._server_proxy, self.server = socket.socketpair()
        for sock in (self._client_proxy, self._server_proxy):
            sock.setblocking(False)
        self.triggers = triggers
        self.lend(pending, copy_in, kind)

    def lend(self, pending: int, copy_in: bool, kind: int = QUERY) -> None:
        """`kind`: that of the `pending` requests (request_ends.QUERY or SYNC)."""
        self.native.lend(self.key, self._client_proxy.fileno(), self._server_proxy.fileno(),
                         CLIENT_LIMITS, self.triggers, pending, kind if pending else 0, copy_in,
                         self.names)

    def forward_to_server(self, data: bytes) -> None:
        """What the session's framed path does with client data handed back."""
        self._server_proxy.setblocking(True)
        self._server_proxy.sendall(data)
        self._server_proxy.setblocking(False)

    def close(self) -> None:
        for sock in (self.client, self.server, self._client_proxy, self._server_proxy):
            sock.close()


@pytest.fixture
def native():
    from _mlproxy_pump import Pump

    made = Pump()
    yield made
    made.close()


def records(native, timeout: float = 5.0) -> list[pump.Record]:
    """The next handed-back records (waits for at least one)."""
    ready, _, _ = select.select([native.fileno()], [], [], timeout)
    assert ready, "no session came back"
    return [pump.Record(*r) for r in native.take()]


def recv_exactly(sock: socket.socket, count: int, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    out = bytearray()
    while len(out) < count:
        chunk = sock.recv(count - len(out))
        assert chunk, f"end of stream after {len(out)} of {count} bytes"
        out += chunk
    return bytes(out)


def nothing_more(sock: socket.socket, wait: float = 0.2) -> bool:
    ready, _, _ = select.select([sock], [], [], wait)
    return not ready


def test_relays_both_ways_and_keeps_the_bookkeeping(native):
    s = Lent(native, 1)
    s.client.sendall(Q1)
    assert recv_exactly(s.server, len(Q1)) == Q1
    s.server.sendall(p.message(b"C", b"SELECT 1\x00") + Z_TX)
    assert recv_exactly(s.client, 14 + 6) == p.message(b"C", b"SELECT 1\x00") + Z_TX
    back = pump.Record(*native.reclaim(1))
    assert back.reason == pump.RECLAIMED
    assert (back.pending, back.ready_seen, bytes([back.txstatus])) == (0, 1, b"T")
    assert (back.bytes_client, back.bytes_server) == (len(Q1), 20)
    assert native.reclaim(1) is None, "a session comes back once"
    assert native.lent() == 0
    s.close()


def test_a_trigger_hands_back_from_the_message_boundary(native):
    s = Lent(native, 2)
    call = p.message(b"Q", b"SELECT PREDICT_X(a) FROM t\x00")
    s.client.sendall(Q1 + call + Q1)
    assert recv_exactly(s.server, len(Q1)) == Q1
    (back,) = records(native)
    assert (back.key, back.reason, back.data) == (2, pump.CLIENT_DATA, call + Q1)
    assert back.pending == 1
    assert nothing_more(s.server)
    s.close()


def test_extended_messages_before_their_sync_come_back(native):
    s = Lent(native, 3)
    synced = b"".join(p.message(t, b"x\x00") for t in (b"P", b"B", b"E")) + p.message(b"S")
    open_ = p.message(b"P", b"s\x00select 2\x00\x00\x00") + p.message(b"H")
    s.client.sendall(synced + open_)
    assert recv_exactly(s.server, len(synced)) == synced
    (back,) = records(native)
    assert (back.reason, back.data, back.pending) == (pump.CLIENT_DATA, open_, 1)
    s.close()


def test_a_parked_statement_hands_back_from_its_pipeline_start(native):
    """A message naming one of the session's parked statements comes back with the
    messages of its pipeline before it (they went nowhere): the session wakes its
    reply rewrite with whole requests in flight only."""
    s = Lent(native, 30, names=(b"model_stmt",))
    plain = (p.message(b"B", b"\x00plain\x00\x00\x00\x00\x00\x00\x00") + p.message(b"E", b"\x00\x00\x00\x00\x00")
             + p.message(b"S"))
    call = (p.message(b"P", b"\x00select 1\x00\x00\x00")
            + p.message(b"B", b"\x00model_stmt\x00\x00\x00\x00\x00\x00\x00") + p.message(b"S"))
    s.client.sendall(plain + plain + call + plain)
    assert recv_exactly(s.server, 2 * len(plain)) == plain + plain
    (back,) = records(native)
    assert (back.reason, back.data, back.pending) == (pump.CLIENT_DATA, call + plain, 2)
    assert nothing_more(s.server)
    s.close()
    # a Query names the unnamed statement (it drops it), Close a named one
    for key, names, message in ((31, (b"",), Q1), (32, (b"m",), p.message(b"C", b"Sm\x00"))):
        s = Lent(native, key, names=names)
        s.client.sendall(message + p.message(b"S"))
        (back,) = records(native)
        assert (back.reason, back.data, back.pending) == (pump.CLIENT_DATA, message + p.message(b"S"), 0)
        s.close()


@pytest.mark.parametrize("kind", [b"E", b"G"])
def test_errors_and_copy_in_come_back_for_the_framed_path(native, kind):
    s = Lent(native, 4, pending=1)
    rows = p.message(b"T", b"\x00\x00") + p.message(b"D", b"\x00\x00")
    s.server.sendall(rows + p.message(kind, b"SERROR\x00\x00") + Z_IDLE)
    assert recv_exactly(s.client, len(rows)) == rows
    (back,) = records(native)
    assert back.reason == pump.SERVER_DATA
    assert back.data == p.message(kind, b"SERROR\x00\x00") + Z_IDLE
    assert (back.pending, back.ready_seen) == (1, 0)
    s.close()


@pytest.mark.parametrize("tail", [b"Z\x00\x00", b"Z\x00\x00\x00\x05", b"Z\x00\x00\x00\x07I"])
def test_a_cut_or_odd_ready_for_query_comes_back(native, tail):
    s = Lent(native, 5, pending=1)
    s.server.sendall(Z_IDLE + tail)
    assert recv_exactly(s.client, len(Z_IDLE)) == Z_IDLE
    (back,) = records(native)
    assert (back.reason, back.data, back.pending) == (pump.SERVER_DATA, tail, 0)
    s.close()


def test_terminate_and_overlong_messages_come_back(native):
    s = Lent(native, 6)
    s.client.sendall(p.message(b"X"))
    (back,) = records(native)
    assert (back.reason, back.data) == (pump.CLIENT_DATA, p.message(b"X"))
    for bad in (p.message(b"S", bytes(20_000)),  # beyond Sync's length limit
                p.message(b"z")):  # no frontend message has this type
        s.lend(0, False)
        s.client.sendall(Q1 + bad)
        assert recv_exactly(s.server, len(Q1)) == Q1
        (back,) = records(native)
        assert (back.reason, back.data) == (pump.CLIENT_DATA, bad)
    assert nothing_more(s.server)
    s.close()


def test_a_query_or_function_call_in_an_unsynced_pipeline_comes_back(native):
    # Postgres skips it, with no ReadyForQuery, when a message before it fails: the
    # session's own path waits for their replies (Session._query_turn)
    s = Lent(native, 8)
    parse = p.message(b"P", b"\x00SELECT 2\x00\x00\x00")
    call = p.message(b"F", b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01")
    for after in (Q1, call):
        s.client.sendall(Q1 + parse + after + SYNC)
        assert recv_exactly(s.server, len(Q1)) == Q1
        (back,) = records(native)
        assert (back.reason, back.data, back.pending) == (pump.CLIENT_DATA, parse + after + SYNC, 1)
        s.lend(0, False)
    assert nothing_more(s.server)
    s.close()


def test_big_messages_stream_through_without_coming_back(native):
    s = Lent(native, 7, pending=1)
    body = bytes(range(256)) * (6 << 12)  # a 6 MB DataRow, far beyond one read
    row = p.message(b"D", body)

    sender = threading.Thread(target=s.server.sendall, args=(row + Z_IDLE,))
    sender.start()
    got = recv_exactly(s.client, len(row) + len(Z_IDLE))
    sender.join()
    assert hashlib.sha256(got).digest() == hashlib.sha256(row + Z_IDLE).digest()
    back = pump.Record(*native.reclaim(7))
    assert (back.reason, back.pending, back.skip_server) == (pump.RECLAIMED, 0, 0)
    s.close()


def test_coming_back_mid_message_says_how_much_of_it_is_left(native):
    s = Lent(native, 8, pending=1)
    row = p.message(b"D", bytes(100_000))
    s.server.sendall(row[:40_000])
    assert recv_exactly(s.client, 40_000) == row[:40_000]
    back = pump.Record(*native.reclaim(8))
    assert back.skip_server == len(row) - 40_000
    assert back.skip_client == 0
    s.close()


def test_copy_in_data_streams_and_copy_done_ends_it(native):
    s = Lent(native, 9, pending=1, copy_in=True)
    data = p.message(b"d", b"1\t2\n" * 500_000)
    done = p.message(b"c")
    got = []
    reader = threading.Thread(target=lambda: got.append(recv_exactly(s.server, len(data) + len(done))))
    reader.start()
    s.client.sendall(data + done + SYNC)
    # the Sync after the COPY's end is answered, but with the COPY's Query in
    # flight the session keeps their order (request_ends.py): it comes back, with
    # what the pump had not written yet (Session._resume writes it first)
    (back,) = records(native)
    s.forward_to_server(back.to_server)
    reader.join()
    assert got == [data + done]
    assert (back.reason, back.data, back.copy_in, back.pending) == (pump.CLIENT_DATA, SYNC, 0, 1)
    framed = _framed(pending=1, copy_in=True)
    _account_all(framed, data + done)
    assert (back.copy_in, back.pending) == (framed.copy_in, framed.ends.count) == (False, 1)
    s.close()


def test_a_slow_reader_holds_the_writer_back(native):
    """Back-pressure: the pump keeps at most one read of unsent bytes, so a client
    that does not read stops the server's writes instead of filling memory."""
    s = Lent(native, 10, pending=1)
    for sock in (s.client, s.server):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
    block = p.message(b"d", bytes(1 << 16))
    total = 400
    sent = 0

    def produce() -> None:
        nonlocal sent
        for _ in range(total):
            s.server.sendall(block)
            sent += 1

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    time.sleep(1.0)
    stalled_at = sent
    assert stalled_at < total // 4, f"{stalled_at} of {total} 64 KB blocks went out unread"
    got = recv_exactly(s.client, total * len(block), timeout=30)
    producer.join(10)
    assert got == block * total
    s.close()


def test_end_of_stream_comes_back(native):
    a, b = Lent(native, 11), Lent(native, 12)
    a.server.close()
    b.client.close()
    back = {r.key: r.reason for r in records(native)}
    if len(back) < 2:
        back.update({r.key: r.reason for r in records(native)})
    assert back == {11: pump.SERVER_CLOSED, 12: pump.CLIENT_CLOSED}
    a.close()
    b.close()


def test_reclaim_takes_a_record_not_yet_collected(native):
    s = Lent(native, 13)
    call = p.message(b"Q", b"select model\x00")
    s.client.sendall(call)
    deadline = time.monotonic() + 5
    while native.lent() and time.monotonic() < deadline:
        time.sleep(0.01)
    back = pump.Record(*native.reclaim(13))
    assert (back.reason, back.data) == (pump.CLIENT_DATA, call)
    assert native.take() == []
    assert native.reclaim(13) is None
    s.close()


def test_counters_keep_a_session_handed_back_until_its_record_is_taken(native):
    """counters() (what /metrics and SHOW STATS add for the sessions the pump holds)
    still has a session the pump handed back until take() or reclaim() collects its
    record, which carries the same counts into the session: a reading in between
    neither misses them (a Prometheus counter going down) nor counts them twice."""
    s, t = Lent(native, 16), Lent(native, 17)
    reply = p.message(b"C", b"SELECT 1\x00") + Z_IDLE
    for lent in (s, t):
        lent.client.sendall(Q1)
        recv_exactly(lent.server, len(Q1))
        lent.server.sendall(reply)
        recv_exactly(lent.client, len(reply))
    counted = (len(Q1), len(reply), 1, 0)
    assert sorted(native.counters()) == [(16, *counted), (17, *counted)]
    for lent in (s, t):
        lent.client.sendall(p.message(b"Q", b"select model\x00"))
    deadline = time.monotonic() + 5
    while native.lent() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert native.lent() == 0
    # the statement with the trigger came back unsent: the counts are as they were
    assert sorted(native.counters()) == [(16, *counted), (17, *counted)]
    back = pump.Record(*native.reclaim(16))
    assert (back.bytes_client, back.bytes_server, back.readies, back.pending) == counted
    assert native.counters() == [(17, *counted)]
    (taken,) = [pump.Record(*r) for r in native.take()]
    assert (taken.key, taken.bytes_client, taken.bytes_server, taken.readies) == (17, *counted[:3])
    assert native.counters() == []
    s.close()
    t.close()


def test_the_reasons_are_the_extensions_own():
    import _mlproxy_pump

    for name in ("RECLAIMED", "CLIENT_DATA", "SERVER_DATA", "CLIENT_CLOSED", "SERVER_CLOSED", "FAILED"):
        assert getattr(pump, name) == getattr(_mlproxy_pump, name), name


def test_lend_refuses_bad_arguments_and_double_lending(native):
    s = Lent(native, 14)
    with pytest.raises(ValueError):
        s.lend(0, False)
    with pytest.raises(ValueError):
        native.lend(15, 0, 1, CLIENT_LIMITS[:100], (), 0, 0, False)
    with pytest.raises(TypeError):
        native.lend(15, 0, 1, CLIENT_LIMITS, ("model",), 0, 0, False)
    with pytest.raises(ValueError):  # Queries and Syncs in flight together: their order is the session's
        native.lend(15, 0, 1, CLIENT_LIMITS, (), 2, QUERY | request_ends.SYNC, False)
    with pytest.raises(OSError):
        native.lend(15, 10_000, 10_001, CLIENT_LIMITS, (), 0, 0, False)
    assert native.lent() == 1
    s.close()


def test_many_sessions_interleaved(native):
    sessions = [Lent(native, 100 + i) for i in range(60)]
    for round_ in range(20):
        for s in sessions:
            s.client.sendall(p.message(b"Q", b"select %d\x00" % round_))
        for s in sessions:
            query = p.message(b"Q", b"select %d\x00" % round_)
            assert recv_exactly(s.server, len(query)) == query
            s.server.sendall(Z_IDLE)
        for s in sessions:
            assert recv_exactly(s.client, len(Z_IDLE)) == Z_IDLE
    for s in sessions:
        back = pump.Record(*native.reclaim(s.key))
        assert (back.pending, back.bytes_server) == (0, 20 * len(Z_IDLE))
        s.close()


# -- the pump and the framed path together account like the framed path alone ----------------
def _framed(pending: int = 0, copy_in: bool = False, kind: int = QUERY) -> SimpleNamespace:
    ends = RequestEnds()
    ends.reset(kind, pending)
    state = SimpleNamespace(ends=ends, unsynced=False, unsynced_kinds=[], copy_in=copy_in,
                            _terminating=False, txstatus=b"I", skipping_to_sync=False,
                            _authenticated=True, _answered_since_wake=0, readies=0)
    state._copy_ended = MethodType(Session._copy_ended, state)
    state._execute_unsynced = MethodType(Session._execute_unsynced, state)
    return state


def _account_all(state: SimpleNamespace, data: bytes) -> None:
    for item in Framer(None).feed(data) or ():
        Session._account(state, item.type, item.raw[5] if len(item.raw) > 5 else 0)


def _sane(message: bytes) -> bool:
    return len(message) - 1 <= p.FRONTEND_LIMITS.get(message[0], 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(frontend_message().filter(_sane), min_size=1, max_size=5),
                min_size=1, max_size=5), st.booleans())
def test_client_streams_arrive_whole_and_accounted(native, pieces, copy_in):
    """Pieces of a frontend stream, each sent whole: the server gets every byte in
    order, and the pump's counts plus the framed path's for what came back equal
    the framed path's counts for the whole stream."""
    key = 1000 + test_client_streams_arrive_whole_and_accounted.calls
    test_client_streams_arrive_whole_and_accounted.calls += 1
    s = Lent(native, key, copy_in=copy_in)
    expected = _framed(copy_in=copy_in)
    ours = None  # the framed path's state while the session is back from the pump
    received = bytearray()
    sent = b""
    try:
        for piece in pieces:
            data = b"".join(piece)
            sent += data
            _account_all(expected, data)
            if ours is not None:  # not lent: the framed path handles the piece
                s.forward_to_server(data)
                _account_all(ours, data)
            else:
                s.client.sendall(data)
            while len(received) < len(sent):
                ready, _, _ = select.select([s.server, native.fileno()], [], [], 5)
                assert ready, (bytes(received), sent)
                if s.server in ready:
                    received += s.server.recv(1 << 16)
                if native.fileno() in ready:
                    for back in (pump.Record(*r) for r in native.take()):
                        assert back.reason == pump.CLIENT_DATA and back.key == key
                        ours = _framed(back.pending, bool(back.copy_in), back.ends_kind)
                        s.forward_to_server(back.data)
                        _account_all(ours, back.data)
            if ours is not None and not ours.unsynced and not ours._terminating and ours.ends.kind >= 0:
                # what Session._lend_if_quiet does
                s.lend(ours.ends.count, ours.copy_in, ours.ends.kind)
                ours = None
        assert bytes(received) == sent
        if ours is None:
            back = pump.Record(*native.reclaim(key))
            ours = _framed(back.pending, bool(back.copy_in), back.ends_kind)
        else:
            assert native.reclaim(key) is None
        assert (repr(ours.ends), ours.copy_in) == (repr(expected.ends), expected.copy_in)
    finally:
        s.close()


test_client_streams_arrive_whole_and_accounted.calls = 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(backend_message(), min_size=1, max_size=8), st.integers(0, 4))
def test_server_streams_count_ready_for_query_like_the_framed_path(native, messages, pending):
    key = 5000 + test_server_streams_count_ready_for_query_like_the_framed_path.calls
    test_server_streams_count_ready_for_query_like_the_framed_path.calls += 1
    s = Lent(native, key, pending=pending)
    data = b"".join(messages)
    try:
        s.server.sendall(data)
        received = bytearray()
        back = None
        while back is None and len(received) < len(data):
            ready, _, _ = select.select([s.client, native.fileno()], [], [], 5)
            assert ready
            if s.client in ready:
                received += s.client.recv(1 << 16)
            if native.fileno() in ready:
                (back,) = (pump.Record(*r) for r in native.take())
        if back is None:
            back = pump.Record(*native.reclaim(key))
        else:
            received += recv_exactly(s.client, len(data) - len(back.data) - len(received))
            assert nothing_more(s.client, 0.05)
        assert bytes(received) + back.data == data
        stop = next((i for i, m in enumerate(messages) if m[0] in b"EG"), len(messages))
        relayed = messages[:stop]
        assert back.data == b"".join(messages[stop:])
        readies = [m for m in relayed if m[0] == ord("Z")]
        assert back.ready_seen == bool(readies)
        if readies:
            assert back.txstatus == readies[-1][5]
        assert back.pending == max(0, pending - len(readies))
    finally:
        s.close()


test_server_streams_count_ready_for_query_like_the_framed_path.calls = 0
