"""The general path under the extended protocol and in cursors, through real drivers.

Prepared statements whose model calls sit outside the top-level select list get
their predictions at every Bind, with that Bind's parameters (inside the calls and
elsewhere, text and binary); cursors (DECLARE, psycopg's server-side cursors, WITH
HOLD past COMMIT) read lookups of tables filled when they are declared. Results are
compared with the offline predictor; errors must be Postgres's kind, point into the
client's text and leave the session in sync.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import re
import time

import asyncpg
import pg8000.native
import psycopg
import pytest

from tests.ml.conftest import wait_for_state
from tests.support.clients import run_async

from .clients import assert_usable, pgbench

PROBE = "SELECT id FROM houses WHERE id <= 2 AND predict_price(rooms, area, city) > 0"
SHIFTED = ("SELECT id FROM houses WHERE predict_price(rooms, area + $1, city) > $2 AND id <= $3 "
           "ORDER BY predict_price(rooms, area, city) DESC, id")


@pytest.fixture(scope="module")
def houses(suite) -> list[tuple]:
    with suite.direct() as d:
        return d.execute("SELECT id, rooms, area, city FROM houses ORDER BY id").fetchall()


@pytest.fixture(scope="module")
def prices(suite, houses) -> dict[int, float]:
    return dict(zip((h[0] for h in houses), suite.price.predict([h[1:] for h in houses])))


def shifted(suite, houses, prices, shift: float, above: float, last: int) -> list[int]:
    """SHIFTED's ids, offline."""
    moved = dict(zip((h[0] for h in houses), suite.price.predict([(h[1], h[2] + shift, h[3]) for h in houses])))
    ids = [i for i in prices if moved[i] > above and i <= last]
    return sorted(ids, key=lambda i: (-prices[i], i))


def _pyformat(sql: str) -> str:
    return re.sub(r"\$\d+", "%s", sql)


# -- drivers ---------------------------------------------------------------------------

def test_asyncpg_statement_cache_many_executions(suite, houses, prices):
    """One prepared statement (binary parameters inside and outside the calls),
    executed with other values each time: every result right."""
    async def body():
        conn = await asyncpg.connect(suite.asyncpg_dsn())
        try:
            stmt = await conn.prepare(SHIFTED)
            assert [a.name for a in stmt.get_attributes()] == ["id"]
            for k in range(6):
                args = (k * 7.5, 380.0 - k * 10, 120 + k * 60)
                got = [r[0] for r in await stmt.fetch(*args)]
                assert got == shifted(suite, houses, prices, *args)
                assert [r[0] for r in await conn.fetch(SHIFTED, *args)] == got  # the driver's cache
            assert await conn.fetchval("SELECT 41 + 1") == 42
        finally:
            await conn.close()

    run_async(body())


def test_asyncpg_binary_arguments_of_every_type(suite):
    """Parameters of the call of each declared type (int, text, numeric, date, bool)
    in binary, and the described row type is the function's return type."""
    sql = ("SELECT id, predict_churn($1, plan, $2, signup, $3) = predict_churn($1, plan, $2, signup, $3) AS same "
           "FROM customers WHERE id <= $4 AND predict_churn($1, plan, $2, signup, $3) IS NOT NULL ORDER BY id")
    with suite.direct() as d:
        rows = d.execute("SELECT id, plan, signup FROM customers WHERE id <= 20 ORDER BY id").fetchall()
    async def body():
        conn = await asyncpg.connect(suite.asyncpg_dsn())
        try:
            got = await conn.fetch(sql, 44, decimal.Decimal("3.5"), True, 20)
            assert [tuple(r) for r in got] == [(r[0], True) for r in rows]
            stmt = await conn.prepare("SELECT id FROM customers WHERE id <= 30 "
                                      "AND predict_churn(age, plan, usage, $1, promo) = $2 ORDER BY id")
            for day, label in ((datetime.date(2020, 3, 1), True), (datetime.date(2021, 6, 1), False)):
                with suite.direct() as d:
                    inputs = d.execute("SELECT id, age, plan, usage, %s::date, promo FROM customers "
                                       "WHERE id <= 30 ORDER BY id", (day,)).fetchall()
                want = [r[0] for r, v in zip(inputs, suite.churn.predict([r[1:] for r in inputs])) if v == label]
                assert [r[0] for r in await stmt.fetch(day, label)] == want
        finally:
            await conn.close()

    run_async(body())


