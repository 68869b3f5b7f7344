"""A fleet: three `mlproxy serve` behind HAProxy (TCP mode) sharing one catalog and one
snapshot store. pgbench runs a script mixing plain statements and model calls through
HAProxy, a model created through one proxy is served by another as soon as it is
READY, and a proxy killed with SIGKILL mid-run loses nothing: the clients that were
on it reconnect through HAProxy and go on (asyncpg clients, since pgbench does not
reconnect), its training job is resumed by another proxy, no model is lost or stuck
in TRAINING, and every prediction equals the offline oracle."""

from __future__ import annotations

import asyncio
import random
import re
import signal
import subprocess
import time

import asyncpg
import psycopg

from tests.inference.sql.oracle import Model
from tests.ml.conftest import wait_for_state
from tests.support.clients import client_env, program
from tests.support.haproxy import start_haproxy
from tests.support.servers import start_proxy

FEATURES = "f0, f1, f2, f3"
PGBENCH_SCRIPT = """
\\set id random(1, 150)
SELECT f0, species FROM iris WHERE id = :id;
SELECT predict_fleet_base(f0, f1, f2, f3) FROM iris WHERE id = :id;
BEGIN;
SELECT count(*) FROM iris WHERE f0 > 5;
END;
"""
RUN_SECONDS = 6.0
CLIENTS = 4
_LOST = (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
         asyncpg.AdminShutdownError, asyncpg.CannotConnectNowError)


def _create(conn, name: str, runtime: int) -> None:
    conn.execute(f"DROP MODEL IF EXISTS {name}")
    conn.execute(f"CREATE MODEL {name} FROM (SELECT {FEATURES}, species FROM iris) TARGET species "
                 f"FUNCTION predict_{name} MODEL_TYPE LINEAR_LEARNER SETTINGS (MAX_RUNTIME {runtime})")


async def _clients(host: str, port: int, expected: dict[int, str], killed: asyncio.Event,
                   stop_at: float) -> list[dict[str, int]]:
    """CLIENTS asyncpg clients through HAProxy: a plain statement and a model call per
    round, each prediction checked; a lost connection is opened again."""

    async def client(k: int) -> dict[str, int]:
        seen = {"rounds": 0, "after_kill": 0, "reconnects": 0}
        rng = random.Random(k)
        conn = None
        while time.monotonic() < stop_at:
            try:
                if conn is None:
                    conn = await asyncpg.connect(host=host, port=port, user="postgres",
                                                 database="postgres", ssl=False, timeout=5)
                i = rng.randint(1, 150)
                assert await conn.fetchval("SELECT count(*) FROM iris WHERE id <= $1", i, timeout=5) == i
                got = await conn.fetchval(f"SELECT predict_fleet_base({FEATURES}) FROM iris WHERE id = $1",
                                          i, timeout=5)
                assert got == expected[i], (i, got, expected[i])
                seen["rounds"] += 1
                if killed.is_set():
                    seen["after_kill"] += 1
            except _LOST:
                seen["reconnects"] += 1
                if conn is not None:
                    conn.terminate()
                conn = None
                await asyncio.sleep(0.05)
        if conn is not None:
            await conn.close()
        return seen

    return await asyncio.gather(*(client(k) for k in range(CLIENTS)))


