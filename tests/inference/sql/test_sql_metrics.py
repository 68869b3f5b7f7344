"""/metrics and the admin console during a pgbench run whose every statement calls a
model: model calls, rows predicted, batch sizes, prediction latencies and statements
with model calls are what the run did. The proxy is one of the test's own (a replica
of the suite's: the catalog in the database is shared), so its counters see only
this run."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.support.clients import client_env, program, run_psql
from tests.support.metrics import metrics_url, scrape, scraping, value
from tests.support.servers import start_proxy

from .conftest import DATABASE

CLIENTS, TRANSACTIONS = 2, 100
SCRIPT = """\\set id random(1, 500)
SELECT id, predict_price(rooms, area, city) FROM houses WHERE id = :id;
"""


@pytest.fixture
def replica(suite, pg, tmp_path):
    process = start_proxy(pg.uri, "--data-dir", str(tmp_path / "data"),
                          "--metrics-listen", "127.0.0.1:0", "--admin-users", "postgres")
    yield process
    process.stop()


@pytest.mark.parametrize("mode", ["simple", "prepared"])
def test_pgbench_model_calls_counted(suite, replica, tmp_path, mode):
    url = metrics_url(replica)
    script = tmp_path / "predict.sql"
    script.write_text(SCRIPT)
    with scraping(url) as scrapes:
        done = subprocess.run(
            [program("pgbench"), "-h", replica.host, "-p", str(replica.port), "-U", "postgres",
             "-n", "-M", mode, "-c", str(CLIENTS), "-j", "2", "-t", str(TRANSACTIONS),
             "-R", str(CLIENTS * TRANSACTIONS),  # paced over about a second: scraped mid-run
             "-f", str(script), DATABASE],
            capture_output=True, text=True, timeout=120, env=client_env())
    assert done.returncode == 0, done.stderr
    assert re.search(r"number of failed transactions: 0\b", done.stdout), done.stdout
    runs = CLIENTS * TRANSACTIONS
    after = scrape(url)
    model = dict(database=DATABASE, schema="public", model="price_model")
    # one single-row batch per statement: one predictor call, one row each
    assert value(after, "mlproxy_model_calls_total", **model) == runs
    assert value(after, "mlproxy_rows_predicted_total", **model) == runs
    assert value(after, "mlproxy_prediction_seconds_count", **model) == runs
    assert 0 < value(after, "mlproxy_prediction_seconds_sum", **model) < runs  # seconds
    assert value(after, "mlproxy_prediction_batch_rows_count", **model) == runs
    assert value(after, "mlproxy_prediction_batch_rows_bucket", le="1.0", **model) == runs
    assert value(after, "mlproxy_model_statement_seconds_count", path="streaming") == runs
    assert value(after, "mlproxy_model_statement_rows_total", path="streaming") == runs
    statements = value(after, "mlproxy_statements_total", database=DATABASE)
    assert runs <= statements <= runs + 2, statements
    assert value(after, "mlproxy_predictors_loaded") == 1
    assert value(after, "mlproxy_errors_total") == 0
    # scraped during the run: the counts grew as it went
    calls = [value(s, "mlproxy_model_calls_total", **model) for s in scrapes]
    assert calls == sorted(calls) and any(0 < n < runs for n in calls), calls
    # the console shows the same
    done = run_psql(replica, "-F", "\t", "-c", "SHOW MODELS", db="mlproxy")
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert [(r[0], r[1], r[2], r[7], r[8]) for r in rows] == [
        (DATABASE, "public", "price_model", str(runs), str(runs))]
    assert rows[0][3] == "numpy" and float(rows[0][9]) > 0 and float(rows[0][10]) > 0  # avg, p99 ms
    done = run_psql(replica, "-F", "\t", "-c", "SHOW STATS", db="mlproxy")
    stats = {r[0]: r for r in (line.split("\t") for line in done.stdout.splitlines())}
    assert stats[DATABASE][4:6] == [str(runs), str(runs)]


@pytest.mark.timeout(300)
def test_build_cache_miss_then_hit(suite, pg, tmp_path):
    """A tree model's native library is built on a replica's first call (a miss; SHOW
    MODELS says native, with its build seconds) and found by the next replica sharing
    the data directory (a hit)."""
    outcomes = []
    for _ in range(2):
        process = start_proxy(pg.uri, "--data-dir", str(tmp_path / "data"),
                              "--metrics-listen", "127.0.0.1:0", "--admin-users", "postgres")
        try:
            url = metrics_url(process)
            done = run_psql(process, "-c", "SELECT predict_churn(age, plan, usage, signup, promo) "
                                           "FROM customers WHERE id <= 10", db=DATABASE)
            assert done.returncode == 0 and len(done.stdout.split()) == 10, done.stderr
            samples = scrape(url)
            outcomes.append((value(samples, "mlproxy_build_cache_lookups_total", result="miss"),
                             value(samples, "mlproxy_build_cache_lookups_total", result="hit")))
            done = run_psql(process, "-F", "\t", "-c", "SHOW MODELS", db="mlproxy")
            rows = [line.split("\t") for line in done.stdout.splitlines()]
            assert [(r[0], r[2], r[7], r[8]) for r in rows] == [(DATABASE, "churn_model", "1", "10")]
            assert rows[0][3].startswith("native")
            assert rows[0][4] == ("miss" if len(outcomes) == 1 else "hit")
            assert float(rows[0][5]) > 0  # the build's seconds, as recorded in the cache
        finally:
            process.stop()
    assert outcomes == [(1, 0), (0, 1)]
