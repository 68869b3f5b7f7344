"""The relay's per-chunk fast path (proxy/wire_scan.py): the C and the Python
implementation agree on any input, and what they report equals the bookkeeping
the framed path does message by message (Session._account / _note_server)."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path
from types import MethodType, SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import protocol as p
from proxy import pump, wire_scan
from proxy.inference import rowscan
from proxy.framing import Framer
from proxy.request_ends import QUERY, SYNC, RequestEnds
from proxy.session import Session
from proxy.wire_scan import CLIENT_LIMITS, py_client_chunk, py_server_chunk

TRIGGERS = (b"model", b"predict_x", b"(")
# a parked reply rewrite's statement names (the frontend_message strategy uses s1, name)
NAMES = ((), (b"s1",), (b"name", b""), (b"",), (b"x", b"zz"))


def test_the_c_extensions_are_built_where_they_can_be():
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}): the Python implementation is expected")
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        pytest.skip("no Python headers (python3-dev): the Python implementation is expected")
    assert wire_scan.IMPLEMENTATION == "C", (
        "the _mlproxy_wire extension did not build: run `pip install .` again and read "
        "its output (setup.py builds it optionally)")
    assert rowscan.native is not None, (
        "the _mlproxy_rows extension (DataRow scan and parse) did not build: run `pip install "
        ".` again and read its output (setup.py builds it optionally)")
    assert pump.AVAILABLE, (
        "the _mlproxy_pump extension (the native relay) did not build: run `pip install .` "
        "again and read its output (setup.py builds it optionally)")


# -- streams ----------------------------------------------------------------------------
_words = st.sampled_from([b"SELECT 1", b"select MODEL", b"x Predict_X", b"f(1)", b"", b"\xff\x00z"])


@st.composite
def frontend_message(draw):
    kind = draw(st.sampled_from(b"QPBDECSFHdcfXp"))
    if kind in b"QP":
        body = b"".join(draw(st.lists(_words, max_size=3))) + b"\x00"
        if kind == ord("P"):
            body = b"s1\x00" + body + b"\x00\x00"
    elif kind in b"SHc":
        body = b""
    elif kind == ord("X"):
        body = b""
    elif kind in b"DC":
        body = draw(st.sampled_from([b"S", b"P"])) + b"name\x00"
    else:
        body = draw(st.binary(max_size=12))
    return p.message(bytes([kind]), body)


@st.composite
def backend_message(draw):
    kind = draw(st.sampled_from(b"TDCZNSAEGIn12"))
    if kind == ord("Z"):
        body = draw(st.sampled_from([b"I", b"T", b"E"]))
    else:
        body = draw(st.binary(max_size=12))
    return p.message(bytes([kind]), body)


def _chunk(messages: list[bytes], cut: int | None) -> bytes:
    data = b"".join(messages)
    return data if cut is None else data[:cut % (len(data) + 1)]


# -- C == Python --------------------------------------------------------------------------
@settings(max_examples=400)
@given(st.lists(frontend_message(), max_size=6), st.one_of(st.none(), st.integers(0, 400)),
       st.booleans())
def test_client_implementations_agree(messages, cut, copy_in):
    data = _chunk(messages, cut)
    for names in NAMES:
        assert wire_scan.client_chunk(data, CLIENT_LIMITS, TRIGGERS, copy_in, names) == \
            py_client_chunk(data, CLIENT_LIMITS, TRIGGERS, copy_in, names)
    assert wire_scan.client_chunk(data, CLIENT_LIMITS, TRIGGERS, copy_in) == \
        py_client_chunk(data, CLIENT_LIMITS, TRIGGERS, copy_in)


_name = st.sampled_from([b"", b"s1", b"s", b"s11", b"name", b"\xffq"])


@st.composite
def naming_message(draw):
    """A message that may name statements or portals, sometimes cut short."""
    kind = draw(st.sampled_from(b"PBDECQSH"))
    if kind == ord("P"):
        body = draw(_name) + b"\x00select 1\x00\x00\x00"
    elif kind == ord("B"):
        body = draw(_name) + b"\x00" + draw(_name) + b"\x00\x00\x00\x00\x00\x00\x00"
    elif kind in b"DC":
        body = draw(st.sampled_from([b"S", b"P"])) + draw(_name) + b"\x00"
    elif kind == ord("E"):
        body = draw(_name) + b"\x00\x00\x00\x00\x00"
    elif kind == ord("Q"):
        body = b"select 1\x00"
    else:
        body = b""
    if draw(st.booleans()) and body:  # a name without its terminator
        body = body[:draw(st.integers(0, len(body) - 1))].replace(b"\x00", b"")
    return p.message(bytes([kind]), body)


@settings(max_examples=400)
@given(st.lists(naming_message(), min_size=1, max_size=5), st.sampled_from(NAMES[1:]))
def test_a_chunk_naming_a_parked_statement_goes_the_framed_way(messages, names):
    """C == Python, and the chunk is refused exactly when a message names one of
    `names` (or is cut where a name should end), as the framed path decides it."""
    data = b"".join(messages)
    verdict = wire_scan.client_chunk(data, CLIENT_LIMITS, (), False, names)
    assert verdict == py_client_chunk(data, CLIENT_LIMITS, (), False, names)
    unnamed = wire_scan.client_chunk(data, CLIENT_LIMITS, (), False)
    named = any(wire_scan.names_message(m[0], m, names) for m in messages)
    assert verdict == (None if named else unnamed)


def test_what_names_a_statement():
    names = (b"s1",)
    bind = p.message(b"B", b"\x00s1\x00\x00\x00\x00\x00\x00\x00")
    assert wire_scan.message_names(bind[0], bind) == [b"", b"s1"]
    assert wire_scan.names_message(bind[0], bind, names)
    assert not wire_scan.names_message(bind[0], bind, (b"s",))
    assert wire_scan.names_message(ord("B"), bind, (b"",))  # the unnamed portal
    close = p.message(b"C", b"Ss1\x00")
    assert wire_scan.message_names(close[0], close) == [b"s1"]
    assert wire_scan.message_names(ord("Q"), p.message(b"Q", b"select\x00")) == [b""]
    assert wire_scan.message_names(ord("S"), p.message(b"S")) == []
    assert wire_scan.message_names(ord("E"), p.message(b"E", b"p")) is None  # unterminated


@settings(max_examples=400)
@given(st.lists(backend_message(), max_size=6), st.one_of(st.none(), st.integers(0, 400)))
def test_server_implementations_agree(messages, cut):
    data = _chunk(messages, cut)
    assert wire_scan.server_chunk(data) == py_server_chunk(data)


@given(st.binary(max_size=64), st.booleans())
def test_garbage_is_never_a_fast_path_chunk_unless_it_frames(data, copy_in):
    for implementation in (wire_scan.client_chunk, py_client_chunk):
        verdict = implementation(data, CLIENT_LIMITS, TRIGGERS, copy_in)
        if verdict is not None:  # then the bytes frame as valid whole messages
            framer = Framer(None, limits=p.FRONTEND_LIMITS)
            framer.feed(data)
            assert framer.at_boundary
    assert wire_scan.server_chunk(data) == py_server_chunk(data)


# -- the fast path reports what the framed path would have done -------------------------------
def _bookkeeping(copy_in: bool, pending: int = 0):
    ends = RequestEnds()
    ends.reset(QUERY, pending)
    state = SimpleNamespace(ends=ends, unsynced=True, unsynced_kinds=[7], copy_in=copy_in,
                            _terminating=False, txstatus=b"I", readies=0,
                            _authenticated=True, skipping_to_sync=False,
                            _answered_since_wake=0)
    state._copy_ended = MethodType(Session._copy_ended, state)
    state._execute_unsynced = MethodType(Session._execute_unsynced, state)
    return state


def _fields(state) -> dict:
    """The stand-in's bookkeeping values (its bound methods left out)."""
    return {k: repr(v) if k == "ends" else v for k, v in vars(state).items() if not callable(v)}