def test_asyncpg_cursor_portal_with_row_limit(suite, houses, prices):
    """A cursor over a general-path statement: Execute with a row limit, PortalSuspended
    between slices, in the transaction the predictions were written in."""
    args = (0.0, 300.0, 500)

    async def body():
        conn = await asyncpg.connect(suite.asyncpg_dsn())
        try:
            async with conn.transaction():
                got = [r[0] async for r in conn.cursor(SHIFTED, *args, prefetch=9)]
            assert got == shifted(suite, houses, prices, *args)
            assert len(got) > 9
        finally:
            await conn.close()

    run_async(body())


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_psycopg_prepared_in_a_transaction_pipeline(suite, houses, prices, binary):
    """psycopg prepare=True, several executions pipelined (one Sync) in a block."""
    sql = _pyformat(SHIFTED)
    cases = [(5.0, 350.0, 200), (0.0, 420.0, 500), (-10.0, 300.0, 50)]
    with suite.connect(autocommit=False) as conn:
        with conn.pipeline():
            cursors = [conn.cursor(binary=binary).execute(sql, args, prepare=True) for args in cases]
            plain = conn.cursor().execute("SELECT %s::int + 1", (41,))
        for cur, args in zip(cursors, cases):
            assert [r[0] for r in cur.fetchall()] == shifted(suite, houses, prices, *args)
        assert plain.fetchone() == (42,)
        conn.commit()
        for args in cases:  # the named statement again, each in its own transaction
            assert [r[0] for r in conn.execute(sql, args, prepare=True, binary=binary)] == \
                shifted(suite, houses, prices, *args)
            conn.commit()
        assert_usable(conn, PROBE)


def test_pg8000(suite, houses, prices):
    conn = pg8000.native.Connection("postgres", host=suite.proxy.host, port=suite.proxy.port,
                                    database="mlsql", timeout=30)
    try:
        for args in ((0.0, 400.0, 300), (12.0, 360.0, 80)):
            rows = conn.run("SELECT id FROM houses WHERE predict_price(rooms, area + :s, city) > :a "
                            "AND id <= :l ORDER BY predict_price(rooms, area, city) DESC, id",
                            s=args[0], a=args[1], l=args[2])
            assert [r[0] for r in rows] == shifted(suite, houses, prices, *args)
        assert conn.run("SELECT 41 + 1") == [[42]]
    finally:
        conn.close()


# -- cursors -----------------------------------------------------------------------------

CURSOR_SQL = {
    "select_list": ("SELECT id, predict_price(rooms, area, city) FROM houses WHERE id <= %s ORDER BY id",
                    lambda prices, n: [(i, prices[i]) for i in sorted(prices) if i <= n]),
    "where": ("SELECT id FROM houses WHERE id <= %s AND predict_price(rooms, area, city) > 350 ORDER BY id",
              lambda prices, n: [(i,) for i in sorted(prices) if i <= n and prices[i] > 350]),
}


@pytest.mark.parametrize("withhold", [False, True], ids=["in_transaction", "with_hold"])
@pytest.mark.parametrize("shape", CURSOR_SQL)
def test_psycopg_server_side_cursor(suite, prices, shape, withhold):
    """psycopg's named cursors: DECLARE (extended protocol, a parameter) then FETCH
    FORWARD n; a WITH HOLD cursor is read on after COMMIT."""
    sql, expect = CURSOR_SQL[shape]
    with suite.connect(autocommit=False) as conn:
        cur = conn.cursor(name=f"c_{shape}", withhold=withhold)
        cur.execute(sql, (300,))
        first = cur.fetchmany(7)
        if withhold:
            conn.commit()
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        rows = first + cur.fetchall()
        cur.close()
        conn.commit()
        assert rows == expect(prices, 300)
        # the cursor's tables went with its transaction (ON COMMIT DROP)
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relpersistence = 't' AND relkind = 'r' "
                            "AND pg_table_is_visible(oid)").fetchone() == (0,)
        assert_usable(conn, PROBE)


