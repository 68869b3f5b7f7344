"""Bad input on the wire: an ErrorResponse with SQLSTATE 08P01 where the protocol
allows, that connection closed, and nothing else affected."""

from __future__ import annotations

import os
import socket
import struct
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from proxy import protocol as p
from proxy.startup import (CancelRequest, GSSENCRequest, SSLRequest, StartupMessage,
                           parse_first_packet)
from proxy.errors import PgError
from proxy.framing import ProtocolViolation
from tests.support.wire import RawConn, error_fields, startup_packet


# -- the first packet, without sockets ---------------------------------------------
def test_first_packets_parse():
    assert isinstance(parse_first_packet(struct.pack("!II", 8, p.SSL_REQUEST_CODE))[0], SSLRequest)
    assert isinstance(parse_first_packet(struct.pack("!II", 8, p.GSSENC_REQUEST_CODE))[0], GSSENCRequest)
    cancel = struct.pack("!III", 16, p.CANCEL_REQUEST_CODE, 42) + b"\x01\x02\x03\x04"
    assert isinstance(parse_first_packet(cancel)[0], CancelRequest)
    long_key = struct.pack("!III", 44, p.CANCEL_REQUEST_CODE, 42) + b"k" * 32  # protocol 3.2
    assert parse_first_packet(long_key)[0].raw == long_key
    packet, used = parse_first_packet(startup_packet("alice", "db1", application_name=""))
    assert isinstance(packet, StartupMessage) and packet.version == (3, 0)
    assert packet.parameters == {"user": "alice", "database": "db1", "application_name": ""}
    v32 = startup_packet(version=(3 << 16) | 2)
    assert parse_first_packet(v32)[0].version == (3, 2)
    assert parse_first_packet(v32[:7]) == (None, 0)


@pytest.mark.parametrize("packet, message", [
    (b"GET / HTTP/1.1\r\n\r\n", "invalid length of startup packet"),
    (struct.pack("!I", 3) + b"xxxx", "invalid length of startup packet"),
    (struct.pack("!I", 0x7FFFFFFF), "invalid length of startup packet"),
    (struct.pack("!II", 13, p.PROTOCOL_3_0) + b"user\x00", "invalid startup packet layout"),
    (struct.pack("!II", 17, p.PROTOCOL_3_0) + b"user\x00bob\x00\x00\x00", "expected terminator as last byte"),
])
def test_bad_first_packets(packet, message):
    with pytest.raises(ProtocolViolation) as info:
        parse_first_packet(packet)
    assert message in info.value.message and info.value.sqlstate == "08P01"


def test_other_protocol_versions_are_not_supported():
    """Postgres' 0A000 (feature not supported), not a protocol violation."""
    with pytest.raises(PgError) as info:
        parse_first_packet(struct.pack("!II", 16, 2 << 16) + b"user\x00bob\x00")
    assert info.value.message.startswith("unsupported frontend protocol 2.0") and info.value.sqlstate == "0A000"
    assert info.value.severity == "FATAL"


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64))
def test_first_packet_parser_only_raises_protocol_violations(data):
    try:
        packet, used = parse_first_packet(data)
    except PgError as err:
        assert err.sqlstate in ("08P01", "0A000") and err.severity == "FATAL"
        return
    assert (packet is None and used == 0) or 8 <= used <= len(data)


# -- over the network ----------------------------------------------------------------
def expect_fatal_08P01(conn: RawConn, text: str) -> None:
    msg = conn.read_message()
    assert msg is not None and msg[0] == b"E", msg
    fields = error_fields(msg)
    assert fields["C"] == "08P01" and fields["S"] == "FATAL" and text in fields["M"], fields
    assert conn.is_closed()