@settings(max_examples=400)
@given(st.lists(frontend_message(), min_size=1, max_size=6), st.booleans())
def test_client_verdict_matches_message_by_message_accounting(messages, copy_in):
    data = b"".join(messages)
    verdict = wire_scan.client_chunk(data, CLIENT_LIMITS, TRIGGERS, copy_in)
    framed = _bookkeeping(copy_in)
    for item in Framer(None).feed(data):
        Session._account(framed, item.type, item.raw[5] if len(item.raw) > 5 else 0)
    if verdict is None:  # only for the reasons the contract names
        opened = _bookkeeping(copy_in)
        opened.unsynced, opened.unsynced_kinds = False, []
        for item in Framer(None).feed(data):
            Session._account(opened, item.type, item.raw[5] if len(item.raw) > 5 else 0)
        triggered = any(m[0] in b"QP" and any(t in m.lower() for t in TRIGGERS)
                        for m in messages)
        too_long = any(len(m) - 1 > p.FRONTEND_LIMITS[m[0]] for m in messages)
        copy_end_outside = sum(m[0] in b"cf" for m in messages) > copy_in  # (the first ends it)
        both_kinds = opened.ends.kind < 0  # Queries and Syncs: their order is the session's
        assert (triggered or too_long or opened._terminating or opened.unsynced or copy_end_outside
                or both_kinds or _takes_its_turn(messages, copy_in)), messages
        return
    fast = _bookkeeping(copy_in)
    if verdict & wire_scan.UNSYNCED_CLEARED:
        fast.unsynced, fast.unsynced_kinds = False, []
    if verdict & wire_scan.COPY_IN_CLEARED:
        fast.copy_in = False
    if verdict >> wire_scan.REQUEST_SHIFT:
        fast.ends.add(SYNC if verdict & wire_scan.SYNC_ENDS else QUERY, verdict >> wire_scan.REQUEST_SHIFT)
    assert _fields(fast) == _fields(framed)


