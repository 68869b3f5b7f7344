"""The last resort of a session: an exception that escapes the session's code (here
from an interceptor with bugs, plugged in through the documented hook) is logged at
ERROR with the session id and its traceback, the client gets a FATAL XX000 and a
clean close, and the proxy and its other sessions go on. Never a silent close, a
hang, or asyncio's "Task exception was never retrieved"."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from proxy import protocol as p
from proxy.config import Config
from proxy.framing import Frame
from proxy.intercept import Takeover
from proxy.server import ProxyServer
from tests.support.wire import RawConn


class Buggy:
    """An interceptor that fails where it is told to, in wants() or in handle()."""

    def triggers(self, database: str) -> tuple[bytes, ...]:
        return (b"/*crash",)

    def subscribe(self, changed) -> None:
        pass

    def wants(self, frame: Frame, sql: bytes, session) -> bool:
        if b"/*crash-in-wants*/" in sql:
            raise KeyError("a bug in wants")
        return b"/*crash-in-handle*/" in sql

    async def handle(self, frame: Frame, takeover: Takeover) -> None:
        await asyncio.sleep(0)
        raise RuntimeError("a bug in handle")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def buggy_proxy(upstream):
    records = Records()
    logging.getLogger().addHandler(records)
    loop = asyncio.new_event_loop()
    server = ProxyServer(Config(listen_port=0, upstream=upstream), [Buggy()])
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    class Handle:
        host = "127.0.0.1"
        port = server.port
        log = records

    yield Handle()
    asyncio.run_coroutine_threadsafe(server.shutdown(1), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    logging.getLogger().removeHandler(records)


@pytest.mark.parametrize("where, doing", [
    ("handle", ("intercepting a statement",)),
    # in Python's relay, or in the pump's hand-back of a lent session
    ("wants", ("reading the client", "taking the session back from the relay pump"))])
def test_escaped_exception_is_fatal_xx000_logged_with_traceback(buggy_proxy, where, doing):
    conn = RawConn.to_proxy(buggy_proxy)
    conn.login()
    before = len(buggy_proxy.log.records)
    conn.send(p.message(b"Q", p.cstr(f"SELECT 1 /*crash-in-{where}*/")))
    replies = conn.read_all(1.0)
    assert [(t, p.parse_fields(b)["S"], p.parse_fields(b)["C"], p.parse_fields(b)["M"]) for t, b in replies] == [
        (b"E", "FATAL", "XX000", "internal error in mlproxy")]
    assert conn.is_closed()
    new = buggy_proxy.log.records[before:]
    errors = [r for r in new if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    record = errors[0]
    assert record.name == "mlproxy.session" and "session=" in record.getMessage()
    assert any(what in record.getMessage() for what in doing)
    assert record.exc_info and f"a bug in {where}" in str(record.exc_info[1])
    other = RawConn.to_proxy(buggy_proxy)  # the proxy goes on
    other.login()
    other.send(p.message(b"Q", p.cstr("SELECT 'fine'")))
    assert other.read_until_ready()[-1] == (b"Z", b"I")
    other.close()
