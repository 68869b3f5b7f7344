"""asyncpg through the proxy: extended protocol only, binary formats throughout,
pipelined executemany, portals with row limits, COPY both ways, a pool."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
from decimal import Decimal

import asyncpg
import pytest

from tests.support.clients import run_async as run


@contextlib.asynccontextmanager
async def connected(proxy):
    conn = await asyncpg.connect(proxy.dsn(), timeout=10)
    try:
        yield conn
    finally:
        await conn.close()


def test_prepared_statements(proxy):
    async def body():
        async with connected(proxy) as conn:
            stmt = await conn.prepare("SELECT $1::int + $2::int AS total, $3::text AS label")
            assert [p.name for p in stmt.get_parameters()] == ["int4", "int4", "text"]
            assert [a.name for a in stmt.get_attributes()] == ["total", "label"]
            for i in range(20):
                assert await stmt.fetchrow(i, 100, f"n{i}") == (i + 100, f"n{i}")
            # Statement cache: the same text is prepared once, under asyncpg's name.
            for i in range(5):
                assert await conn.fetchval("SELECT $1::bigint * 2", i) == i * 2
            count = await conn.fetchval(
                "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '__asyncpg%'")
            assert count >= 2
    run(body())


def test_binary_round_trip_of_typed_values(proxy):
    values = (
        Decimal("-12345678901234567890.123456789"),
        dt.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=dt.timezone.utc),
        [[1, 2], [3, None]],
        json.dumps({"k": ["v", 1, None], "ü": True}),
        bytes(range(256)) * 4,
        ["a", "b c", "", None],
        dt.date(1999, 12, 31),
    )

    async def body():
        async with connected(proxy) as conn:
            row = await conn.fetchrow(
                "SELECT $1::numeric, $2::timestamptz, $3::int[], $4::jsonb, $5::bytea, "
                "$6::text[], $7::date", *values)
            assert tuple(row) == values[:3] + (row[3],) + values[4:]
            assert json.loads(row[3]) == json.loads(values[3])
            # Values that were produced by the server, not echoed back.
            made = await conn.fetchrow(
                "SELECT 10::numeric ^ 30, '-infinity'::timestamptz, "
                "array_agg(i) FROM generate_series(1, 1000) i")
            assert made[0] == Decimal(10) ** 30
            assert made[2] == list(range(1, 1001))
    run(body())


def test_executemany(proxy, table):
    async def body():
        async with connected(proxy) as conn:
            await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v text)")
            await conn.executemany(f"INSERT INTO {table} VALUES ($1, $2)",
                                   [(i, f"v{i}") for i in range(2000)])
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 2000
    run(body())


def test_error_in_middle_of_pipeline_then_recovery(proxy, table):
    """executemany pipelines every Bind/Execute before one Sync: a row failing in
    the middle must abort the whole batch and leave the session usable."""
    async def body():
        async with connected(proxy) as conn:
            await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
            rows = [(i,) for i in range(500)] + [(7,)] + [(i,) for i in range(500, 1000)]
            with pytest.raises(asyncpg.UniqueViolationError) as failed:
                await conn.executemany(f"INSERT INTO {table} VALUES ($1)", rows)
            assert failed.value.sqlstate == "23505"
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0
            await conn.executemany(f"INSERT INTO {table} VALUES ($1)", rows[:10])
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 10
            with pytest.raises(asyncpg.UndefinedTableError):
                await conn.fetch("SELECT * FROM drv_not_there")
            assert await conn.fetchval("SELECT 'usable'") == "usable"
    run(body())


def test_cursor_with_prefetch_in_transaction(proxy):
    """Cursors are portals executed with a row limit: each batch ends in a
    PortalSuspended until the last."""
    query = "SELECT i, md5(i::text) FROM generate_series(1, 5000) i"

    async def body():
        async with connected(proxy) as conn:
            async with conn.transaction():
                ids = [r[0] async for r in conn.cursor(query, prefetch=137)]
                assert ids == list(range(1, 5001))
                cur = await conn.cursor(query)
                assert [r[0] for r in await cur.fetch(10)] == list(range(1, 11))
                assert await cur.forward(100) == 100
                assert (await cur.fetchrow())[0] == 111
            assert await conn.fetchval("SELECT 'after'") == "after"
    run(body())


def test_copy_to_table_from_query_and_records(proxy, table):
    async def body():
        async with connected(proxy) as conn:
            await conn.execute(f"CREATE TABLE {table} (id int, name text, score float8)")
            csv = "".join(f"{i},name {i},{i}.5\n" for i in range(20_000)).encode()
            status = await conn.copy_to_table(table, source=io.BytesIO(csv), format="csv")
            assert status == "COPY 20000"
            status = await conn.copy_records_to_table(
                table, records=[(i, f"rec {i}", None) for i in range(20_000, 25_000)])
            assert status == "COPY 5000"
            out = io.BytesIO()
            status = await conn.copy_from_query(
                f"SELECT * FROM {table} WHERE id < 20000 ORDER BY id", output=out, format="csv")
            assert status == "COPY 20000"
            assert out.getvalue() == csv
            assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE score IS NULL") == 5000
    run(body())


def test_pool_of_twenty(proxy):
    async def body():
        async with asyncpg.create_pool(proxy.dsn(), min_size=20, max_size=20) as pool:
            async def work(i: int) -> int:
                async with pool.acquire() as conn:
                    async with conn.transaction():
                        await conn.execute("SELECT pg_sleep(0.01)")
                        return await conn.fetchval("SELECT $1::int * 3", i)
            results = await asyncio.gather(*(work(i) for i in range(300)))
            assert results == [i * 3 for i in range(300)]
            pids = await asyncio.gather(*(pool.fetchval("SELECT pg_backend_pid()")
                                          for _ in range(100)))
            assert 1 < len(set(pids)) <= 20
    run(body())


def test_timeout_cancels_and_connection_stays_usable(proxy):
    async def body():
        async with connected(proxy) as conn:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(asyncio.TimeoutError):
                await conn.fetchval("SELECT pg_sleep(30)", timeout=0.5)
            assert await conn.fetchval("SELECT 'usable'") == "usable"
            assert loop.time() - started < 3
    run(body())
