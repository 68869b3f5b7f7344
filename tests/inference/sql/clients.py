"""Running one statement through the proxy under a chosen protocol and result format.

psycopg 3 picks the protocol from the call: `execute(sql)` without parameters and
with text results is a simple Query; in pipeline mode or with binary results it is
an unnamed Parse/Bind/Describe/Execute/Sync; `prepare=True` makes a named prepared
statement (Parse once, then Bind/Execute on each run). asyncpg always prepares
(named statements, binary results) except `execute()` without arguments, which is
a simple Query.
"""

from __future__ import annotations

import psycopg

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

