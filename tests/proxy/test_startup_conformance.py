"""The first packets as Postgres answers them (compared with the embedded Postgres
itself): plaintext after an encryption request, encryption requests of another
length or asked twice, startup parameters that are not UTF-8; and --tls-required."""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import sys

import psycopg
import pytest

from proxy import protocol as p
from tests.support.wire import RawConn, startup_packet

from .test_lifecycle import GSSENC_REQUEST, SSL_REQUEST, cert  # noqa: F401 - the fixture
from .test_malformed import comparable


def answer(conn: RawConn, writes: list[bytes], wait_first: bool = False) -> tuple[list, bool]:
    """The single-byte answers to encryption requests, then the messages, per write;
    and whether the connection is closed at the end. `wait_first`: a write's first
    message may be slow to come (the proxy connects upstream meanwhile)."""
    replies: list = []
    for data in writes:
        try:
            conn.send(data)
        except (BrokenPipeError, ConnectionResetError):
            break
        code = struct.unpack_from("!I", data, 4)[0] if len(data) >= 8 else 0
        if code in (p.SSL_REQUEST_CODE, p.GSSENC_REQUEST_CODE):
            byte = conn.read_byte()
            if byte in (b"N", b"S"):
                replies.append(byte)
            else:  # not answered with a byte: a message
                conn.buf = byte + conn.buf
        first: list = []
        request = code in (p.SSL_REQUEST_CODE, p.GSSENC_REQUEST_CODE)
        if wait_first and not conn.buf and (not request or len(data) > struct.unpack_from("!I", data)[0]):
            try:
                conn.sock.settimeout(10)
                while len(conn.buf) < 1 and conn._fill():
                    pass
            except OSError:
                pass
        replies += [m for m in comparable(first + conn.read_all(0.5)) if m[0] not in (b"S", b"K")]
    return replies, conn.is_closed(0.3)


def same_as_postgres(proxy, upstream, writes: list[bytes]) -> tuple[list, bool]:
    direct, via = RawConn.to_upstream(upstream), RawConn.to_proxy(proxy)
    try:
        expected = answer(direct, writes)
        got = answer(via, writes, wait_first=True)
    finally:
        direct.close()
        via.close()
    assert got == expected
    return got


def raw_startup(pairs: list[tuple[bytes, bytes]]) -> bytes:
    body = struct.pack("!I", p.PROTOCOL_3_0) + b"".join(k + b"\0" + v + b"\0" for k, v in pairs) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


UNENCRYPTED = "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack."


@pytest.mark.parametrize("request_, message", [
    (SSL_REQUEST, "received unencrypted data after SSL request"),
    (GSSENC_REQUEST, "received unencrypted data after GSSAPI encryption request"),
])
def test_plaintext_after_encryption_request_is_refused(proxy, upstream, request_, message):
    replies, closed = same_as_postgres(proxy, upstream, [request_ + startup_packet()])
    assert replies == [b"N", (b"E", "FATAL", "08P01", message)] and closed


def test_detail_of_the_refusal(proxy):
    conn = RawConn.to_proxy(proxy)
    conn.send(GSSENC_REQUEST + startup_packet())
    assert conn.read_byte() == b"N"
    assert p.parse_fields(conn.read_message()[1])["D"] == UNENCRYPTED


@pytest.mark.parametrize("writes", [
    [struct.pack("!II", 12, p.SSL_REQUEST_CODE) + b"abcd", startup_packet()],  # answered N, as any SSLRequest
    [struct.pack("!II", 16, p.GSSENC_REQUEST_CODE) + b"abcdefgh", startup_packet()],
    [GSSENC_REQUEST, SSL_REQUEST, startup_packet()],  # libpq's gssencmode=prefer, then sslmode=prefer
    [SSL_REQUEST, SSL_REQUEST],  # a second one: Postgres reads its code as a protocol version
    [GSSENC_REQUEST, GSSENC_REQUEST],
], ids=["ssl_12_bytes", "gssenc_16_bytes", "gssenc_then_ssl", "ssl_twice", "gssenc_twice"])
def test_encryption_requests_like_postgres(proxy, upstream, writes):
    direct, via = RawConn.to_upstream(upstream), RawConn.to_proxy(proxy)
    try:
        expected, got = answer(direct, writes), answer(via, writes, wait_first=True)
    finally:
        direct.close()
        via.close()
    # (the versions the proxy speaks are its own: "server supports 3.0 to 3.2")
    assert _versions_cut(got) == _versions_cut(expected)


