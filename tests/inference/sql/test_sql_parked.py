"""Sessions holding prepared model statements go back to the relay pump (parked
reply rewrite, proxy/reply_rewrite.py) and come back at the first message that
names one of them: whatever the interleaving, the client gets the same bytes as
from a proxy that never lends a session (`--relay python`)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy import protocol as p
from tests.proxy.test_conformance import SYNC, bind, describe, execute, parse, query
from tests.support.servers import start_proxy
from tests.support.wire import RawConn

from .conftest import DATABASE
from .test_sql_malformed import REFUSED_COPY, ends_on_the_cut_bind

MODEL = "SELECT id, predict_price(rooms, area, city) FROM houses WHERE id >= $1::int ORDER BY id LIMIT 3"
PLAIN = "SELECT id, rooms, city FROM houses WHERE id >= $1::int ORDER BY id LIMIT 3"
GENERAL = "SELECT id FROM houses WHERE id <= $1::int AND predict_price(rooms, area, city) > 0 ORDER BY id"
SETUP = (parse(MODEL, "m") + parse(PLAIN, "q") + parse(GENERAL, "g") + parse("SELECT 10 / $1::int", "z")
         + parse("SELECT 1 WHERE $1::int > 0", "t") + SYNC)


@pytest.fixture(scope="module")
def never_lent(suite, pg, tmp_path_factory):
    """A second proxy on the same database and models that relays in Python only."""
    process = start_proxy(pg.uri, "--data-dir", str(tmp_path_factory.mktemp("never-lent")),
                          "--workers", "2", "--relay", "python")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def always_lent(suite, pg, tmp_path_factory):
    """A proxy that lends a session holding model statements back to the pump as
    soon as nothing of them is in flight."""
    process = start_proxy(pg.uri, "--data-dir", str(tmp_path_factory.mktemp("always-lent")),
                          "--workers", "2", "--relend-after", "0")
    yield process
    process.stop()


_portal = st.sampled_from(["", "p1"])
_row = st.integers(1, 6).map(lambda n: str(n).encode())
_extended = st.one_of(
    st.tuples(st.just("bind"), _portal, st.sampled_from(["m", "q", "g", "t"]), _row, st.sampled_from([0, 1, 2])),
    st.tuples(st.just("again"), _portal, st.sampled_from([0, 1])),
    st.tuples(st.just("describe"), st.sampled_from([("S", "m"), ("S", "q"), ("P", ""), ("P", "p1")])),
    st.tuples(st.just("close"), st.sampled_from([("P", ""), ("P", "p1")])),
    st.tuples(st.just("divzero"), st.sampled_from([b"0", b"5"])),
    st.tuples(st.just("missing"),),
    st.tuples(st.just("unnamed"), st.sampled_from([MODEL, PLAIN]), _row),
)
_query = st.sampled_from(["BEGIN", "COMMIT", "ROLLBACK", "SELECT 1", "SELECT 1/0",
                          "SELECT id, predict_price(rooms, area, city) FROM houses WHERE id = 2"])
_unit = st.one_of(st.lists(_extended, min_size=1, max_size=3).map(lambda ops: ("extended", ops)),
                  _query.map(lambda sql: ("query", sql)))


def _bytes(unit) -> bytes:
    kind, body = unit
    if kind == "query":
        return query(body)
    out = b""
    for op in body:
        if op[0] == "bind":
            _, portal, stmt, row, max_rows = op
            out += bind((row,), portal=portal, stmt=stmt) + execute(portal, max_rows)
        elif op[0] == "again":
            out += execute(op[1], op[2])
        elif op[0] == "describe":
            out += describe(op[1][0].encode(), op[1][1])
        elif op[0] == "close":
            out += p.message(b"C", op[1][0].encode() + p.cstr(op[1][1]))
        elif op[0] == "divzero":
            out += bind((op[1],), stmt="z") + execute()
        elif op[0] == "missing":
            out += bind((), stmt="no_such_statement") + execute()
        else:  # a Parse of the unnamed statement, with or without a model call
            out += parse(op[1]) + bind((op[2],)) + execute()
    return out + SYNC


def _converse(proxy, writes: list[tuple[bytes, int]]) -> list[list[tuple[bytes, bytes]]]:
    conn = RawConn.to_proxy(proxy)
    try:
        conn.login(database=DATABASE)
        out = []
        for data, ready in writes:
            conn.send(data)
            out.append(conn.read_until_ready(ready))
        conn.send(query("SELECT 'in sync'"))
        out.append(conn.read_until_ready())
        return out
    finally:
        conn.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(_unit, min_size=1, max_size=3), min_size=1, max_size=6))
def test_lent_or_not_the_client_gets_the_same_bytes(suite, always_lent, never_lent, writes):
    """Writes of pipelined units (extended messages up to a Sync, or a Query): plain
    and rewritten statements and portals, row limits (portal suspension), errors,
    Syncs inside and outside transaction blocks."""
    plan = [(SETUP, 1)] + [(b"".join(_bytes(u) for u in units), len(units)) for units in writes]
    expected = _converse(never_lent, plan)
    assert _converse(always_lent, plan) == expected
    assert _converse(suite.proxy, plan) == expected


def test_plain_statements_on_a_session_holding_a_model_statement(suite):
    """asyncpg keeps its statements for the connection's life: plain ones between
    executions of a model statement answer as on a fresh session, and the model
    statement still answers after them (asyncpg sends its Binds without a Parse)."""

    async def run():
        conn = await asyncpg.connect(suite.asyncpg_dsn(), ssl=False)
        fresh = await asyncpg.connect(suite.asyncpg_dsn(), ssl=False)
        try:
            model = await conn.prepare(MODEL)
            first = await model.fetch(2)
            plain, plain_fresh = await conn.prepare(PLAIN), await fresh.prepare(PLAIN)
            for row in range(1, 30):
                assert await plain.fetch(row) == await plain_fresh.fetch(row)
                if row % 7 == 0:
                    assert await model.fetch(2) == first
            async with conn.transaction():
                assert await model.fetch(2) == first
                assert await plain.fetch(3) == await plain_fresh.fetch(3)
            assert await model.fetch(2) == first
            assert [r[0] for r in first] == [2, 3, 4] and all(r[1] is not None for r in first)
        finally:
            await conn.close()
            await fresh.close()

    asyncio.run(run())


def test_model_bind_cut_after_a_refused_copy_data_wakes_the_parked_rewrite(suite, always_lent, never_lent):
    """A Bind of a parked statement cut after a CopyData Postgres refused: its type
    byte went upstream alone (Postgres judges a message during COPY by it) and the
    rest, when it comes, wakes the rewrite as any naming message does, so the
    execution is served with the same bytes as on a session never lent."""
    run = bind((b"2",), stmt="m") + execute() + SYNC
    plan = [(SETUP, 1), (REFUSED_COPY + run[:3], 2), (run[3:], 1)]
    expected = _converse(never_lent, plan)
    assert [r[0] for r in expected[2]] == [b"2", b"D", b"D", b"D", b"C", b"Z"]
    assert _converse(always_lent, plan) == expected


def test_model_bind_cut_after_a_refused_copy_data_in_an_open_pipeline_ends_the_session(always_lent):
    """The same Bind behind a Parse with no Sync between: waking the parked rewrite
    then takes a takeover that relays the replies owed to that Parse first, which the
    type byte already upstream rules out, so the session ends with 08P01 (a session
    never lent, whose rewrite tracks the Parse, serves it)."""
    run = bind((b"2",), stmt="m") + execute() + SYNC
    ends_on_the_cut_bind(always_lent, [SETUP, REFUSED_COPY + parse("SELECT 1") + run[:3], run[3:]])