def _takes_its_turn(messages: list[bytes], copy_in: bool) -> bool:
    """Is there a Query or FunctionCall after an extended-protocol message with no
    Sync or Query between (Session._query_turn: the session's own path)? (A Sync
    inside a COPY, which Postgres ignores, ends nothing.)"""
    open_ = False
    for m in messages:
        if m[0] in b"QF" and open_:
            return True
        if m[0] in b"cf":
            copy_in = False
        ends = m[0] == ord("Q") or (m[0] == ord("S") and not copy_in)
        open_ = m[0] in b"PBDEC" or (open_ and not ends)
    return False


@settings(max_examples=400)
@given(st.lists(backend_message(), min_size=1, max_size=6), st.integers(0, 3))
def test_server_verdict_matches_message_by_message_notes(messages, pending):
    data = b"".join(messages)
    verdict = wire_scan.server_chunk(data)
    if verdict is None:
        assert any(m[0] in b"EG" for m in messages)
        return
    ready = [m for m in messages if m[0] == ord("Z")]
    assert verdict >> wire_scan.READY_SHIFT == len(ready)
    assert bool(verdict & wire_scan.ENDS_READY) == (messages[-1][0] == ord("Z"))
    assert verdict & 0xFF == (ready[-1][5] if ready else 0)
    framed = _bookkeeping(False, pending)
    framed._log_server_error = lambda frame: None
    framed._ready = MethodType(Session._ready, framed)
    idle = False
    for m in messages:
        idle |= Session._note_server(framed, m[0], m)
    assert framed.ends.count == max(0, pending - len(ready))
    assert framed.readies == len(ready)  # the statements counted (proxy/observe/stats.py)
    assert idle == bool(pending and ready and pending <= len(ready))


