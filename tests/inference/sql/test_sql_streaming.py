"""Model calls at volume and under stress: a million rows streamed with bounded proxy
memory, cancellation of a running prediction query, a model dropped under a
prepared statement, and pgbench."""

from __future__ import annotations

import asyncio
import threading
import time

import asyncpg
import psycopg
import pytest
from psycopg.types.numeric import Int8

from tests.drivers.test_copy_volume import PeakRss
from tests.support.clients import run_async, wait_until_running

from .clients import assert_usable, fetch, pgbench, run

BIG_ROWS = 1_000_000
# customers' formulas: every feature repeats with period lcm(60, 3, 100, 700, 4) = 2100
PERIOD = 2100
FEATURES = """(18 + (g::bigint * 7919) % 60)::int AS age, (ARRAY['basic', 'pro', 'team'])[1 + g % 3] AS plan,
              ((g * 31) % 100 / 10.0)::numeric(6,2) AS usage, date '2020-01-01' + (g % 700) AS signup,
              g % 4 = 0 AS promo"""
CALL = "predict_churn(age, plan, usage, signup, promo)"


@pytest.fixture(scope="module")
def big(suite):
    """`big` (1M rows, generated server-side) and the expected prediction of each id
    (from one period of the features)."""
    with suite.direct() as d:
        d.execute("DROP TABLE IF EXISTS big")
        d.execute(f"CREATE TABLE big AS SELECT g AS id, {FEATURES} FROM generate_series(1, {BIG_ROWS}) g")
        rows = d.execute(f"SELECT g, {FEATURES} FROM generate_series(0, {PERIOD - 1}) g").fetchall()
    expected = suite.churn.predict([r[1:] for r in rows])
    yield [expected[i % PERIOD] for i in range(BIG_ROWS + 1)]
    with suite.direct() as d:
        d.execute("DROP TABLE IF EXISTS big")


@pytest.mark.timeout(120)
def test_million_rows_stream_with_bounded_proxy_memory(suite, big, record_property):
    with suite.connect() as conn:
        conn.execute(f"SELECT {CALL} FROM big LIMIT 1")  # predictor loaded, buffers warm
        with PeakRss(suite.proxy.proc.pid) as rss:
            started = time.monotonic()
            count = mismatches = 0
            for row_id, value in conn.cursor().stream(f"SELECT id, {CALL} FROM big", size=10_000):
                count += 1
                mismatches += value != big[row_id]
            seconds = time.monotonic() - started
        growth = rss.growth / 2**20
        record_property("million_rows_seconds", round(seconds, 2))
        record_property("proxy_rss_growth_mb", round(growth, 1))
        print(f"\n1M rows streamed in {seconds:.1f}s; proxy RSS {rss.baseline / 2**20:.0f} -> "
              f"peak {rss.peak / 2**20:.0f} MB")
        assert count == BIG_ROWS and mismatches == 0
        assert growth < 200, f"proxy memory grew by {growth:.0f} MB"
        assert_usable(conn)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["simple-text", "extended-binary", "extended-text"])
def test_value_the_model_cannot_take_deep_in_a_big_result(suite, big, mode):
    """Batches of a big result are predicted on worker threads while the next ones
    arrive: a batch that fails mid-stream is the statement's error, after the rows
    before it and instead of any after it, and the session stays in sync."""
    sql = (f"SELECT id, predict_churn(age, plan, CASE WHEN id = 150000 THEN 'Infinity'::numeric "
           f"ELSE usage END, signup, promo) FROM big WHERE id <= 200000 ORDER BY id")
    with suite.connect() as conn:
        with pytest.raises(psycopg.Error) as err:
            fetch(conn, sql, mode)
        assert err.value.sqlstate.startswith("22"), (err.value.sqlstate, str(err.value))
        assert_usable(conn, f"SELECT {CALL} FROM big WHERE id = 7")
        got = dict(fetch(conn, f"SELECT id, {CALL} FROM big WHERE id <= 50000", mode))
        assert got == {i: big[i] for i in range(1, 50001)}


@pytest.mark.timeout(120)
def test_pipelined_replies_stay_behind_the_batches_being_predicted(suite, big):
    """Replies that arrive while a big result's batches are on the worker threads
    (its CommandComplete, the next statements' results) reach the client after
    them, in order."""
    with suite.connect() as conn:
        with conn.pipeline():
            first = conn.execute(f"SELECT id, {CALL} FROM big WHERE id <= 60000 ORDER BY id", binary=True)
            plain = conn.execute("SELECT count(*) FROM big WHERE id <= 60000")
            second = conn.execute(f"SELECT id, {CALL} FROM big WHERE id > 60000 AND id <= 90000 ORDER BY id")
        assert first.fetchall() == [(i, big[i]) for i in range(1, 60001)]
        assert plain.fetchall() == [(60000,)]
        assert second.fetchall() == [(i, big[i]) for i in range(60001, 90001)]
        assert_usable(conn)


