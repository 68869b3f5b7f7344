"""The interception hook: a statement the prefilter takes is handled by the
interceptor with exclusive use of the session; everything else is relayed as is,
in order, including messages pipelined behind the intercepted one."""

from __future__ import annotations

import asyncio
import threading
import time

import psycopg
import pytest

from proxy import protocol as p
from proxy.config import Config
from proxy.framing import Frame
from proxy.intercept import Takeover
from proxy.server import ProxyServer
from proxy.session import Session
from tests.support.wire import RawConn, error_fields
from tests.proxy.test_conformance import SCENARIOS as SCENARIOS_BEFORE_INTERCEPT, run


class EchoUpper:
    """Test interceptor: `/*upper*/ SELECT 'x'` is answered by running the query
    upstream itself and upper-casing text results (a real rewrite of the rows)."""

    MARK = b"/*upper*/"

    def triggers(self, database: str) -> tuple[bytes, ...]:
        return (self.MARK,)

    def subscribe(self, changed) -> None:
        pass  # the triggers never change

    def __init__(self) -> None:
        self.handled = 0

    def wants(self, frame: Frame, sql: bytes, session) -> bool:
        return frame.type == p.F_QUERY and self.MARK in sql[:64]

    async def handle(self, frame: Frame, takeover: Takeover) -> None:
        self.handled += 1
        takeover.send_server(frame.raw)
        while True:
            msg = await takeover.server_message()
            if msg.type == p.B_DATA_ROW:  # ASCII upper-casing keeps lengths intact
                takeover.send_client(bytes(msg.raw[:5]) + bytes(msg.raw[5:]).upper())
            else:
                takeover.send_client(msg.raw)
            if msg.type == p.B_READY_FOR_QUERY:
                return


class TracksInItsTakeover:
    """Test interceptor: `/*track*/ SELECT ...` starts matching replies inside its
    takeover (as a general-path Parse does when it forwards the client's Parse), then
    waits for the client's next message before it runs the query."""

    MARK = b"/*track*/"

    def triggers(self, database: str) -> tuple[bytes, ...]:
        return (self.MARK,)

    def subscribe(self, changed) -> None:
        pass

    def wants(self, frame: Frame, sql: bytes, session) -> bool:
        return frame.type == p.F_QUERY and self.MARK in sql[:64]

    async def handle(self, frame: Frame, takeover: Takeover) -> None:
        from proxy.inference.tracked_relay import start_tracking

        start_tracking(takeover.session)
        takeover.unread_client(await takeover.client_message())  # relayed after the takeover
        takeover.send_server(frame.raw)
        while True:
            msg = await takeover.server_message()
            takeover.send_client(msg.raw)
            if msg.type == p.B_READY_FOR_QUERY:
                return