@pytest.mark.parametrize("packet", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    struct.pack("!I", 0x7FFFFFF0) + b"\x00\x03\x00\x00",
    struct.pack("!II", 4, p.PROTOCOL_3_0),
    struct.pack("!II", 12, p.CANCEL_REQUEST_CODE) + b"\x00\x00\x00\x01",
])
def test_bad_startup_length_closes_without_a_word_as_postgres_does(proxy, upstream, packet):
    """Postgres only logs a startup packet of a bad length (COMMERROR) and closes."""
    from .test_startup_conformance import same_as_postgres

    replies, closed = same_as_postgres(proxy, upstream, [packet])
    assert replies == [] and closed


def test_bad_startup_layout_gets_error_and_close(proxy):
    conn = RawConn.to_proxy(proxy)
    conn.send(struct.pack("!II", 17, p.PROTOCOL_3_0) + b"user\x00bob\x00\x00\x00")
    expect_fatal_08P01(conn, "expected terminator as last byte")


def test_unsupported_version_gets_0A000_and_close(proxy):
    conn = RawConn.to_proxy(proxy)
    conn.send(startup_packet(version=2 << 16))
    fields = error_fields(conn.read_message())
    assert (fields["S"], fields["C"]) == ("FATAL", "0A000") and "unsupported frontend protocol 2.0" in fields["M"]
    assert conn.is_closed()


@pytest.mark.parametrize("data, text", [
    (b"\x00\x00\x00\x00\x00\x00\x00", "invalid frontend message type 0"),
    (b"Y" + struct.pack("!I", 4), "invalid frontend message type 89"),
    (os.urandom(0) + b"\xfe\xed\xbe\xef" * 8, "invalid frontend message type 254"),
    # Postgres only logs a bad length (COMMERROR) and closes without a word
    (b"Q" + struct.pack("!I", 0x80000000) + b"SELECT 1", None),
    (b"S" + struct.pack("!I", 3), None),
])
def test_bad_message_after_login_closes_as_postgres_does(proxy, upstream, data, text):
    from .test_malformed import same_as_postgres

    replies = same_as_postgres(RawConn.to_proxy(proxy), RawConn.to_upstream(upstream), [data])
    assert replies == ([] if text is None else [(b"E", "FATAL", "08P01", text)])


def test_message_cut_midway_then_disconnect_leaves_proxy_serving(proxy):
    conn = RawConn.to_proxy(proxy)
    conn.login()
    conn.send(p.message(b"Q", p.cstr("SELECT 1"))[:7])
    conn.close()
    other = RawConn.to_proxy(proxy)
    other.login()
    other.send(p.message(b"Q", p.cstr("SELECT 'alive'")))
    assert any(m[0] == b"D" and b"alive" in m[1] for m in other.read_until_ready())


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _garbage_session(args) -> None:
    host, port, seed = args
    try:
        with socket.create_connection((host, port), timeout=10) as sock:
            if seed % 3 == 0:
                sock.sendall(startup_packet())
                sock.recv(4096)
                # a Query claiming ~1 GB, then a trickle: must not be buffered whole
                sock.sendall(b"Q" + struct.pack("!I", 0x3FFFFFF0) + b"x" * 65536)
            elif seed % 3 == 1:
                sock.sendall(os.urandom(200))
            else:
                sock.sendall(startup_packet()[:9])
            sock.settimeout(0.5)
            try:
                sock.recv(4096)
            except OSError:
                pass
    except OSError:
        pass


def test_many_bad_clients_do_not_hurt_good_ones_or_memory(proxy):
    good = RawConn.to_proxy(proxy)
    good.login()
    before = _rss_kb(proxy.proc.pid)
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(_garbage_session, [(proxy.host, proxy.port, i) for i in range(300)]))
    good.send(p.message(b"Q", p.cstr("SELECT 'still here'")))
    assert any(m[0] == b"D" and b"still here" in m[1] for m in good.read_until_ready())
    assert proxy.alive()
    grown_mb = (_rss_kb(proxy.proc.pid) - before) / 1024
    assert grown_mb < 64, f"proxy RSS grew {grown_mb:.1f} MB"