def test_declare_and_fetch_simple_protocol(suite, prices):
    """DECLARE ... WITH HOLD and FETCH as psql sends them; the cursor outlives the
    transaction mlproxy wraps its work in; the temporary tables do not."""
    with suite.connect() as conn:
        conn.execute("DECLARE held NO SCROLL CURSOR WITH HOLD FOR SELECT id FROM houses "
                     "WHERE predict_price(rooms, area, city) > 350 ORDER BY id")
        got = conn.execute("FETCH FORWARD 5 FROM held").fetchall()
        got += conn.execute("FETCH ALL FROM held").fetchall()
        conn.execute("CLOSE held")
        assert [r[0] for r in got] == [i for i in sorted(prices) if prices[i] > 350]
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relpersistence = 't' AND relkind = 'r' "
                            "AND pg_table_is_visible(oid)").fetchone() == (0,)
        # without HOLD and outside a block: Postgres's own refusal
        with pytest.raises(psycopg.errors.NoActiveSqlTransaction):
            conn.execute("DECLARE loose CURSOR FOR SELECT id FROM houses WHERE predict_price(rooms, area, city) > 0")
        with conn.transaction():
            conn.execute("DECLARE inner_c CURSOR FOR SELECT id, predict_price(rooms, area, city) FROM houses "
                         "WHERE id IN (3, 4) ORDER BY id")
            assert conn.execute("FETCH ALL FROM inner_c").fetchall() == [(3, prices[3]), (4, prices[4])]
        assert_usable(conn, PROBE)


# -- errors ------------------------------------------------------------------------------

ERRORS = [
    # (statement, SQLSTATE, text the error position must point at)
    ("SELECT id FROM houses WHERE predict_price(rooms, area) > $1", "42883", "predict_price(rooms, area)"),
    ("SELECT id FROM houses WHERE predict_price(rooms, city, area) > $1", "42883", "predict_price(rooms, city"),
    ("SELECT id FROM houses WHERE nosuchcol > 0 AND predict_price(rooms, area, city) > $1", "42703", "nosuchcol"),
    ("SELECT id FROM houses ORDER BY predict_price(rooms, area, city) + $1 + nosuch.x", "42P01", "nosuch.x"),
]


@pytest.mark.parametrize("sql,state,at", ERRORS, ids=["arity", "types", "column", "table"])
@pytest.mark.parametrize("in_block", [False, True], ids=["implicit", "block"])
def test_errors_point_at_the_clients_text(suite, sql, state, at, in_block):
    with suite.connect(autocommit=not in_block) as conn:
        with pytest.raises(psycopg.Error) as err:
            conn.execute(_pyformat(sql), (1.0,), prepare=True)
        assert err.value.sqlstate == state
        position = int(err.value.diag.statement_position)
        assert sql[position - 1:].startswith(at), (sql, position)
        if in_block:  # the statement's error aborted the transaction, as Postgres's would
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
            with pytest.raises(psycopg.errors.InFailedSqlTransaction):
                conn.execute("SELECT 1")
            conn.rollback()
        assert_usable(conn, PROBE)
        assert conn.execute(_pyformat(SHIFTED), (0.0, 0.0, 3), prepare=True).fetchall()


