import time, asyncpg
from tests.support.clients import run_async

def test_timing(suite):
    async def body():
        conn = await asyncpg.connect(suite.asyncpg_dsn())
        out = {}
        for name, sql in [("plain", "SELECT id FROM houses WHERE id = $1"),
                          ("streaming", "SELECT id, predict_price(rooms, area, city) FROM houses WHERE id = $1"),
                          ("general", "SELECT id FROM houses WHERE id = $1 AND predict_price(rooms, area, city) > 0")]:
            stmt = await conn.prepare(sql)
            for i in range(20): await stmt.fetch(i + 1)
            t = time.perf_counter(); n = 200
            for i in range(n): await stmt.fetch(i % 400 + 1)
            out[name] = (time.perf_counter() - t) / n * 1e6
        print("\nTIMING us/exec", out)
        await conn.close()
    run_async(body())
