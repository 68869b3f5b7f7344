"""psql through the proxy: the client most people will point at it first."""

from __future__ import annotations

import signal
import subprocess
import time

from tests.support.clients import client_env, program, run_psql, wait_until_running


def test_queries_and_multi_statement_string(proxy):
    one = run_psql(proxy, "-c", "SELECT 40 + 2")
    assert (one.returncode, one.stdout) == (0, "42\n")
    # One Query message with three statements: three results, in order.
    many = run_psql(proxy, "-c", "SELECT 1; SELECT 'a' || 'b'; SELECT generate_series(1, 3)")
    assert (many.returncode, many.stdout, many.stderr) == (0, "1\nab\n1\n2\n3\n", "")


def test_copy_in_and_out_a_few_megabytes(proxy, table, tmp_path):
    source = tmp_path / "in.csv"
    lines = [f'{i},"row {i} ünïcode, with comma",{i}.25' for i in range(60_000)]
    source.write_text("\n".join(lines) + "\n")
    assert source.stat().st_size > 2_500_000
    script = f"""
CREATE TABLE {table} (id int PRIMARY KEY, label text, value float8);
\\copy {table} FROM '{source}' WITH (FORMAT csv)
SELECT count(*), sum(id) FROM {table};
\\copy (SELECT * FROM {table} ORDER BY id) TO '{tmp_path / "out.csv"}' WITH (FORMAT csv)
"""
    done = run_psql(proxy, "-v", "ON_ERROR_STOP=1", input=script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["CREATE", "TABLE", "COPY", "60000",
                                   f"60000|{sum(range(60_000))}", "COPY", "60000"]
    same = (tmp_path / "out.csv").read_bytes() == source.read_bytes()
    assert same, "COPY TO output differs from what COPY FROM loaded"


def test_describe_table(proxy, table):
    run_psql(proxy, "-c", f"CREATE TABLE {table} (id bigint PRIMARY KEY, note text NOT NULL)",
             check=True)
    described = run_psql(proxy, "-P", "tuples_only=off", "-c", f"\\d {table}")
    assert described.returncode == 0, described.stderr
    out = described.stdout
    assert f'Table "public.{table}"' in out
    assert "id|bigint||not null|" in out and "note|text||not null|" in out
    assert f'"{table}_pkey" PRIMARY KEY, btree (id)' in out


def test_error_then_recovery(proxy):
    script = """
SELECT 1/0;
SELECT 'after error';
BEGIN;
SELECT * FROM no_such_table_here;
SELECT 'inside aborted';
ROLLBACK;
SELECT 'after rollback';
"""
    done = run_psql(proxy, input=script)
    assert done.returncode == 0
    assert "division by zero" in done.stderr
    assert 'relation "no_such_table_here" does not exist' in done.stderr
    assert "current transaction is aborted" in done.stderr
    assert done.stdout.split() == ["after", "error", "BEGIN", "ROLLBACK", "after", "rollback"]


def test_on_error_stop(proxy):
    script = "SELECT 'first';\nSELECT 1/0;\nSELECT 'never';\n"
    done = run_psql(proxy, "-v", "ON_ERROR_STOP=1", input=script)
    assert done.returncode == 3  # psql: script stopped by an error
    assert done.stdout == "first\n"
    assert "division by zero" in done.stderr


def test_sigint_cancels_running_query(proxy, direct_dsn):
    """psql turns Ctrl-C into a CancelRequest on a new connection, which the proxy
    must deliver to the right backend."""
    psql = subprocess.Popen(
        [program("psql"), "-X", "-At", "-h", proxy.host, "-p", str(proxy.port),
         "-U", "postgres", "-c", "SELECT pg_sleep(30), 'drv-psql-cancel'"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env())
    try:
        wait_until_running(direct_dsn, "drv-psql-cancel")
        sent = time.monotonic()
        psql.send_signal(signal.SIGINT)
        _, err = psql.communicate(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        psql.kill()
    assert "canceling statement due to user request" in err
    assert elapsed < 3, elapsed
