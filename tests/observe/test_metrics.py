"""/metrics (--metrics-listen) during a pgbench run relayed by the native pump: the
scrapes parse (prometheus-client's parser), the counters only grow, and once the run
is over the statements and bytes counted for its database are what pgbench did."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from tests.support.clients import client_env, program
from tests.support.metrics import metrics_url, scrape, scraping, value

DATABASE = "observe_bench"
CLIENTS, TRANSACTIONS = 4, 1000


@pytest.fixture(scope="module")
def bench_db(upstream):
    admin = f"host={upstream.host} port={upstream.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    done = subprocess.run([program("pgbench"), "-i", "-s", "1", "-q", "-h", upstream.host,
                           "-p", str(upstream.port), "-U", "postgres", DATABASE],
                          capture_output=True, text=True, timeout=120, env=client_env())
    assert done.returncode == 0, done.stderr
    yield DATABASE
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def test_metrics_off_by_default(proxy):
    assert "metrics on http://" not in proxy.read_log()


def test_pgbench_counted_while_relayed_natively(fresh_proxy, bench_db):
    proxy = fresh_proxy("--metrics-listen", "127.0.0.1:0")
    url = metrics_url(proxy)
    before = scrape(url)
    with scraping(url) as scrapes:
        # -S: one SELECT per transaction, simple protocol (the native pump relays it)
        done = subprocess.run(
            [program("pgbench"), "-n", "-S", "-c", str(CLIENTS), "-j", "2", "-t", str(TRANSACTIONS),
             "-R", str(CLIENTS * TRANSACTIONS),  # paced over about a second: scraped mid-run
             "-h", proxy.host, "-p", str(proxy.port), "-U", "postgres", bench_db],
            capture_output=True, text=True, timeout=120, env=client_env())
    assert done.returncode == 0, done.stderr
    after = scrape(url)
    statements = value(after, "mlproxy_statements_total", database=bench_db) \
        - value(before, "mlproxy_statements_total", database=bench_db)
    # every SELECT, and pgbench's own look at the scale (one statement, its own session)
    assert CLIENTS * TRANSACTIONS <= statements <= CLIENTS * TRANSACTIONS + 2, statements
    assert value(after, "mlproxy_sessions_total", database=bench_db) >= CLIENTS
    received = value(after, "mlproxy_client_received_bytes_total", database=bench_db)
    sent = value(after, "mlproxy_client_sent_bytes_total", database=bench_db)
    assert received > CLIENTS * TRANSACTIONS * 40 and sent > CLIENTS * TRANSACTIONS * 40
    # during the run: sessions held by the pump were seen, and counts only grew
    assert len(scrapes) >= 2
    assert any(value(s, "mlproxy_client_connections", relay="native") > 0 for s in scrapes)
    seen = [value(s, "mlproxy_statements_total", database=bench_db) for s in scrapes]
    assert seen == sorted(seen) and seen[-1] <= value(after, "mlproxy_statements_total", database=bench_db)
    # a scrape in the middle of the run saw part of it (the pump's counts, live)
    first = value(before, "mlproxy_statements_total", database=bench_db)
    assert any(first + CLIENTS < n < first + statements - CLIENTS for n in seen), seen
    assert value(after, "mlproxy_errors_total") == value(before, "mlproxy_errors_total")
    assert value(after, "mlproxy_client_connections") == 0


def test_errors_by_sqlstate_class(fresh_proxy):
    proxy = fresh_proxy("--metrics-listen", "127.0.0.1:0")
    url = metrics_url(proxy)
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        for _ in range(3):
            with pytest.raises(psycopg.errors.UndefinedTable):
                conn.execute("SELECT * FROM no_such_table_here")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0")
    samples = scrape(url)
    assert value(samples, "mlproxy_errors_total", source="upstream", sqlstate_class="42") == 3
    assert value(samples, "mlproxy_errors_total", source="upstream", sqlstate_class="22") == 1


def test_metrics_listen_taken_stops_startup(fresh_proxy):
    proxy = fresh_proxy("--metrics-listen", "127.0.0.1:0")
    port = int(metrics_url(proxy).rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(RuntimeError, match="could not serve metrics"):
        fresh_proxy("--metrics-listen", f"127.0.0.1:{port}")
