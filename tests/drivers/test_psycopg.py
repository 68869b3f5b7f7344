"""psycopg 3 (libpq underneath) through the proxy: both result formats, named
cursors, COPY, pipeline mode, prepared statements, notifications, notices, errors."""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors, pq

from tests.support.clients import wait_until_running


@pytest.fixture
def conn(proxy):
    with psycopg.connect(proxy.dsn(), connect_timeout=10) as conn:
        yield conn


def test_text_and_binary_results(conn):
    query = ("SELECT 12345678901::bigint, 3.14159::numeric(10,5), 'héllo'::text, "
             "'\\x00ff'::bytea, '2024-02-29 12:00:00+00'::timestamptz, ARRAY[1, NULL, 3], "
             "'{\"a\": [1, 2]}'::jsonb, NULL::int")
    expected = (12345678901, Decimal("3.14159"), "héllo", b"\x00\xff",
                dt.datetime(2024, 2, 29, 12, tzinfo=dt.timezone.utc), [1, None, 3],
                {"a": [1, 2]}, None)
    for binary, fmt in ((False, pq.Format.TEXT), (True, pq.Format.BINARY)):
        cur = conn.cursor(binary=binary)
        row = cur.execute(query).fetchone()
        assert row == expected
        assert {cur.pgresult.fformat(i) for i in range(cur.pgresult.nfields)} == {fmt}


def test_named_cursor_fetchmany(conn):
    with conn.transaction():
        with conn.cursor(name="drv_named") as cur:
            cur.itersize = 500
            cur.execute("SELECT i, repeat('x', i % 50) FROM generate_series(1, 10000) i")
            seen, batches = 0, 0
            while rows := cur.fetchmany(1234):
                assert rows[0][0] == seen + 1
                seen += len(rows)
                batches += 1
            assert (seen, batches) == (10000, 9)
    assert conn.execute("SELECT 'after cursor'").fetchone() == ("after cursor",)


def test_copy_write_and_rows_out(table, conn):
    conn.execute(f"CREATE TABLE {table} (id int, name text, at date)")
    with conn.cursor() as cur:
        with cur.copy(f"COPY {table} FROM STDIN") as copy:
            for i in range(5000):
                copy.write_row((i, f"name {i}\t\\ tab", dt.date(2024, 1, 1 + i % 28)))
        with cur.copy(f"COPY {table} FROM STDIN") as copy:
            copy.write(b"".join(f"{i}\traw {i}\t2024-03-01\n".encode() for i in range(5000, 6000)))
        with cur.copy(f"COPY (SELECT * FROM {table} ORDER BY id) TO STDOUT") as copy:
            copy.set_types(["int4", "text", "date"])
            rows = list(copy.rows())
        with cur.copy(f"COPY (SELECT id FROM {table}) TO STDOUT (FORMAT BINARY)") as copy:
            copy.set_types(["int4"])
            binary_ids = sorted(r[0] for r in copy.rows())
    assert len(rows) == 6000
    assert rows[7] == (7, "name 7\t\\ tab", dt.date(2024, 1, 8))
    assert rows[-1] == (5999, "raw 5999", dt.date(2024, 3, 1))
    assert binary_ids == list(range(6000))


def test_pipeline_with_a_failing_query(table, conn):
    conn.autocommit = True
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    with conn.pipeline() as pipeline:
        first = conn.execute(f"INSERT INTO {table} VALUES (1), (2) RETURNING id")
        second = conn.execute("SELECT %s::int * 2", (21,))
        pipeline.sync()
        assert first.fetchall() == [(1,), (2,)]
        assert second.fetchone() == (42,)
    # The failing batch is a pipeline of its own that the error leaves: inside one
    # pipeline, psycopg may raise the error before it sends the Sync, and what it
    # sends next is then aborted too (PipelineAborted, as often straight to Postgres).
    with pytest.raises(errors.UniqueViolation):
        with conn.pipeline():
            # One Sync: the three inserts form one implicit transaction.
            conn.execute(f"INSERT INTO {table} VALUES (3)")  # rolled back
            conn.execute(f"INSERT INTO {table} VALUES (1)")  # fails
            conn.execute(f"INSERT INTO {table} VALUES (4)")  # skipped: pipeline aborted
    after = conn.execute(f"SELECT array_agg(id ORDER BY id) FROM {table}")
    assert after.fetchone() == ([1, 2],)


