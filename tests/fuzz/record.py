"""Record the fuzzer's seed sessions: real client traffic, not hand-made bytes.

Each scenario runs a real client (psql, psycopg 3, asyncpg) through a recording TCP
relay in front of a proxy with the fuzz model trained; what the client sent after
its startup packet is written to tests/fuzz/seeds/<name>.bin. Names say how the
oracle compares a session (see tests/fuzz/oracle.py): `model_*` calls the model
(values are not compared), `ml_*` holds ML statements Postgres cannot run (only
the protocol's shape is compared), anything else is compared message by message.

Regenerate with `python -m tests.fuzz.record` (it starts an embedded Postgres of
its own in a temporary directory).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import tempfile
import threading
from pathlib import Path

import asyncpg
import psycopg

from tests.support.clients import client_env, program
from tests.support.servers import start_embedded

from .env import FUNCTION, PROXY_DB, start_env

SEEDS = Path(__file__).with_name("seeds")


class RecordingRelay:
    """A TCP relay to `target` that keeps every byte each client sent."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.streams: list[bytearray] = []
        self.threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            recorded = bytearray()
            self.streams.append(recorded)
            for src, dst, keep in ((client, upstream, recorded), (upstream, client, None)):
                thread = threading.Thread(target=self._pump, args=(src, dst, keep), daemon=True)
                thread.start()
                self.threads.append(thread)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, keep: bytearray | None) -> None:
        try:
            while data := src.recv(65536):
                if keep is not None:
                    keep += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def dsn(self) -> str:
        return (f"host=127.0.0.1 port={self.port} user=postgres dbname={PROXY_DB} "
                "sslmode=disable gssencmode=disable")

    def finish(self) -> bytes:
        """The longest client stream after its startup packet, once all are closed."""
        self.listener.close()
        for thread in self.threads:
            thread.join(10)
        stream = bytes(max(self.streams, key=len))
        length = struct.unpack_from("!I", stream)[0]
        return stream[length:]


# -- scenarios: each takes the relay's dsn/port -------------------------------------
def psql(script: str):
    def run(relay: RecordingRelay) -> None:
        import subprocess
        subprocess.run([program("psql"), "-X", "-At", "-h", "127.0.0.1", "-p", str(relay.port),
                        "-U", "postgres", "-d", PROXY_DB], input=script, text=True,
                       capture_output=True, timeout=60,
                       env=client_env(PGSSLMODE="disable", PGGSSENCMODE="disable"))
    return run


def psycopg_plain(relay: RecordingRelay) -> None:
    with psycopg.connect(relay.dsn(), autocommit=True) as conn:
        conn.execute("SELECT id, name FROM fz_items WHERE id = %s", (3,)).fetchall()
        conn.cursor(binary=True).execute("SELECT id, qty FROM fz_items WHERE id < %s", (4,)).fetchall()
        conn.execute("SELECT %s::text || 'x', %s::int", ("a", 7), prepare=True).fetchall()
        conn.execute("SELECT %s::text || 'x', %s::int", ("b", 8), prepare=True).fetchall()
        try:
            conn.execute("SELECT 1 / %s", (0,))
        except psycopg.errors.DivisionByZero:
            pass
        with conn.transaction():
            conn.execute("SELECT count(*) FROM fz_items").fetchone()


def psycopg_pipeline(relay: RecordingRelay) -> None:
    with psycopg.connect(relay.dsn(), autocommit=True) as conn:
        with conn.pipeline():
            c1 = conn.execute("SELECT id FROM fz_items WHERE id <= %s", (3,))
            c2 = conn.execute("SELECT name FROM fz_items WHERE id = %s", (5,))
            c3 = conn.execute("SELECT %s::int + 1", (41,))
        c1.fetchall(), c2.fetchall(), c3.fetchall()