def test_model_dropped_between_prepare_and_execute(suite, houses):
    """A clear error at the next execution, the session in sync; a new model under
    the same name serves the statement prepared anew."""
    create = ("CREATE MODEL transient_model FROM (SELECT rooms, area, price FROM houses) TARGET price "
              "FUNCTION predict_transient PROBLEM_TYPE REGRESSION MODEL_TYPE LINEAR_LEARNER "
              "SETTINGS (MAX_RUNTIME 5)")
    with suite.connect() as admin:
        admin.execute("DROP MODEL IF EXISTS transient_model")
        admin.execute(create)
        assert wait_for_state(admin, "transient_model", timeout=180)["Model State"] == "READY"
    sql = "SELECT id FROM houses WHERE predict_transient(rooms, area) > $1 AND id <= 10 ORDER BY id"

    async def body():
        conn = await asyncpg.connect(suite.asyncpg_dsn())
        try:
            stmt = await conn.prepare(sql)
            before = [r[0] for r in await stmt.fetch(0.0)]
            assert before == list(range(1, 11))
            with suite.connect() as other:
                other.execute("DROP MODEL transient_model")
            await asyncio.sleep(1)  # the registry hears of it by NOTIFY
            with pytest.raises(asyncpg.PostgresError) as gone:
                await stmt.fetch(0.0)
            assert gone.value.sqlstate == "42883"
            assert "predict_transient" in str(gone.value)
            assert await conn.fetchval("SELECT 41 + 1") == 42
            block = conn.transaction()  # inside a block, the error aborts the block
            await block.start()
            with pytest.raises(asyncpg.PostgresError):
                await stmt.fetch(0.0)
            with pytest.raises(asyncpg.InFailedSQLTransactionError):
                await conn.fetchval("SELECT 1")
            await block.rollback()
            assert await conn.fetchval("SELECT 41 + 1") == 42
        finally:
            await conn.close()

    run_async(body())


# -- pgbench -----------------------------------------------------------------------------

PGBENCH_SCRIPT = """\\set id random(1, 500)
SELECT id FROM houses WHERE id = :id AND predict_price(rooms, area, city) > 0;
"""


@pytest.mark.parametrize("mode", ["prepared", "extended"])
def test_pgbench_model_in_where(suite, tmp_path, mode):
    script = tmp_path / "where.sql"
    script.write_text(PGBENCH_SCRIPT)
    processed, tps = pgbench(suite.proxy, script, mode)
    print(f"\npgbench -M {mode}, model in WHERE: {processed} transactions, tps {tps}")


def test_value_the_model_cannot_take_inside_a_block(suite):
    """A prediction error at Bind aborts the client's transaction block, as an error
    of its own statement would; the pipeline's other results are Postgres's."""
    sql = "SELECT id FROM houses WHERE id <= %s AND predict_price(rooms, %s, city) > 0"
    with suite.connect(autocommit=False) as conn:
        assert conn.execute(sql, (3, 50.0), prepare=True).fetchall() == [(1,), (2,), (3,)]
        with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
            conn.execute(sql, (3, float("inf")), prepare=True)
        assert "area" in err.value.diag.message_primary
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.rollback()
        assert conn.execute(sql, (2, 50.0), prepare=True).fetchall() == [(1,), (2,)]
        conn.commit()
        assert_usable(conn, PROBE)


@pytest.mark.parametrize("analyze", [False, True], ids=["explain", "explain_analyze"])
def test_explain_under_the_extended_protocol(suite, analyze):
    notices: list[str] = []
    with suite.connect() as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        words = "EXPLAIN ANALYZE" if analyze else "EXPLAIN"
        plan = conn.execute(f"{words} SELECT id FROM houses WHERE id <= %s "
                            "AND predict_price(rooms, area, city) > 0", (5,)).fetchall()
        assert any("houses" in line for line, in plan)
        assert ("actual time" in "".join(line for line, in plan)) == analyze
        assert len(notices) == 1 and "temporary" in notices[0].lower(), notices
        notices.clear()
        plan = conn.execute("EXPLAIN SELECT id, predict_price(rooms, area, city) FROM houses WHERE id = %s",
                            (5,)).fetchall()
        assert any("houses" in line for line, in plan)
        assert len(notices) == 1 and "stream" in notices[0].lower(), notices
        assert_usable(conn, PROBE)