def test_prepared_statements(conn):
    for i in range(10):
        row = conn.execute("SELECT %s::int + %s::int", (i, 1000), prepare=True).fetchone()
        assert row == (i + 1000,)
    names = conn.execute("SELECT name FROM pg_prepared_statements").fetchall()
    assert names, "prepare=True should have left a server-side prepared statement"


def test_transaction_rollback_and_commit(table, conn):
    conn.execute(f"CREATE TABLE {table} (v text)")
    conn.commit()
    conn.execute(f"INSERT INTO {table} VALUES ('rolled back')")
    conn.rollback()
    with conn.transaction():
        conn.execute(f"INSERT INTO {table} VALUES ('kept')")
        with pytest.raises(errors.DivisionByZero):
            with conn.transaction():  # a savepoint
                conn.execute(f"INSERT INTO {table} VALUES ('savepoint')")
                conn.execute("SELECT 1/0")
    assert conn.execute(f"SELECT array_agg(v) FROM {table}").fetchone() == (["kept"],)


def test_listen_notify(proxy, conn):
    conn.autocommit = True
    conn.execute("LISTEN drv_channel")
    with psycopg.connect(proxy.dsn(), autocommit=True) as other:
        other.execute("SELECT pg_notify('drv_channel', 'héllo from afar')")
        other.execute("NOTIFY drv_channel, 'second'")
    received = list(conn.notifies(timeout=5, stop_after=2))
    assert [n.payload for n in received] == ["héllo from afar", "second"]
    assert {n.channel for n in received} == {"drv_channel"}


def test_notice_reaches_handler(conn):
    notices = []
    conn.add_notice_handler(lambda diag: notices.append((diag.severity, diag.message_primary)))
    conn.execute("DO $$BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful'; END$$")
    assert notices == [("NOTICE", "hello 42"), ("WARNING", "careful")]


def test_errors_keep_sqlstate_and_session(table, conn):
    with pytest.raises(errors.UndefinedTable) as undefined:
        conn.execute("SELECT * FROM drv_missing_table")
    assert undefined.value.sqlstate == "42P01"
    assert undefined.value.diag.statement_position == "15"
    conn.rollback()
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    conn.execute(f"INSERT INTO {table} VALUES (1)")
    conn.commit()
    with pytest.raises(errors.UniqueViolation) as duplicate:
        conn.execute(f"INSERT INTO {table} VALUES (1)")
    assert duplicate.value.sqlstate == "23505"
    assert duplicate.value.diag.constraint_name == f"{table}_pkey"
    conn.rollback()
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)


@pytest.mark.parametrize("method", ["cancel", "cancel_safe"])
def test_cancel_from_another_thread(conn, direct_dsn, method):
    marker = f"drv-psycopg-{method}"

    def cancel_once_running() -> None:
        wait_until_running(direct_dsn, marker)
        outcome["sent"] = time.monotonic()
        getattr(conn, method)()

    outcome: dict = {}
    canceller = threading.Thread(target=cancel_once_running)
    canceller.start()
    try:
        with pytest.raises(errors.QueryCanceled) as cancelled:
            conn.execute(f"SELECT pg_sleep(30), '{marker}'")
        returned = time.monotonic()
    finally:
        canceller.join(20)
    assert returned - outcome["sent"] < 2
    assert cancelled.value.sqlstate == "57014"
    conn.rollback()
    assert conn.execute("SELECT 'still usable'").fetchone() == ("still usable",)