@pytest.fixture(scope="module")
def intercepting_proxy(upstream):
    interceptor = EchoUpper()
    loop = asyncio.new_event_loop()
    server = ProxyServer(Config(listen_port=0, upstream=upstream), [interceptor, TracksInItsTakeover()])
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    class Handle:
        host = "127.0.0.1"
        port = server.port
        handled = property(lambda self: interceptor.handled)

        def dsn(self):
            return f"postgresql://postgres@{self.host}:{self.port}/postgres?sslmode=disable"

    yield Handle()
    asyncio.run_coroutine_threadsafe(server.shutdown(1), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def query(sql: str) -> bytes:
    return p.message(b"Q", p.cstr(sql))


def rows(replies) -> list[bytes]:
    return [body for t, body in replies if t == b"D"]


def test_intercepted_and_relayed_statements_keep_order(intercepting_proxy):
    conn = RawConn.to_proxy(intercepting_proxy)
    conn.login()
    before = intercepting_proxy.handled
    # pipelined: a slow relayed query, an intercepted one, then a relayed one
    conn.send(query("SELECT 'first' FROM pg_sleep(0.2)") + query("/*upper*/ SELECT 'second'")
              + query("SELECT 'third'"))
    replies = conn.read_until_ready(3)
    found = rows(replies)
    assert len(found) == 3
    assert b"first" in found[0] and b"SECOND" in found[1] and b"third" in found[2]
    assert intercepting_proxy.handled == before + 1


def test_a_message_the_relay_does_not_frame_reaches_a_takeover_that_started_tracking(intercepting_proxy):
    """A takeover's framer frames every message, also after its interceptor started
    matching replies (attach_rewrite sets the relay's framers): the CopyData that
    arrives then (Postgres ignores one outside COPY) came to the takeover as bytes,
    and the session failed with an internal error as the takeover ended."""
    conn = RawConn.to_proxy(intercepting_proxy)
    conn.login()
    try:
        conn.send(query("/*track*/ SELECT 'first'"))
        time.sleep(0.2)  # the takeover is tracking and waits for the client
        conn.send(p.message(b"d", b"ignored") + query("SELECT 'second'"))
        replies = conn.read_until_ready(2)
    finally:
        conn.close()
    assert [t for t, _ in replies] == [b"T", b"D", b"C", b"Z", b"T", b"D", b"C", b"Z"]
    assert b"first" in rows(replies)[0] and b"second" in rows(replies)[1]


def test_drivers_see_intercepted_results(intercepting_proxy):
    with psycopg.connect(intercepting_proxy.dsn(), autocommit=True) as conn:
        conn.prepare_threshold = None
        cur = conn.cursor()
        cur.execute("/*upper*/ SELECT 'abc' AS v UNION ALL SELECT 'def'")  # no params: simple protocol
        assert cur.fetchall() == [("ABC",), ("DEF",)]
        assert conn.execute("SELECT 'plain'").fetchone() == ("plain",)


@pytest.mark.parametrize("name", sorted(SCENARIOS_BEFORE_INTERCEPT))
def test_session_knows_when_idle_after_any_exchange(intercepting_proxy, name):
    """After pipelines, COPY (with Syncs the server ignores) and errors, the session's
    in-flight accounting must let the interceptor run (else this would hang)."""
    conn = RawConn.to_proxy(intercepting_proxy)
    conn.login()
    run(conn, SCENARIOS_BEFORE_INTERCEPT[name])
    conn.send(query("/*upper*/ SELECT 'after'"))
    assert any(b"AFTER" in r for r in rows(conn.read_until_ready()))
    conn.close()


def test_a_statement_behind_a_copy_whose_copy_in_response_came_before_its_takeover_ran(
        intercepting_proxy, upstream, monkeypatch):
    """A statement the proxy takes over, sent behind a COPY FROM STDIN in the same
    write, waits for the COPY's ReadyForQuery, which comes only once the COPY ends:
    the CopyInResponse wakes it instead, and it goes on as sent, so that Postgres
    refuses it as during any COPY. When the event loop handles the CopyInResponse
    before the takeover's task first runs (both arrive in one turn), that woke no
    waiter: the task must see the COPY begun, not wait for a ReadyForQuery that
    never comes (found by the fuzzer: its corpus cases hung in 1 of 10 runs)."""
    run_takeover = Session._run_takeover

    async def after_the_copy_began(self, interceptor, frame):
        if EchoUpper.MARK in bytes(frame.raw):
            for _ in range(500):
                if self.copy_in:
                    break
                await asyncio.sleep(0.01)
        await run_takeover(self, interceptor, frame)

    monkeypatch.setattr(Session, "_run_takeover", after_the_copy_began)
    writes = (query("CREATE TEMP TABLE copied (a int)") + query("COPY copied FROM STDIN")
              + p.message(b"d", b"1\n") + query("/*upper*/ SELECT 'x'"))
    answers = []
    for conn in (RawConn.to_proxy(intercepting_proxy), RawConn.to_upstream(upstream)):
        conn.login()
        conn.send(writes)
        answers.append([(t, error_fields((t, body)).get("C") if t == b"E" else None)
                        for t, body in conn.read_all(settle=5, then=1)])
        assert conn.is_closed(), "Postgres ends the session: protocol synchronization was lost"
        conn.close()
    assert answers[0] == answers[1] == [(b"C", None), (b"Z", None), (b"G", None),
                                        (b"E", "08P01"), (b"E", "08P01")]
