"""The validated decoders of frontend messages, without sockets: they accept what
Postgres accepts, refuse the rest with Postgres' 08P01 words, and nothing but that
error ever comes out of them (nor out of the framer, the tracker, or the
interception gate) whatever the bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from proxy import protocol as p
from proxy.framing import ALL, Frame, Framer, ProtocolViolation
from proxy.inference.tracker import ResponseTracker, result_formats

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def bind_body(portal=b"", stmt=b"s1", formats=(), values=(), results=()) -> bytes:
    body = portal + b"\x00" + stmt + b"\x00" + struct.pack(f"!H{len(formats)}h", len(formats), *formats)
    body += struct.pack("!H", len(values))
    for value in values:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    return body + struct.pack(f"!H{len(results)}h", len(results), *results)


def refused(decoder, body, **kw) -> str:
    with pytest.raises(p.MalformedMessage) as info:
        decoder(body, **kw)
    assert info.value.sqlstate == "08P01" and info.value.severity == "ERROR"
    return info.value.message


def test_valid_messages_decode():
    assert p.decode_query(b"select 1\x00") == b"select 1"
    parsed = p.decode_parse(b"s1\x00select $1\x00\x00\x01\x00\x00\x00\x17")
    assert (parsed.name, parsed.query, parsed.types, parsed.tail) == (b"s1", b"select $1", (23,),
                                                                      b"\x00\x01\x00\x00\x00\x17")
    bind = p.decode_bind(bind_body(b"p", b"s1", (1,), (b"ab", None), (0, 1)))
    assert (bind.portal, bind.statement, bind.values, bind.result_formats) == (b"p", b"s1", (b"ab", None), (0, 1))
    assert bind.formats == [1, 1]
    assert p.decode_target(b"Ss1\x00") == (b"S", b"s1")
    assert p.decode_execute(b"p\x00\x00\x00\x00\x05") == (b"p", 5)
    start, codes, end = result_formats(bind_body(results=(1, 0, 1)))
    assert codes == [1, 0, 1] and end == len(bind_body(results=(1, 0, 1)))


def test_refusals_have_postgres_words():
    assert refused(p.decode_query, b"show model pm") == "invalid string in message"
    assert refused(p.decode_query, b"select 1\x00x") == "invalid message format"
    assert refused(p.decode_parse, b"set search_path = public") == "invalid string in message"
    assert refused(p.decode_parse, b"\x00select 1\x00\x00\x02\x00\x00\x00\x17") == "insufficient data left in message"
    assert refused(p.decode_bind, b"\x00s1\x00\x00\x00\x00\x00\x7f\xff") == "insufficient data left in message"
    assert refused(p.decode_bind, b"\x00s1\x00\x00\x00\x00\x05", statement_params=1) == (
        'bind message supplies 5 parameters, but prepared statement "s1" requires 1')
    assert refused(p.decode_bind, bind_body(formats=(0, 1), values=(b"x",))) == (
        "bind message has 2 parameter formats but 1 parameters")
    negative = b"\x00s1\x00\x00\x00\x00\x01" + struct.pack("!i", -2)
    assert refused(p.decode_bind, negative) == "insufficient data left in message"
    assert refused(p.decode_target, b"") == "no data left in message"
    assert refused(p.decode_target, b"Ss1") == "invalid string in message"
    with pytest.raises(p.MalformedMessage, match="invalid DESCRIBE message subtype 88"):
        p.check_frontend(p.F_DESCRIBE, b"Xs1\x00")
    with pytest.raises(p.MalformedMessage, match="invalid CLOSE message subtype 81"):
        p.check_frontend(p.F_CLOSE, b"Qs1\x00")
    with pytest.raises(p.MalformedMessage, match="invalid message format"):
        p.check_frontend(p.F_SYNC, b"x")


def test_counts_are_unsigned_as_postgres_reads_them():
    """0x8000 parameter types is 32768 of them (too few bytes), not a negative count."""
    assert refused(p.decode_parse, b"\x00select 1\x00\x80\x00") == "insufficient data left in message"


@PROPERTY
@given(st.sampled_from(sorted(p.FRONTEND_TYPES)), st.binary(max_size=80))
def test_arbitrary_bodies_only_raise_the_protocol_error(msg_type, body):
    try:
        p.check_frontend(msg_type, body)
    except p.MalformedMessage as err:
        assert err.sqlstate == "08P01"


@PROPERTY
@given(st.binary(max_size=60), st.integers(0, 70))
def test_mutated_valid_binds_only_raise_the_protocol_error(extra, cut):
    body = (bind_body(b"p", b"s1", (1,), (b"ab", None), (0, 1)) + extra)[:cut]
    try:
        decoded = p.decode_bind(body)
    except p.MalformedMessage:
        return
    assert decoded.result_section <= len(body)


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from(b"PBDECSQHFXdcf"), st.binary(max_size=24)), max_size=8))
def test_tracker_never_raises_on_client_messages(messages):
    """Whatever the client sends, the tracker notes it (a message Postgres refuses
    goes on as sent) and every message that gets a reply expects one (a Flush with a
    body gets Postgres' error)."""
    tracker = ResponseTracker()
    for msg_type, body in messages:
        raw = p.message(bytes((msg_type,)), body)
        assert tracker.client_message(msg_type, raw) == raw
        tracker.interceptor_for(raw)
    assert len(tracker.queue) == sum(1 for t, body in messages if t in b"PBDECSQF" or (t == 0x48 and body))


@PROPERTY
@given(st.binary(max_size=200), st.lists(st.integers(1, 200), max_size=5))
@example(data=b"B\x01\x00\x00\x00", cuts=[1])
def test_framer_violation_carries_what_came_before(data, cuts):
    """A violation hands back the whole messages in front of the bad header, and the
    bytes from it on: together, all that was fed in this chunk."""
    framer = Framer(ALL, limits=p.FRONTEND_LIMITS)
    pos = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        chunk = data[pos:cut]
        if not chunk:
            continue
        pos = cut
        try:
            items = framer.feed(chunk) or []
        except ProtocolViolation as err:
            before = b"".join(bytes(i.raw) if type(i) is Frame else bytes(i) for i in err.before)
            assert err.rest and err.sqlstate == "08P01"
            assert chunk.endswith(err.rest) or err.rest.endswith(chunk)
            assert (before + err.rest).endswith(chunk)
            return
        for item in items:
            # whole messages as Frames; one longer than the framer assembles (a Bind
            # of 16 MiB announced by b"B\x01\x00\x00\x00") streams through as bytes
            assert type(item) is Frame or framer.oversized_frames, (item, framer.oversized_frames)


def test_framer_violation_after_valid_messages():
    good = p.message(b"Q", b"select 1\x00")
    with pytest.raises(ProtocolViolation) as info:
        Framer(ALL, limits=p.FRONTEND_LIMITS).feed(good + b"Y\x00\x00\x00\x04")
    assert [bytes(f.raw) for f in info.value.before] == [good]
    assert info.value.rest == b"Y\x00\x00\x00\x04" and info.value.message == "invalid frontend message type 89"
    assert not info.value.silent
    with pytest.raises(ProtocolViolation) as info:  # the type byte alone is judged, as Postgres does
        Framer(ALL, limits=p.FRONTEND_LIMITS).feed(good + b"\x01")
    assert info.value.rest == b"\x01"
    with pytest.raises(ProtocolViolation) as info:
        Framer(ALL, limits=p.FRONTEND_LIMITS).feed(good + b"S\x00\x00\x00\x03")
    assert info.value.silent  # Postgres only logs a bad length


@PROPERTY
@given(st.sampled_from(b"QP"), st.binary(max_size=40))
def test_statement_text_only_raises_the_protocol_error(msg_type, body):
    """What the interception gate reads: a Query/Parse Postgres would refuse is
    MalformedMessage (relayed as sent), never another exception."""
    try:
        p.statement_text(msg_type, p.message(bytes((msg_type,)), body))
    except p.MalformedMessage:
        pass


def test_a_query_postgres_refuses_as_it_reads_it_does_not_run():
    """protocol.query_runs: only a Query that reaches exec_simple_query drops the
    unnamed statement (a malformed one, or one not valid UTF-8, never gets there)."""
    assert p.query_runs(p.message(b"Q", b"select 1\x00"))
    assert p.query_runs(p.message(b"Q", b"\x00"))  # the empty query runs
    assert not p.query_runs(p.message(b"Q", b"select 1"))  # no NUL: invalid string
    assert not p.query_runs(p.message(b"Q", b"\x00select 1\x00"))  # bytes after: invalid format
    assert not p.query_runs(p.message(b"Q", b"select '\xc3('\x00"))  # 22021