def test_a_fleet_behind_haproxy_survives_a_killed_proxy(pg, dataset_tables, tmp_path):
    store = tmp_path / "store"
    proxies = [start_proxy(pg.uri, "--data-dir", str(tmp_path / f"p{i}"), "--workers", "1",
                           "--snapshot-store", f"file://{store}", "--job-lease", "2",
                           "--job-sweep", "1") for i in range(3)]
    haproxy = start_haproxy([(p.host, p.port) for p in proxies], tmp_path)
    try:
        # CREATE MODEL through one proxy; another serves its function as soon as READY
        with psycopg.connect(proxies[0].dsn(), autocommit=True) as creator:
            _create(creator, "fleet_base", 2)
        with psycopg.connect(proxies[2].dsn(), autocommit=True) as server, \
                psycopg.connect(pg.uri, autocommit=True) as direct:
            info = wait_for_state(server, "fleet_base", timeout=120)
            assert info["Model State"] == "READY", info
            got = dict(server.execute(f"SELECT id, predict_fleet_base({FEATURES}) FROM iris").fetchall())
            base = Model.from_catalog(direct, "fleet_base", tmp_path / "oracle")
            expected = base.by_id(direct, f"SELECT id, {FEATURES} FROM iris")
            assert got == expected

        # a second model starts training; its proxy is the one killed mid-run
        with psycopg.connect(proxies[1].dsn(), autocommit=True) as creator:
            _create(creator, "fleet_resumed", 4)
        deadline = time.monotonic() + 30
        while not (trainers := [p for p in proxies
                                if "training started model=public.fleet_resumed" in p.read_log()]):
            assert time.monotonic() < deadline, "nobody started training fleet_resumed"
            time.sleep(0.05)
        victim = trainers[0]
        survivors = [p for p in proxies if p is not victim]

        script = tmp_path / "mixed.sql"
        script.write_text(PGBENCH_SCRIPT)
        bench = subprocess.Popen(
            [program("pgbench"), "-n", "-h", haproxy.host, "-p", str(haproxy.port), "-U", "postgres",
             "-c", str(CLIENTS), "-T", str(int(RUN_SECONDS)), "-f", str(script), "postgres"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env())

        async def run() -> list[dict[str, int]]:
            killed = asyncio.Event()
            stop_at = time.monotonic() + RUN_SECONDS

            async def kill_soon() -> None:
                await asyncio.sleep(RUN_SECONDS / 3)
                victim.stop(signal.SIGKILL)
                killed.set()

            results, _ = await asyncio.gather(
                _clients(haproxy.host, haproxy.port, expected, killed, stop_at), kill_soon())
            return results

        results = asyncio.run(run())
        out, err = bench.communicate(timeout=60)
        # pgbench does not reconnect: its clients on the killed proxy abort, the rest go on
        assert bench.returncode in (0, 2), err
        processed = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
        assert processed > 0, out + err
        aborted = re.findall(r"client \d+ aborted in command \d+ .*", err)
        assert all(re.search(r"backend died|connection|server closed|terminat|lost", line) for line in aborted), err
        # every asyncpg client went on after the kill, through another proxy
        assert all(r["after_kill"] > 0 for r in results), results
        assert any(r["reconnects"] > 0 for r in results) or aborted, (results, err)

        # the killed proxy's job is resumed by another: nothing lost or stuck
        with psycopg.connect(f"postgresql://postgres@{haproxy.host}:{haproxy.port}/postgres?sslmode=disable",
                             autocommit=True) as conn, psycopg.connect(pg.uri, autocommit=True) as direct:
            info = wait_for_state(conn, "fleet_resumed", timeout=120)
            assert info["Model State"] == "READY", info
            assert any("taking over training job model=public.fleet_resumed" in p.read_log() for p in survivors)
            states = dict(direct.execute("SELECT model_name, state FROM mlproxy.models WHERE model_name"
                                         " IN ('fleet_base', 'fleet_resumed')").fetchall())
            assert states == {"fleet_base": "READY", "fleet_resumed": "READY"}
            assert direct.execute("SELECT count(*) FROM mlproxy.models WHERE state = 'TRAINING'"
                                  " AND model_name LIKE 'fleet%'").fetchone()[0] == 0
            resumed = Model.from_catalog(direct, "fleet_resumed", tmp_path / "oracle")
            assert dict(conn.execute(f"SELECT id, predict_fleet_resumed({FEATURES}) FROM iris").fetchall()) \
                == resumed.by_id(direct, f"SELECT id, {FEATURES} FROM iris")
            conn.execute("DROP MODEL fleet_base")
            conn.execute("DROP MODEL fleet_resumed")
    finally:
        haproxy.stop()
        for p in proxies:
            if p.alive():
                p.stop()
