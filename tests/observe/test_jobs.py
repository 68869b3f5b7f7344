"""SHOW JOBS (the training queue and running jobs, from the catalog, with progress) and
the training metrics, while two CREATE MODELs share one worker: one runs, one waits."""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.ml.conftest import wait_for_state
from tests.support.clients import run_psql
from tests.support.metrics import metrics_url, scrape, value

DATABASE = "observe_jobs"
TABLE = """
CREATE TABLE pts (id int PRIMARY KEY, a int, b float8, label text);
INSERT INTO pts SELECT g, g % 40, (g * 7) % 13 / 3.0, CASE WHEN g % 40 > 19 THEN 'yes' ELSE 'no' END
  FROM generate_series(1, 240) g;
"""


@pytest.fixture
def jobs_db(upstream):
    admin = f"host={upstream.host} port={upstream.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    with psycopg.connect(admin.replace("dbname=postgres", f"dbname={DATABASE}"), autocommit=True) as conn:
        conn.execute(TABLE)
    yield DATABASE
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def jobs(proxy) -> list[list[str]]:
    done = run_psql(proxy, "-F", "\t", "-c", "SHOW JOBS", db="mlproxy")
    assert done.returncode == 0, done.stderr
    return [line.split("\t") for line in done.stdout.splitlines() if line]


@pytest.mark.timeout(240)
def test_show_jobs_and_training_metrics(fresh_proxy, jobs_db, tmp_path):
    proxy = fresh_proxy("--data-dir", str(tmp_path / "data"), "--workers", "1",
                        "--admin-users", "postgres", "--metrics-listen", "127.0.0.1:0")
    url = metrics_url(proxy)
    with psycopg.connect(proxy.dsn(db=jobs_db), autocommit=True) as conn:
        for name in ("first_model", "second_model"):
            conn.execute(f"CREATE MODEL {name} FROM (SELECT a, b, label FROM pts) TARGET label "
                         f"FUNCTION {name}_fn MODEL_TYPE LINEAR_LEARNER SETTINGS (MAX_RUNTIME 5)")
        seen_running = seen_both = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not seen_both:
            rows = {r[2]: r for r in jobs(proxy)}
            if not rows:
                break
            states = sorted(r[4] for r in rows.values())
            for row in rows.values():
                database, schema, model, owner, state, phase, progress, elapsed, worker, created = row
                assert (database, schema, owner) == (jobs_db, "public", "postgres")
                assert float(elapsed) >= 0 and created
                if state == "running":
                    seen_running = True
                    assert phase and phase != "queued" and worker
            if states == ["queued", "running"]:
                samples = scrape(url)
                seen_both = (value(samples, "mlproxy_training_jobs", state="running") == 1
                             and value(samples, "mlproxy_training_jobs", state="queued") == 1)
            time.sleep(0.1)
        assert seen_running and seen_both
        for name in ("first_model", "second_model"):
            assert wait_for_state(conn, name)["Model State"] == "READY"
    assert jobs(proxy) == []
    samples = scrape(url)
    assert value(samples, "mlproxy_training_jobs_started_total") == 2
    assert value(samples, "mlproxy_training_job_seconds_count", outcome="ready") == 2
    assert value(samples, "mlproxy_training_job_seconds_sum", outcome="ready") > 0
    assert value(samples, "mlproxy_training_jobs") == 0
