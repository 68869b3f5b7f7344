"""Process-level behaviour: TLS termination, encryption requests, protocol 3.2,
graceful shutdown, and the default embedded-Postgres mode of `mlproxy serve`."""

from __future__ import annotations

import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from proxy import protocol as p
from tests.support.servers import READY, psql
from tests.support.wire import RawConn, error_fields, startup_packet

SSL_REQUEST = struct.pack("!II", 8, p.SSL_REQUEST_CODE)
GSSENC_REQUEST = struct.pack("!II", 8, p.GSSENC_REQUEST_CODE)


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem")], check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def test_ssl_and_gssenc_refused_without_tls(proxy):
    conn = RawConn.to_proxy(proxy)
    conn.send(GSSENC_REQUEST)
    assert conn.read_byte() == b"N"
    conn.send(SSL_REQUEST)
    assert conn.read_byte() == b"N"
    assert conn.login()[-1][0] == b"Z"  # plaintext startup goes on


def test_tls_terminated_at_proxy(fresh_proxy, cert):
    proxy = fresh_proxy("--tls-cert", str(cert[0]), "--tls-key", str(cert[1]))
    with psycopg.connect(proxy.dsn().replace("sslmode=disable", "sslmode=require")) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 'over tls'").fetchone() == ("over tls",)
    # sslmode=disable clients still get in: TLS is offered, not forced
    with psycopg.connect(proxy.dsn()) as conn:
        assert not conn.pgconn.ssl_in_use


def test_data_after_ssl_request_is_rejected(fresh_proxy, cert):
    proxy = fresh_proxy("--tls-cert", str(cert[0]), "--tls-key", str(cert[1]))
    conn = RawConn.to_proxy(proxy)
    conn.send(SSL_REQUEST + startup_packet())  # injected plaintext after SSLRequest
    assert conn.read_byte() == b"S"  # as Postgres with ssl=on: the answer, then the FATAL
    msg = conn.read_message()
    assert msg[0] == b"E"
    fields = error_fields(msg)
    assert fields["C"] == "08P01" and "unencrypted data after SSL request" in fields["M"]
    assert conn.is_closed()
    # a proper handshake on the same proxy works
    raw = socket.create_connection((proxy.host, proxy.port))
    raw.sendall(SSL_REQUEST)
    assert raw.recv(1) == b"S"
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    tls = RawConn(ctx.wrap_socket(raw, server_hostname="localhost"))
    assert tls.login()[-1][0] == b"Z"
    tls.close()


def test_protocol_3_2_startup_is_relayed(proxy, upstream):
    version = (3 << 16) | 2
    replies = []
    for conn in (RawConn.to_upstream(upstream), RawConn.to_proxy(proxy)):
        conn.send(startup_packet(version=version, **{"_pq_.mlproxy_test": "x"}))
        msgs = conn.read_until_ready()
        replies.append([(t, b) for t, b in msgs if t in (b"v", b"R")])
        conn.close()
    assert replies[0] == replies[1]
    assert replies[0][0][0] == b"v" or replies[0][0][0] == b"R"


def _query_in_thread(dsn: str, sql: str, out: dict) -> threading.Thread:
    def run():
        try:
            with psycopg.connect(dsn) as conn:
                out["rows"] = conn.execute(sql).fetchall()
                try:
                    conn.execute("SELECT 1")
                except psycopg.Error as exc:
                    out["after"] = exc
        except psycopg.Error as exc:
            out["error"] = exc
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_graceful_shutdown_lets_inflight_query_finish(fresh_proxy):
    proxy = fresh_proxy("--shutdown-grace", "20")
    idle = psycopg.connect(proxy.dsn(), autocommit=True)
    out: dict = {}
    thread = _query_in_thread(proxy.dsn(), "SELECT 'done' FROM pg_sleep(1.5)", out)
    time.sleep(0.5)
    started = time.monotonic()
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(15) == 0
    thread.join(10)
    assert out.get("rows") == [("done",)], out
    assert isinstance(out.get("after"), psycopg.OperationalError)
    assert 0.5 < time.monotonic() - started < 10
    with pytest.raises(psycopg.OperationalError):
        idle.execute("SELECT 1")
    assert "shutting down" in proxy.read_log()


def test_shutdown_grace_period_ends_long_queries(fresh_proxy):
    proxy = fresh_proxy("--shutdown-grace", "1")
    out: dict = {}
    thread = _query_in_thread(proxy.dsn(), "SELECT pg_sleep(30)", out)
    time.sleep(0.5)
    started = time.monotonic()
    proxy.proc.send_signal(signal.SIGINT)
    assert proxy.proc.wait(15) == 0
    thread.join(10)
    assert time.monotonic() - started < 5
    assert "error" in out and "administrator command" in str(out["error"])


def test_serve_default_runs_embedded_postgres(tmp_path):
    """`mlproxy serve` with no upstream: initdb, start, serve, stop cleanly."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", "--data-dir", str(tmp_path),
         "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[2])
    try:
        line = proc.stdout.readline()
        match = READY.search(line)
        assert match, line
        host, port = match.group(1).decode(), int(match.group(2))
        assert psql(host, port, "SELECT current_user;").stdout.strip() == "postgres"
        assert (tmp_path / "pgdata" / "postmaster.pid").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists()


def test_unreachable_upstream_is_a_connection_error(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", "--upstream",
         f"postgresql:///?host={tmp_path}&port=1", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[2])
    try:
        match = READY.search(proc.stdout.readline())
        conn = socket.create_connection((match.group(1).decode(), int(match.group(2))))
        raw = RawConn(conn)
        raw.send(startup_packet())
        fields = error_fields(raw.read_message())
        assert fields["C"] == "08001" and "could not connect to upstream" in fields["M"]
        assert raw.is_closed()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
