"""Running one statement through the proxy under a chosen protocol and result format.

psycopg 3 picks the protocol from the call: `execute(sql)` without parameters and
with text results is a simple Query; in pipeline mode or with binary results it is
an unnamed Parse/Bind/Describe/Execute/Sync; `prepare=True` makes a named prepared
statement (Parse once, then Bind/Execute on each run). asyncpg always prepares
(named statements, binary results) except `execute()` without arguments, which is
a simple Query.
"""

from __future__ import annotations

import re
import subprocess

import psycopg

from tests.support.clients import client_env, program

# (protocol, result format) cells reachable with psycopg; the simple protocol has
# only the text format (Postgres sends binary only for a portal bound that way).
MODES = ("simple-text", "extended-text", "extended-binary", "prepared-text")


def run(conn: psycopg.Connection, sql: str, mode: str) -> psycopg.Cursor:
    """Execute `sql` under `mode`; the cursor holds the result."""
    cur = conn.cursor()
    if mode == "simple-text":
        cur.execute(sql)
    elif mode == "extended-text":
        with conn.pipeline():
            cur.execute(sql)
    elif mode == "extended-binary":
        cur.execute(sql, binary=True)
    elif mode == "prepared-text":
        cur.execute(sql, prepare=True)
    else:
        raise ValueError(mode)
    return cur


def fetch(conn: psycopg.Connection, sql: str, mode: str) -> list[tuple]:
    cur = run(conn, sql, mode)
    return cur.fetchall() if cur.description else []


def assert_usable(conn: psycopg.Connection, probe: str | None = None) -> None:
    """The session still answers, in sync: a plain query and, if given, a model call."""
    assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    if probe is not None:
        assert conn.execute(probe).fetchall()



def pgbench(proxy, script, mode: str) -> tuple[int, str]:
    """Run a pgbench custom script through the proxy for 3 s (4 clients); asserts it
    ran without a failed transaction. (transactions, tps as printed)."""
    done = subprocess.run(
        [program("pgbench"), "-h", proxy.host, "-p", str(proxy.port), "-U", "postgres",
         "-n", "-M", mode, "-c", "4", "-j", "2", "-T", "3", "-f", str(script), "mlsql"],
        capture_output=True, text=True, timeout=60, env=client_env())
    assert done.returncode == 0, done.stderr
    processed = re.search(r"number of transactions actually processed: (\d+)", done.stdout)
    assert processed and int(processed.group(1)) > 0, done.stdout
    assert re.search(r"number of failed transactions: 0\b", done.stdout), done.stdout
    tps = re.search(r"tps = ([\d.]+)", done.stdout)
    return int(processed.group(1)), tps.group(1) if tps else "?"