def psycopg_copy(relay: RecordingRelay) -> None:
    with psycopg.connect(relay.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE fz_copy (a int, b text)")
        with conn.cursor().copy("COPY fz_copy FROM STDIN") as copy:
            for row in ((1, "one"), (2, "two"), (3, None)):
                copy.write_row(row)
        with conn.cursor().copy("COPY fz_copy TO STDOUT") as copy:
            list(copy.rows())
        conn.execute("SELECT count(*) FROM fz_copy").fetchone()


def psycopg_keywords(relay: RecordingRelay) -> None:
    with psycopg.connect(relay.dsn(), autocommit=True) as conn:
        conn.execute("SET search_path = public")
        conn.execute("SET ROLE fuzz_role")
        conn.execute("SELECT current_user, %s::text", ("role",)).fetchall()
        conn.execute("RESET ROLE")
        conn.execute("GRANT SELECT ON fz_items TO fuzz_role")
        conn.execute("SHOW search_path").fetchall()


def model_psycopg_select(relay: RecordingRelay) -> None:
    with psycopg.connect(relay.dsn(), autocommit=True) as conn:
        sql = f"SELECT id, {FUNCTION}(rooms, area) FROM fz_houses WHERE id <= %s ORDER BY id"
        conn.execute(sql, (4,)).fetchall()
        conn.cursor(binary=True).execute(sql, (3,)).fetchall()
        conn.execute(sql, (2,), prepare=True).fetchall()
        conn.execute(sql, (5,), prepare=True).fetchall()


def model_psycopg_where(relay: RecordingRelay) -> None:
    with psycopg.connect(relay.dsn(), autocommit=True) as conn:
        sql = (f"SELECT id FROM fz_houses WHERE {FUNCTION}(rooms, area + %s) > %s "
               "AND id <= 5 ORDER BY id")
        conn.execute(sql, (0.5, -1e9)).fetchall()
        conn.execute(sql, (1.5, -1e9), prepare=True).fetchall()
        conn.execute(sql, (2.5, -1e9), prepare=True).fetchall()


def model_psycopg_pipeline(relay: RecordingRelay) -> None:
    with psycopg.connect(relay.dsn(), autocommit=True) as conn:
        with conn.pipeline():
            c1 = conn.execute(f"SELECT {FUNCTION}(rooms, area) FROM fz_houses WHERE id = %s", (1,))
            c2 = conn.execute(f"SELECT id FROM fz_houses WHERE {FUNCTION}(rooms, area) > %s "
                              "AND id < 4 ORDER BY id", (-1e9,))
            c3 = conn.execute("SELECT %s::int", (9,))
        c1.fetchall(), c2.fetchall(), c3.fetchall()


def model_psycopg_copy(relay: RecordingRelay) -> None:
    """Model statements prepared on the session (rewritten, then parked) around COPY
    FROM STDIN: mutations cut and garble messages inside and after the COPY."""
    with psycopg.connect(relay.dsn(), autocommit=True) as conn:
        select = f"SELECT id, {FUNCTION}(rooms, area) FROM fz_houses WHERE id <= %s ORDER BY id"
        where = (f"SELECT id FROM fz_houses WHERE {FUNCTION}(rooms, area) > %s "
                 "AND id <= 4 ORDER BY id")
        conn.execute(select, (2,), prepare=True).fetchall()
        conn.execute(where, (-1e9,), prepare=True).fetchall()
        conn.execute("CREATE TEMP TABLE fz_copy (a int, b text)")
        with conn.cursor().copy("COPY fz_copy FROM STDIN") as copy:
            for row in ((1, "one"), (2, "two")):
                copy.write_row(row)
        conn.execute(select, (3,), prepare=True).fetchall()
        with conn.cursor().copy("COPY fz_copy FROM STDIN") as copy:
            copy.write_row((3, None))
        conn.execute(where, (-1e9,), prepare=True).fetchall()


def asyncpg_run(body):
    def run(relay: RecordingRelay) -> None:
        async def main():
            conn = await asyncpg.connect(host="127.0.0.1", port=relay.port, user="postgres",
                                         database=PROXY_DB, ssl=False)
            try:
                await body(conn)
            finally:
                await conn.close()
        asyncio.run(main())
    return run


async def _asyncpg_plain(conn) -> None:
    stmt = await conn.prepare("SELECT id, name FROM fz_items WHERE id = $1")
    await stmt.fetch(3)
    await stmt.fetchval(4)
    await conn.execute("CREATE TEMP TABLE fz_a (a int, b text)")
    await conn.executemany("INSERT INTO fz_a VALUES ($1, $2)", [(1, "x"), (2, "y")])
    await conn.fetch("SELECT * FROM fz_a ORDER BY a")


async def _asyncpg_model(conn) -> None:
    stmt = await conn.prepare(f"SELECT id, {FUNCTION}(rooms, area) FROM fz_houses "
                              "WHERE id <= $1 ORDER BY id")
    await stmt.fetch(3)
    where = await conn.prepare(f"SELECT id FROM fz_houses WHERE {FUNCTION}(rooms, area) > $1 "
                               "AND id <= 4 ORDER BY id")
    await where.fetch(-1e9)


SCENARIOS = {
    "psql_simple": psql("SELECT 1;\nSELECT id, name FROM fz_items WHERE id < 4 ORDER BY id;\n"
                        "BEGIN;\nSELECT count(*) FROM fz_items;\nCOMMIT;\nSELECT 1/0;\n"
                        "SELECT 'after error';\n"),
    "psql_copy": psql("CREATE TEMP TABLE fz_copy (a int, b text);\n"
                      "COPY fz_copy FROM STDIN;\n1\tone\n2\ttwo\n\\.\n"
                      "COPY fz_copy TO STDOUT;\nSELECT count(*) FROM fz_copy;\n"),
    "psql_keywords": psql("SET search_path = public;\nSET ROLE fuzz_role;\nSELECT current_user;\n"
                          "RESET ROLE;\nGRANT SELECT ON fz_items TO fuzz_role;\nSHOW search_path;\n"),
    "psycopg_plain": psycopg_plain,
    "psycopg_pipeline": psycopg_pipeline,
    "psycopg_copy": psycopg_copy,
    "psycopg_keywords": psycopg_keywords,
    "asyncpg_plain": asyncpg_run(_asyncpg_plain),
    "model_psql_select": psql(f"SELECT id, {FUNCTION}(rooms, area) FROM fz_houses "
                              "WHERE id <= 5 ORDER BY id;\n"),
    "model_psql_where": psql(f"SELECT id FROM fz_houses WHERE {FUNCTION}(rooms, area) > -1e9 "
                             "AND id <= 5 ORDER BY id;\nSELECT 'after';\n"),
    "model_psycopg_select": model_psycopg_select,
    "model_psycopg_where": model_psycopg_where,
    "model_psycopg_pipeline": model_psycopg_pipeline,
    "model_psycopg_copy": model_psycopg_copy,
    "model_asyncpg": asyncpg_run(_asyncpg_model),
    "ml_psql_show": psql("SHOW MODEL fz_price;\nSHOW MODEL ALL;\nSELECT 'after';\n"),
    "ml_psql_create_drop": psql(
        "CREATE MODEL fz_tmp FROM (SELECT rooms, price FROM fz_houses) TARGET price "
        "FUNCTION fz_tmp_fn PROBLEM_TYPE REGRESSION MODEL_TYPE LINEAR_LEARNER "
        "SETTINGS (MAX_RUNTIME 5);\nDROP MODEL fz_tmp;\nDROP MODEL IF EXISTS fz_gone;\n"),
}


def record(env, names=None) -> dict[str, bytes]:
    out = {}
    for name, scenario in SCENARIOS.items():
        if names and name not in names:
            continue
        relay = RecordingRelay((env.proxy.host, env.proxy.port))
        try:
            scenario(relay)
        except Exception as exc:  # the bytes sent up to the failure are a seed too
            print(f"{name}: the client failed: {exc!r}", file=sys.stderr)
        out[name] = relay.finish()
    return out


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="mlproxy-fuzz-rec-") as tmp:
        pg = start_embedded(Path(tmp) / "pg")
        try:
            env = start_env(pg.uri, Path(tmp) / "data")
            try:
                seeds = record(env, set(argv))
            finally:
                env.proxy.stop()
        finally:
            pg.stop()
    SEEDS.mkdir(exist_ok=True)
    for name, data in seeds.items():
        (SEEDS / f"{name}.bin").write_bytes(data)
        print(f"{name}: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