@pytest.mark.timeout(120)
def test_asyncpg_cursor_portal_with_row_limit(suite, big):
    """A cursor fetches through a portal in slices (Execute with a row limit,
    PortalSuspended between slices): binary rows, every prediction right."""
    limit = 200_000

    async def body():
        conn = await asyncpg.connect(suite.asyncpg_dsn())
        try:
            seen = 0
            async with conn.transaction():
                async for row in conn.cursor(f"SELECT id, {CALL} FROM big WHERE id <= $1", limit,
                                             prefetch=5000):
                    assert row[1] == big[row[0]]
                    seen += 1
            assert seen == limit
        finally:
            await conn.close()

    run_async(body(), timeout=100)


SLOW = {
    # each row waits 50 ms upstream; rows stream out as they are made
    "streaming": "SELECT '{tag}' AS tag, id, predict_price(rooms, area, city) FROM houses "
                 "WHERE pg_sleep(0.05) IS NOT NULL",
    "general": "SELECT '{tag}' AS tag, id FROM houses "
               "WHERE predict_price(rooms, area, city) > 0 AND pg_sleep(0.05) IS NOT NULL",
}


@pytest.mark.parametrize("path,mode", [("streaming", "simple-text"), ("streaming", "extended-binary"),
                                       ("general", "simple-text")])
def test_cancel_running_prediction_query(suite, path, mode):
    tag = f"cancel_{path}_{mode}".replace("-", "_")
    sql = SLOW[path].format(tag=tag)
    with suite.connect() as conn:
        outcome: list[BaseException] = []

        def query():
            try:
                run(conn, sql, mode).fetchall()
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                outcome.append(exc)

        worker = threading.Thread(target=query)
        started = time.monotonic()
        worker.start()
        wait_until_running(suite.direct_dsn, tag)
        time.sleep(0.3)
        conn.cancel_safe()
        worker.join(30)
        assert not worker.is_alive()
        assert time.monotonic() - started < 15, "the query ran on: the cancel did not reach it"
        assert outcome and isinstance(outcome[0], psycopg.errors.QueryCanceled), outcome
        assert_usable(conn, "SELECT id, predict_price(rooms, area, city) FROM houses WHERE id = 1")
        # the general path's own transaction and temporary tables are gone
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relpersistence = 't' "
                            "AND pg_table_is_visible(oid)").fetchone() == (0,)


def test_one_prepared_statement_in_both_result_formats(suite, big):
    """The rewriter a prepared statement keeps per result-format section of its
    Binds: text and binary executions alternate on one statement (single rows on
    the per-row path, a page of rows too), each with the model's own predictions."""
    sql = f"SELECT id, {CALL} FROM big WHERE id BETWEEN %s AND %s ORDER BY id"
    with suite.connect() as conn:
        for step, (first, last) in enumerate([(7, 7), (8, 8), (100, 180), (2101, 2101), (5, 40)] * 2):
            binary = step % 2 == 0
            # int8 parameters in both formats: psycopg reuses one prepared statement
            params = (Int8(first), Int8(last))
            cur = conn.execute(sql, params, prepare=True, binary=binary)
            assert [cur.pgresult.fformat(c) for c in range(2)] == [int(binary)] * 2  # as asked
            assert cur.fetchall() == [(i, big[i]) for i in range(first, last + 1)], (first, last, binary)
        prepared = conn.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%big%'")
        assert prepared.fetchone() == (1,)


