"""Unit and property tests of the sans-IO framer: no sockets involved."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from proxy import protocol as p
from proxy.framing import ALL, Frame, Framer, ProtocolViolation


def q(sql: str) -> bytes:
    return p.message(b"Q", p.cstr(sql))


def parse(name: str, sql: str) -> bytes:
    return p.message(b"P", p.cstr(name) + p.cstr(sql) + b"\x00\x00")


BIND = p.message(b"B", b"\x00\x00" + b"\x00\x00" + b"\x00\x00" + b"\x00\x00")
EXECUTE = p.message(b"E", b"\x00" + struct.pack("!i", 0))
SYNC = p.message(b"S")
FLUSH = p.message(b"H")
TERMINATE = p.message(b"X")


def copy_data(n: int) -> bytes:
    return p.message(b"d", bytes(range(256)) * (n // 256) + b"x" * (n % 256))


# A recorded client session: simple and extended queries, COPY data, terminate.
CLIENT_STREAM = [
    q("SELECT 1"),
    parse("", "SELECT $1::int"), BIND, EXECUTE, SYNC,
    parse("s1", "SELECT * FROM pgbench_accounts WHERE aid = $1"), FLUSH,
    q("COPY t FROM STDIN"), copy_data(70000), copy_data(3), p.message(b"c"),
    q("SELECT 'a;b' AS x; SELECT 2"),
    TERMINATE,
]
WATCH = frozenset((p.F_QUERY, p.F_PARSE, p.F_SYNC, p.F_TERMINATE))


def feed_all(framer: Framer, stream: bytes, cuts: list[int]) -> tuple[bytes, list[bytes]]:
    """Feed stream cut at `cuts`; return (all bytes out in order, raw of frames)."""
    out, frames = [], []
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(stream))), len(stream)]
    for a, b in zip(bounds, bounds[1:]):
        chunk = stream[a:b]
        items = framer.feed(chunk)
        if items is None:
            out.append(chunk)
            continue
        for item in items:
            if isinstance(item, Frame):
                frames.append(bytes(item.raw))
                out.append(bytes(item.raw))
            else:
                out.append(bytes(item))
    return b"".join(out), frames


def client_framer(wanted=WATCH, assemble_limit: int = 1 << 20) -> Framer:
    return Framer(wanted, limits=p.FRONTEND_LIMITS, assemble_limit=assemble_limit)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=sum(map(len, CLIENT_STREAM))), max_size=40))
def test_any_split_forwards_stream_unchanged_and_finds_frames(cuts):
    stream = b"".join(CLIENT_STREAM)
    framer = client_framer()
    out, frames = feed_all(framer, stream, cuts)
    assert out == stream
    assert frames == [m for m in CLIENT_STREAM if m[0] in WATCH]
    assert framer.at_boundary


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=sum(map(len, CLIENT_STREAM))), max_size=40))
def test_all_mode_assembles_every_message(cuts):
    stream = b"".join(CLIENT_STREAM)
    out, frames = feed_all(client_framer(ALL), stream, cuts)
    assert out == stream
    assert frames == CLIENT_STREAM


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=200000), max_size=20))
def test_oversized_wanted_messages_stream_through(cuts):
    big = q("SELECT '" + "x" * 150000 + "'")
    stream = q("SELECT 1") + big + SYNC
    framer = client_framer(assemble_limit=100000)
    out, frames = feed_all(framer, stream, cuts)
    assert out == stream
    assert frames == [q("SELECT 1"), SYNC]
    assert framer.oversized_frames == 1


def test_whole_chunk_of_unwatched_messages_is_fast_path():
    framer = client_framer()
    assert framer.feed(BIND + EXECUTE) is None
    assert framer.feed(copy_data(100)[:50]) is None  # partial, still pass-through
    assert not framer.at_boundary


def test_backend_stream_ready_for_query():
    rows = p.row_description([("x", 23)]) + p.data_row(["1"]) + p.command_complete("SELECT 1")
    stream = rows + p.ready_for_query(b"T")
    framer = Framer(frozenset((p.B_READY_FOR_QUERY,)))
    items = framer.feed(stream)
    assert [type(i) for i in items] == [memoryview, Frame]
    assert bytes(items[0]) == rows and items[1].raw == p.ready_for_query(b"T")


@pytest.mark.parametrize("bad, why", [
    (b"Q" + struct.pack("!I", 0x80000000) + b"SELECT", "invalid message length"),   # 2 GB
    (b"Q" + struct.pack("!I", 3), "invalid message length"),                          # < 4
    (b"S" + struct.pack("!I", 20000) + b"\x00" * 20, "invalid message length"),      # small type too long
    (b"\x01" + struct.pack("!I", 4), "invalid frontend message type"),
    (b"GET / HTTP/1.1\r\n\r\n", "invalid frontend message type"),
])
def test_bad_frontend_input_is_a_protocol_violation(bad, why):
    with pytest.raises(ProtocolViolation) as info:
        client_framer().feed(bad)
    assert info.value.sqlstate == "08P01" and why in info.value.message


def test_bad_header_split_across_chunks_is_still_caught():
    framer = client_framer()
    assert framer.feed(b"Q\x7f") == []
    with pytest.raises(ProtocolViolation):
        framer.feed(b"\xff\xff\xff")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
def test_garbage_never_crashes_and_memory_is_bounded(data, cuts):
    framer = client_framer(ALL, assemble_limit=1000)
    try:
        out, _ = feed_all(framer, data, cuts)
    except ProtocolViolation:
        return
    assert out == data[:len(out)]
    assert len(framer._carry) <= 1000


ROWS = [p.data_row(["a" * n, None]) for n in (0, 3, 40, 500)] + [p.command_complete("SELECT 4")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, sum(map(len, ROWS))), max_size=12), st.integers(5, 600))
def test_taking_a_carried_row_back_keeps_the_stream_whole(cuts, limit):
    """The session's read-again of a DataRow cut by a read: each time the framer
    holds the start of one of at most `limit` bytes, it is taken back and put in
    front of the next chunk; the frames found are the messages, in order."""
    stream = b"".join(ROWS)
    framer = Framer(ALL)
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(stream))), len(stream)]
    frames = []
    for a, b in zip(bounds, bounds[1:]):
        chunk = stream[a:b]
        carried = framer.take_carry(p.B_DATA_ROW, limit)
        if carried is not None:
            assert framer.at_boundary and carried[:1] == b"D"
            chunk = carried + chunk
        frames += [bytes(f.raw) for f in framer.feed(chunk) or () if isinstance(f, Frame)]
    assert frames == ROWS and framer.at_boundary


def test_take_carry_leaves_other_messages_alone():
    framer = Framer(ALL)
    framer.feed(ROWS[-1][:3])  # a CommandComplete's first bytes
    assert framer.take_carry(p.B_DATA_ROW, 1 << 16) is None and not framer.at_boundary
    framer = Framer(ALL)
    framer.feed(ROWS[3][:100])  # a 500-byte row, limit 100
    assert framer.take_carry(p.B_DATA_ROW, 100) is None
    assert framer.take_carry(p.B_DATA_ROW, 1000) == ROWS[3][:100] and framer.at_boundary
    assert Framer(ALL).take_carry(p.B_DATA_ROW, 100) is None  # nothing held


def test_password_message_is_a_lone_type_byte_violation_once_authenticated():
    """Postgres' main loop refuses 'p' by its type byte alone, before any length."""
    framer = client_framer()
    assert framer.feed(b"p") == []  # during authentication it is a valid start
    framer = client_framer()
    framer.set_limits(p.SESSION_LIMITS)
    with pytest.raises(ProtocolViolation) as info:
        framer.feed(p.message(b"S") + b"p")
    assert "invalid frontend message type 112" in info.value.message
    assert bytes(b"".join(bytes(i.raw) if isinstance(i, Frame) else bytes(i) for i in info.value.before)) \
        == p.message(b"S") and info.value.rest == b"p"


def test_held_type_names_only_a_held_message_start():
    framer = client_framer()
    assert framer.held_type is None
    framer.feed(b"B\x00")  # a Bind's first bytes: held until its length comes
    assert framer.held_type == p.F_BIND and p.F_BIND not in p.COPY_IN_TYPES
    assert framer.take_carry(p.F_BIND, 1 << 20) == b"B\x00" and framer.held_type is None
    framer.feed(copy_data(100)[:50])  # passed through as it comes: nothing held
    assert framer.held_type is None and not framer.at_boundary
