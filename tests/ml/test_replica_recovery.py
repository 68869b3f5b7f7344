"""Replicas that recover: after their upstream dies (or stops) and comes back, proxies
hear about models again, including changes made while they could not listen, and a
recovery sweep that hits a catalog error goes on.

These tests run their own Postgres (tests.support.servers.OwnedPostgres), which they
kill and restart on the same socket; the session's shared `pg` stays up.
"""

from __future__ import annotations

import signal
import time

import psycopg
import pytest

from proxy.catalog.store import Backoff
from tests.ml.conftest import wait_for_state
from tests.support.servers import OwnedPostgres, start_proxy

TRAIN_TABLE = """
DROP TABLE IF EXISTS points;
CREATE TABLE points AS
    SELECT g AS id, (g % 7)::float8 AS a, (g % 5)::float8 AS b,
           CASE WHEN g % 7 > 3 THEN 'high' ELSE 'low' END AS label
      FROM generate_series(1, 200) g;
"""


@pytest.fixture(scope="module")
def upstream():
    server = OwnedPostgres.create()
    server.start()
    server.psql(TRAIN_TABLE)
    yield server
    server.stop()
    server.remove()


def test_backoff_doubles_up_to_its_cap_with_jitter():
    backoff = Backoff(first=0.1, cap=5.0)
    delays = [backoff.delay() for _ in range(12)]
    bounds = [min(5.0, 0.1 * 2 ** i) for i in range(12)]
    assert all(b / 2 <= d <= b for d, b in zip(delays, bounds)), delays
    assert len(set(delays)) > 6  # jittered: replicas do not retry in step
    backoff.reset()
    assert 0.05 <= backoff.delay() <= 0.1


def _create(conn, model: str, function: str) -> None:
    conn.execute(f"CREATE MODEL {model} FROM (SELECT a, b, label FROM points) TARGET label "
                 f"FUNCTION {function} SETTINGS (MAX_RUNTIME 3)")


def _call_within(conn, function: str, seconds: float) -> tuple[str, float]:
    """Call `function` until it answers (the stub answers "can only be evaluated
    through mlproxy" while this proxy does not know the model); returns the answer
    and how long that took."""
    started = time.monotonic()
    while True:
        try:
            row = conn.execute(f"SELECT {function}(a, b) FROM points WHERE id = 4").fetchone()
            return row[0], time.monotonic() - started
        except psycopg.Error as exc:
            if time.monotonic() - started > seconds:
                pytest.fail(f"{function} not callable after {seconds} s: {exc}")
            time.sleep(0.1)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["killed", "stopped"])
def test_replica_hears_of_models_after_upstream_restart(upstream, tmp_path, how):
    a = start_proxy(upstream.uri, "--data-dir", str(tmp_path / "a"))
    b = start_proxy(upstream.uri, "--data-dir", str(tmp_path / "b"))
    model, function = f"after_{how.name.lower()}", f"predict_after_{how.name.lower()}"
    try:
        with psycopg.connect(b.dsn(), autocommit=True) as conn:
            # B knows the database (models loaded, LISTEN open) before the outage
            conn.execute(f"DROP MODEL IF EXISTS {model}")
            assert model not in [r[1] for r in conn.execute("SHOW MODEL ALL").fetchall()]
        upstream.stop(how)
        assert b.wait_for_log("catalog listener lost its connection", timeout=10), b.read_log()
        upstream.start()
        with psycopg.connect(a.dsn(), autocommit=True) as conn:
            _create(conn, model, function)
            assert wait_for_state(conn, model, timeout=60)["Model State"] == "READY"
            expected = conn.execute(f"SELECT {function}(a, b) FROM points WHERE id = 4").fetchone()[0]
        with psycopg.connect(b.dsn(), autocommit=True) as conn:
            answer, _ = _call_within(conn, function, seconds=5)
            assert answer == expected
            conn.execute(f"DROP MODEL {model}")
        assert a.alive() and b.alive()
    finally:
        a.stop()
        b.stop()


@pytest.mark.timeout(180)
def test_changes_made_while_a_replica_cannot_listen_are_not_lost(upstream, tmp_path):
    """B's service identity cannot log in for a while (its LISTEN connection is
    ended and every reconnection refused): a model created and trained meanwhile
    through A is callable through B once B is let in again, with no notification
    sent after that."""
    upstream.psql("DO $$BEGIN CREATE ROLE replica_b SUPERUSER LOGIN; "
                  "EXCEPTION WHEN duplicate_object THEN NULL; END$$;")
    uri_b = upstream.uri.replace("postgres@", "replica_b@")
    a = start_proxy(upstream.uri, "--data-dir", str(tmp_path / "a"))
    b = start_proxy(uri_b, "--data-dir", str(tmp_path / "b"))
    try:
        with psycopg.connect(b.dsn(), autocommit=True) as conn:
            conn.execute("DROP MODEL IF EXISTS missed_model")
            conn.execute("SHOW MODEL ALL")
        upstream.psql("ALTER ROLE replica_b NOLOGIN; SELECT pg_terminate_backend(pid) "
                      "FROM pg_stat_activity WHERE usename = 'replica_b';")
        assert b.wait_for_log("catalog listener lost its connection", timeout=10), b.read_log()
        assert b.wait_for_log("catalog listener cannot connect", timeout=10), b.read_log()
        with psycopg.connect(a.dsn(), autocommit=True) as conn:
            _create(conn, "missed_model", "predict_missed")
            assert wait_for_state(conn, "missed_model", timeout=60)["Model State"] == "READY"
        with psycopg.connect(b.dsn(), autocommit=True) as conn:
            # B's clients are served meanwhile, with what B knew; what needs the
            # catalog is refused at once with the reason, and the session goes on
            assert conn.execute("SELECT 1").fetchone() == (1,)
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as caught:
                _create(conn, "refused_model", "predict_refused")
            assert 'the model catalog of database "postgres" is not available' in str(caught.value)
            assert 'role "replica_b" is not permitted to log in' in str(caught.value)
            assert conn.execute("SELECT 2").fetchone() == (2,)
            upstream.psql("ALTER ROLE replica_b LOGIN;")
            _call_within(conn, "predict_missed", seconds=10)
            conn.execute("DROP MODEL missed_model")
        assert "re-reading the catalog" in b.read_log()
    finally:
        a.stop()
        b.stop()


