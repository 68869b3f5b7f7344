"""Many clients at once through one proxy process: connections, and cancels.

Needs the upstream to allow well over 200 connections (tests/support/servers.py
raises the embedded Postgres' max_connections to 500).
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import psycopg
import pytest
from psycopg import errors

from tests.support.clients import run_async as run

CONNECTIONS = 200
CANCELS = 100


@pytest.fixture(scope="module")
def roomy_proxy(proxy, direct_dsn):
    with psycopg.connect(direct_dsn) as conn:
        limit = int(conn.execute("SHOW max_connections").fetchone()[0])
    assert limit >= CONNECTIONS + 50, (
        f"upstream max_connections is {limit}: these tests need >= {CONNECTIONS + 50}")
    return proxy


def test_200_concurrent_connections(roomy_proxy):
    async def client(i: int) -> int:
        conn = await asyncpg.connect(roomy_proxy.dsn(), timeout=60)
        try:
            assert await conn.fetchval("SELECT $1::int + 1", i) == i + 1
            rows = await conn.fetch("SELECT g FROM generate_series(1, 100) g")
            assert len(rows) == 100
            async with conn.transaction():
                await conn.execute("CREATE TEMP TABLE t (v int) ON COMMIT DROP")
                await conn.execute("INSERT INTO t SELECT generate_series(1, $1::int)", i + 1)
                assert await conn.fetchval("SELECT count(*) FROM t") == i + 1
            return await conn.fetchval("SELECT pg_backend_pid()")
        finally:
            await conn.close()

    async def body():
        return await asyncio.gather(*(client(i) for i in range(CONNECTIONS)))

    pids = run(body(), timeout=120)
    assert len(set(pids)) == CONNECTIONS  # every client had its own backend at once


def test_100_concurrent_cancels(roomy_proxy, direct_dsn):
    """Every client runs pg_sleep(30) and cancels it: each CancelRequest must reach
    its own backend promptly, and each session must stay usable."""
    all_running = asyncio.Event()

    async def client(i: int) -> float:
        async with await psycopg.AsyncConnection.connect(roomy_proxy.dsn(),
                                                         connect_timeout=60) as conn:
            await conn.execute("SET application_name = 'drv_cancel'")
            query = asyncio.ensure_future(conn.execute(f"SELECT pg_sleep(30), {i}"))
            await all_running.wait()
            sent = time.monotonic()
            await conn.cancel_safe(timeout=10)
            with pytest.raises(errors.QueryCanceled) as cancelled:
                await query
            took = time.monotonic() - sent
            assert cancelled.value.sqlstate == "57014"
            await conn.rollback()
            assert await (await conn.execute("SELECT %s::int", (i,))).fetchone() == (i,)
            return took

    async def sleeping(observer) -> int:
        cur = await observer.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'drv_cancel' "
            "AND state = 'active' AND query LIKE 'SELECT pg_sleep%'")
        return (await cur.fetchone())[0]

    async def body():
        async with await psycopg.AsyncConnection.connect(direct_dsn, autocommit=True) as observer:
            clients = asyncio.gather(*(client(i) for i in range(CANCELS)))
            while await sleeping(observer) < CANCELS:
                await asyncio.sleep(0.05)
            all_running.set()
            delays = await clients
            return delays, await sleeping(observer)

    delays, left = run(body(), timeout=120)
    assert max(delays) < 5, sorted(delays)[-5:]
    assert left == 0