def test_model_dropped_under_a_prepared_statement(suite):
    """After DROP MODEL, a statement prepared before it either answers a clear error
    at its next Execute or still answers what the model said; never a broken session."""
    sql = "SELECT id, predict_doomed(rooms, area) FROM houses WHERE id = $1"
    with suite.direct() as d:
        rows = d.execute("SELECT id, rooms, area FROM houses WHERE id IN (5, 6) ORDER BY id").fetchall()
    expected = dict(zip((r[0] for r in rows), suite.models["doomed_model"].predict([r[1:] for r in rows])))

    async def body():
        conn = await asyncpg.connect(suite.asyncpg_dsn())
        try:
            stmt = await conn.prepare(sql)
            assert tuple(await stmt.fetchrow(5)) == (5, expected[5])
            with suite.connect() as other:
                other.execute("DROP MODEL doomed_model")
            await asyncio.sleep(1)  # the registry hears of it by NOTIFY
            try:
                after = ("rows", tuple(await stmt.fetchrow(6)))
            except asyncpg.PostgresError as exc:
                after = ("error", exc.sqlstate, str(exc))
            assert await conn.fetchval("SELECT 41 + 1") == 42
            with pytest.raises(asyncpg.PostgresError) as fresh:  # a new statement knows it is gone
                await conn.fetch(sql, 6)
            assert fresh.value.sqlstate == "42883"
            return after
        finally:
            await conn.close()

    after = run_async(body())
    print(f"\nprepared statement after DROP MODEL: {after}")
    if after[0] == "rows":
        assert after[1] == (6, expected[6])
    else:
        assert after[1] in ("42883", "55000", "26000", "0A000"), after


PGBENCH_SCRIPT = """\\set id random(1, 500)
SELECT id, predict_price(rooms, area, city) FROM houses WHERE id = :id;
"""


@pytest.mark.parametrize("mode", ["prepared", "extended", "simple"])
def test_pgbench_custom_script(suite, tmp_path, mode):
    script = tmp_path / "predict.sql"
    script.write_text(PGBENCH_SCRIPT)
    processed, tps = pgbench(suite.proxy, script, mode)
    print(f"\npgbench -M {mode}: {processed} transactions, tps {tps}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["simple-text", "extended-binary"])
def test_wide_rows_cut_by_every_read(suite, mode):
    """Rows of every width around a read's size, cut anywhere by the reads (a cut
    row is read again whole with the next chunk, up to 8 kB; wider ones are
    assembled by the framer), each with its prediction next to its own columns."""
    sql = ("SELECT h.id, repeat(md5(h.id::text), w) AS pad, predict_price(rooms, area, city), w "
           "FROM houses h, LATERAL (SELECT CASE WHEN h.id % 50 = 0 THEN 6000 + h.id "
           "WHEN h.id % 7 = 0 THEN 1900 + h.id ELSE (h.id * 37) % 300 END AS w) s ORDER BY h.id")
    with suite.direct() as d:
        expected = suite.price.by_id(d, "SELECT id, rooms, area, city FROM houses")
        pads = {i: (w, p) for i, w, p in d.execute(
            "SELECT h.id, w, md5(h.id::text) FROM houses h, LATERAL (SELECT CASE WHEN h.id % 50 = 0 "
            "THEN 6000 + h.id WHEN h.id % 7 = 0 THEN 1900 + h.id ELSE (h.id * 37) % 300 END AS w) s")}
    with suite.connect() as conn:
        rows = fetch(conn, sql, mode)
        assert [r[0] for r in rows] == sorted(expected)
        for row_id, pad, price, width in rows:
            assert width == pads[row_id][0] and pad == pads[row_id][1] * width, row_id
            assert price == expected[row_id], row_id
        assert min(len(r[1]) for r in rows) < 1 << 13 < max(len(r[1]) for r in rows)  # both sides of the limit
        assert_usable(conn, f"SELECT {CALL} FROM customers WHERE id = 7")


@pytest.mark.timeout(120)
def test_wide_rows_stream_with_bounded_proxy_memory(suite):
    """A batch is bounded in bytes as well as in rows: 256 MB of 64 kB rows stream
    through with their predictions while the proxy's memory stays small."""
    sql = ("SELECT h.id, repeat(chr(65 + g), 65536) AS pad, predict_price(rooms, area, city) "
           "FROM houses h, generate_series(0, 7) g ORDER BY g, h.id")
    with suite.direct() as d:
        expected = suite.price.by_id(d, "SELECT id, rooms, area, city FROM houses")
    with suite.connect() as conn:
        conn.execute("SELECT predict_price(rooms, area, city) FROM houses LIMIT 1")
        with PeakRss(suite.proxy.proc.pid) as rss:
            count = 0
            for row_id, pad, price in conn.cursor(binary=True).stream(sql, size=200):
                assert price == expected[row_id] and pad == chr(65 + count // 500) * 65536
                count += 1
        growth = rss.growth / 2**20
        print(f"\n256 MB of wide rows: proxy RSS {rss.baseline / 2**20:.0f} -> peak {rss.peak / 2**20:.0f} MB")
        assert count == 4000
        # (without the bound in bytes, 16384-row batches of these rows grew it by ~50 MB)
        assert growth < 24, f"proxy memory grew by {growth:.0f} MB"
        assert_usable(conn)