@pytest.mark.timeout(180)
def test_recovery_sweep_goes_on_after_a_catalog_error(upstream, tmp_path):
    """A TRAINING model abandoned by a killed proxy (no snapshot anywhere, no
    heartbeat for an hour) is failed by another proxy's sweep, even though that
    sweep's query failed first (a catalog column renamed away for a while)."""
    creator = start_proxy(upstream.uri, "--data-dir", str(tmp_path / "creator"))
    with psycopg.connect(creator.dsn(), autocommit=True) as conn:
        conn.execute("DROP MODEL IF EXISTS abandoned_model")
        conn.execute("CREATE MODEL abandoned_model FROM (SELECT a, b, label FROM points) "
                     "TARGET label FUNCTION predict_abandoned SETTINGS (MAX_RUNTIME 30)")
    creator.stop(signal.SIGKILL)
    # as if it was an hour ago: the job queued and leased then, its proxy last seen then
    # (the sweeper has a data directory of its own: the snapshot is not for it to read)
    upstream.psql("UPDATE mlproxy.models SET heartbeat = now() - interval '1 hour' "
                  "WHERE model_name = 'abandoned_model';"
                  "UPDATE mlproxy.training_proxies SET seen = now() - interval '1 hour' WHERE instance IN"
                  " (SELECT last_owner FROM mlproxy.training_jobs);"
                  "UPDATE mlproxy.training_jobs SET enqueued_at = now() - interval '1 hour',"
                  " lease_until = now() - interval '1 hour';"
                  "ALTER TABLE mlproxy.models RENAME COLUMN job_owner TO job_owner_away;")
    sweeper = start_proxy(upstream.uri, "--data-dir", str(tmp_path / "sweeper"), "--job-sweep", "1")
    try:
        assert sweeper.wait_for_log('column "job_owner" does not exist', timeout=15), sweeper.read_log()
        assert sweeper.wait_for_log("job recovery sweep retries in", timeout=5)
        # several failed sweeps, and the sweep is still there
        time.sleep(1.5)
        assert sweeper.read_log().count('column "job_owner" does not exist') >= 2, sweeper.read_log()
        upstream.psql("ALTER TABLE mlproxy.models RENAME COLUMN job_owner_away TO job_owner;")
        with psycopg.connect(sweeper.dsn(), autocommit=True) as conn:
            info = wait_for_state(conn, "abandoned_model", timeout=15)
            assert info["Model State"] == "FAILED", info
            assert "snapshot is not available" in info["Failure Reason"]
            conn.execute("DROP MODEL abandoned_model")
        assert "Task exception was never retrieved" not in sweeper.read_log()
    finally:
        upstream.psql("DO $$BEGIN ALTER TABLE mlproxy.models RENAME COLUMN job_owner_away "
                      "TO job_owner; EXCEPTION WHEN undefined_column THEN NULL; END$$;")
        sweeper.stop()


@pytest.mark.timeout(180)
def test_training_job_outlives_an_upstream_restart(upstream, tmp_path):
    """The upstream dies while a model trains: the job's worker goes on, its
    progress is not recorded meanwhile, and its outcome is stored once the upstream
    is back (not left to the next sweep, 30 s later, nor lost with a dead task)."""
    proxy = start_proxy(upstream.uri, "--data-dir", str(tmp_path / "trainer"))
    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            conn.execute("DROP MODEL IF EXISTS outage_model")
            conn.execute("CREATE MODEL outage_model FROM (SELECT a, b, label FROM points) "
                         "TARGET label FUNCTION predict_outage SETTINGS (MAX_RUNTIME 6)")
        assert proxy.wait_for_log("training started", timeout=10)
        time.sleep(1.0)
        upstream.stop(signal.SIGKILL)
        assert proxy.wait_for_log("not recorded, the catalog is unreachable", timeout=10), \
            proxy.read_log()
        time.sleep(1.0)
        upstream.start()
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            info = wait_for_state(conn, "outage_model", timeout=20)
            assert info["Model State"] == "READY", info
            assert conn.execute("SELECT predict_outage(a, b) FROM points WHERE id = 4").fetchone()
            conn.execute("DROP MODEL outage_model")
        assert "Task exception was never retrieved" not in proxy.read_log()
    finally:
        proxy.stop()