def test_what_the_fast_path_leaves_to_the_framed_path():
    q = p.message(b"Q", b"SELECT 1\x00")
    assert wire_scan.client_chunk(q, CLIENT_LIMITS, TRIGGERS, False) == 1 << 3 | 1
    # A trigger, upper or lower case, anywhere in a Query or Parse.
    assert wire_scan.client_chunk(p.message(b"Q", b"SHOW MODEL m\x00"), CLIENT_LIMITS,
                                  TRIGGERS, False) is None
    # Extended messages whose Sync has not come yet.
    parse = p.message(b"P", b"\x00SELECT 2\x00\x00\x00")
    assert wire_scan.client_chunk(parse + p.message(b"H"), CLIENT_LIMITS, TRIGGERS, False) is None
    assert wire_scan.client_chunk(parse + p.message(b"S"), CLIENT_LIMITS, TRIGGERS, False) == 1 << 3 | 4 | 1
    # a Query or FunctionCall in an unsynced pipeline: Postgres skips it after an error
    # there, with no ReadyForQuery, so the session waits for the replies (Session._query_turn)
    call = p.message(b"F", b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01")
    for implementation in (wire_scan.client_chunk, py_client_chunk):
        assert implementation(parse + q, CLIENT_LIMITS, TRIGGERS, False) is None
        assert implementation(parse + call + p.message(b"S"), CLIENT_LIMITS, TRIGGERS, False) is None
        assert implementation(call + q, CLIENT_LIMITS, TRIGGERS, False) == 2 << 3 | 1
        assert implementation(parse + p.message(b"S") * 2, CLIENT_LIMITS, TRIGGERS, False) == 2 << 3 | 4 | 1
        # Syncs and Queries (or FunctionCalls) in one chunk: the session keeps their
        # order (a Sync Postgres reads inside a COPY gets no ReadyForQuery)
        assert implementation(parse + p.message(b"S") + call + q, CLIENT_LIMITS, TRIGGERS, False) is None
    # A Sync in COPY IN gets no ReadyForQuery; CopyDone ends COPY IN mid-chunk.
    copy = p.message(b"d", b"1\n") + p.message(b"S") + p.message(b"c") + p.message(b"S")
    assert wire_scan.client_chunk(copy, CLIENT_LIMITS, TRIGGERS, True) == 1 << 3 | 4 | 3
    # Cut messages, oversized lengths, unknown types, Terminate, empty chunks.
    assert wire_scan.client_chunk(q[:-1], CLIENT_LIMITS, TRIGGERS, False) is None
    assert wire_scan.client_chunk(b"S\x7f\xff\xff\xff", CLIENT_LIMITS, TRIGGERS, False) is None
    assert wire_scan.client_chunk(b"\x01\x00\x00\x00\x04", CLIENT_LIMITS, TRIGGERS, False) is None
    assert wire_scan.client_chunk(p.message(b"X"), CLIENT_LIMITS, TRIGGERS, False) is None
    assert wire_scan.client_chunk(b"", CLIENT_LIMITS, TRIGGERS, False) is None
    # Server: errors and COPY IN go the framed way; a bad ReadyForQuery too.
    assert wire_scan.server_chunk(p.ready_for_query(b"T")) == 1 << 9 | 0x100 | ord("T")
    assert wire_scan.server_chunk(p.ready_for_query(b"T") + p.notice_response("n")) == 1 << 9 | ord("T")
    assert wire_scan.server_chunk(p.message(b"E", b"x\x00")) is None
    assert wire_scan.server_chunk(p.message(b"Z", b"II")) is None
    assert wire_scan.server_chunk(b"Z\x00\x00\x00\x03") is None


@pytest.mark.skipif(wire_scan.IMPLEMENTATION != "C", reason="checks the C extension's arguments")
def test_bad_arguments_are_type_errors_not_crashes():
    with pytest.raises(TypeError):
        wire_scan.client_chunk(bytearray(b"Q"), CLIENT_LIMITS, TRIGGERS, False)
    with pytest.raises(TypeError):
        wire_scan.client_chunk(b"Q", CLIENT_LIMITS[:10], TRIGGERS, False)
    with pytest.raises(TypeError):
        wire_scan.client_chunk(b"Q", CLIENT_LIMITS, ("model",), False)
    with pytest.raises(TypeError):
        wire_scan.server_chunk("Z")
    with pytest.raises(TypeError):
        wire_scan.client_chunk(b"Q", CLIENT_LIMITS, TRIGGERS, False, ("s1",))
    with pytest.raises(TypeError):
        wire_scan.client_chunk(b"Q", CLIENT_LIMITS, TRIGGERS, False, [b"s1"])