def test_pipeline_mixing_streaming_and_general_statements(suite, houses, prices):
    """Streaming and general statements and an error-free plain one in one pipeline
    (one Sync): the replies owed to the streaming statements (rewritten rows) go out
    before the general path's own work runs."""
    stream_sql = "SELECT id, predict_price(rooms, area, city) FROM houses WHERE id <= %s ORDER BY id"
    with suite.connect() as conn:
        with conn.pipeline():
            a = conn.cursor().execute(stream_sql, (40,))
            b = conn.cursor().execute(_pyformat(SHIFTED), (3.0, 330.0, 90))
            c = conn.cursor(binary=True).execute(stream_sql, (5,))
            d = conn.cursor().execute(_pyformat(SHIFTED), (0.0, 400.0, 500), prepare=True)
        # (the predictor's float sums may differ in the last bit with the batch size)
        assert a.fetchall() == [(i, pytest.approx(prices[i], rel=1e-14)) for i in range(1, 41)]
        assert [r[0] for r in b.fetchall()] == shifted(suite, houses, prices, 3.0, 330.0, 90)
        assert c.fetchall() == [(i, pytest.approx(prices[i], rel=1e-14)) for i in range(1, 6)]
        assert [r[0] for r in d.fetchall()] == shifted(suite, houses, prices, 0.0, 400.0, 500)
        assert_usable(conn, PROBE)


def test_error_earlier_in_the_pipeline_skips_the_general_statement(suite):
    """After an error in the pipeline Postgres skips to Sync: the general statement
    behind it is skipped too (nothing of mlproxy's runs), and the session goes on."""
    with suite.connect() as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            with conn.pipeline():
                conn.cursor().execute("SELECT 1 / %s", (0,))
                conn.cursor().execute(_pyformat(SHIFTED), (0.0, 0.0, 3))
        assert conn.execute(_pyformat(SHIFTED), (0.0, 0.0, 3)).fetchall()
        assert_usable(conn, PROBE)


@pytest.mark.parametrize("second", ["streaming", "general"])
def test_error_flushed_before_a_model_statement_in_the_pipeline(suite, prices, second):
    """The server sends an error at once, before the client's Sync: the model
    statement behind it in the pipeline is skipped (as Postgres skips it), and the
    replies after the Sync stay matched to their requests."""
    sql = {"streaming": "SELECT id, predict_price(rooms, area, city) FROM houses WHERE id = %s",
           "general": "SELECT id FROM houses WHERE id = %s AND predict_price(rooms, area, city) > 0"}[second]
    with suite.connect() as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            with conn.pipeline():
                conn.cursor().execute("SELECT 1 / %s", (0,))
                conn.pgconn.send_flush_request()  # the messages go out, the error comes back
                conn.pgconn.flush()
                time.sleep(0.3)  # ... before the model statement is sent
                conn.cursor().execute(sql, (7,))
        assert conn.execute(sql, (7,)).fetchone()[0] == 7
        assert conn.execute("SELECT id, predict_price(rooms, area, city) FROM houses WHERE id = %s",
                            (8,)).fetchone() == (8, prices[8])
        assert_usable(conn, PROBE)


def test_a_role_set_after_the_prepare_executes_the_statement(suite, houses, prices):
    """A general-path statement's tables are made by the role current at its first
    execution; a role the session sets afterwards, with EXECUTE on the model and
    SELECT on the table, runs it as on Postgres (before: 42501 for mlproxy's
    temporary table, which only its maker could empty)."""
    role = "general_path_reader"
    with suite.direct() as d:
        d.execute(f"DO $$BEGIN CREATE ROLE {role}; EXCEPTION WHEN duplicate_object THEN NULL; END$$")
        d.execute(f"GRANT SELECT ON houses TO {role}")
    with suite.connect() as conn:
        conn.execute(f"GRANT EXECUTE ON MODEL price_model TO {role}")
        sql = _pyformat(SHIFTED)
        args = (0.0, 300.0, 40)
        expected = shifted(suite, houses, prices, *args)
        assert [r[0] for r in conn.execute(sql, args, prepare=True)] == expected
        conn.execute(f"SET ROLE {role}")
        assert [r[0] for r in conn.execute(sql, args, prepare=True)] == expected
        conn.execute("RESET ROLE")
        conn.execute(f"REVOKE EXECUTE ON MODEL price_model FROM {role}")