def _versions_cut(replies: tuple[list, bool]) -> tuple[list, bool]:
    return [r[:3] + (r[3].split(": server supports")[0],) if r[0] == b"E" else r for r in replies[0]], replies[1]


@pytest.mark.parametrize("pairs", [
    [(b"user", b"postgres"), (b"database", b"postgres"), (b"application_name", b"caf\xe9")],
    [(b"user", b"caf\xe9"), (b"database", b"postgres")],  # Postgres: no such role (28000)
    [(b"user", b"postgres"), (b"database", b"caf\xe9")],
    [(b"user", b"postgres"), (b"database", b"postgres"), (b"_pq_.opt\xe9", b"1")],
], ids=["latin1_application_name", "latin1_user", "latin1_database", "latin1_protocol_option"])
def test_startup_parameters_not_utf8_are_passed_on(proxy, upstream, pairs):
    same_as_postgres(proxy, upstream, [raw_startup(pairs)])


def test_not_utf8_application_name_session_works(proxy):
    conn = RawConn.to_proxy(proxy)
    conn.send(raw_startup([(b"user", b"postgres"), (b"database", b"postgres"), (b"application_name", b"caf\xe9")]))
    assert conn.read_until_ready()[-1] == (b"Z", b"I")
    conn.send(p.message(b"Q", b"SELECT 1\x00"))
    assert [m[0] for m in conn.read_until_ready()] == [b"T", b"D", b"C", b"Z"]
    conn.close()


# -- --tls-required ------------------------------------------------------------------
def test_tls_required_refuses_plaintext(fresh_proxy, cert):  # noqa: F811 - the fixture
    proxy = fresh_proxy("--tls-cert", str(cert[0]), "--tls-key", str(cert[1]), "--tls-required")
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(proxy.dsn())  # sslmode=disable
    assert "FATAL:  mlproxy accepts only TLS connections" in str(info.value)
    conn = RawConn.to_proxy(proxy)
    conn.send(startup_packet())
    msg = conn.read_message()
    fields = p.parse_fields(msg[1])
    assert (msg[0], fields["S"], fields["C"]) == (b"E", "FATAL", "28000")
    assert 'user "postgres", database "postgres", no encryption' in fields["M"]
    assert conn.is_closed()
    with psycopg.connect(proxy.dsn().replace("sslmode=disable", "sslmode=require")) as tls:
        assert tls.pgconn.ssl_in_use
        assert tls.execute("SELECT 'over tls'").fetchone() == ("over tls",)


def test_tls_required_env_and_needs_a_certificate(fresh_proxy, cert):  # noqa: F811
    proxy = fresh_proxy("--tls-cert", str(cert[0]), "--tls-key", str(cert[1]),
                        env={"MLPROXY_TLS_REQUIRED": "1"})
    raw = socket.create_connection((proxy.host, proxy.port))
    raw.sendall(startup_packet())
    conn = RawConn(raw)
    assert p.parse_fields(conn.read_message()[1])["C"] == "28000"
    conn.close()
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection((proxy.host, proxy.port))
    raw.sendall(SSL_REQUEST)
    assert raw.recv(1) == b"S"
    tls = RawConn(ctx.wrap_socket(raw, server_hostname="localhost"))
    assert tls.login()[-1][0] == b"Z"
    tls.close()
    done = subprocess.run([sys.executable, "-m", "proxy", "serve", "--tls-required",
                           "--upstream", "postgresql://x@127.0.0.1:1/x"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "tls_required (flag --tls-required) needs tls_cert" in done.stderr
    helptext = subprocess.run([sys.executable, "-m", "proxy", "serve", "--help"],
                              capture_output=True, text=True, timeout=60).stdout
    assert "--tls-required" in helptext and "MLPROXY_TLS_REQUIRED" in helptext
