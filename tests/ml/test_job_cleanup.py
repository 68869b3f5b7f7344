"""Nothing of a dropped model stays on disk (issue 14): DROP MODEL of a queued or a
running job removes its directory and is logged as a cancellation of the named
model; a proxy starting on a data directory removes what an earlier process left
(job directories of models no catalog has, unfinished exports)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from tests.support.servers import start_proxy


def _wait(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _job_dirs(data_dir: Path) -> set[str]:
    root = data_dir / "jobs" / "postgres"
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def test_drop_of_a_queued_and_a_running_job_leaves_nothing(pg, tmp_path):
    data_dir = tmp_path / "data"
    proxy = start_proxy(pg.uri, "--data-dir", str(data_dir), "--workers", "1")
    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            conn.execute("DROP MODEL IF EXISTS jc_running")
            conn.execute("DROP MODEL IF EXISTS jc_queued")
            conn.execute("DROP TABLE IF EXISTS jc_data")
            conn.execute("CREATE TABLE jc_data AS SELECT g % 50 AS a, (g * 7) % 13 AS b, (g * 11) % 17 AS c, "
                         "(g % 3 = 0) OR (g % 7 = 1) AS y FROM generate_series(1, 3000) g")
            conn.execute("CREATE MODEL jc_running FROM jc_data TARGET y FUNCTION jc_running_f "
                         "SETTINGS (MAX_RUNTIME 60)")
            conn.execute("CREATE MODEL jc_queued FROM jc_data TARGET y FUNCTION jc_queued_f "
                         "SETTINGS (MAX_RUNTIME 60)")
            ids = dict(conn.execute("SELECT model_name, id::text FROM mlproxy.models "
                                    "WHERE model_name IN ('jc_running', 'jc_queued')").fetchall())
            assert {ids["jc_running"], ids["jc_queued"]} <= _job_dirs(data_dir)
            conn.execute("DROP MODEL jc_queued")
            assert _wait(lambda: ids["jc_queued"] not in _job_dirs(data_dir)), _job_dirs(data_dir)
            assert proxy.wait_for_log("training cancelled by DROP MODEL model=public.jc_queued")
            # the running one: started, then dropped
            assert proxy.wait_for_log("training started model=public.jc_running", timeout=30)
            conn.execute("DROP MODEL jc_running")
            assert _wait(lambda: ids["jc_running"] not in _job_dirs(data_dir)), _job_dirs(data_dir)
            log = proxy.read_log()
            assert "training cancelled" in log and "model=public.jc_running" in log
            assert "exit code -9" not in log and "training failed" not in log
            assert conn.execute("SELECT 'in sync'").fetchone() == ("in sync",)
    finally:
        proxy.stop()
    assert _job_dirs(data_dir) == set()


def test_a_forged_drop_notification_stops_nothing(pg, tmp_path):
    data_dir = tmp_path / "data"
    proxy = start_proxy(pg.uri, "--data-dir", str(data_dir), "--workers", "1")
    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            conn.execute("DROP MODEL IF EXISTS jc_kept")
            conn.execute("DROP TABLE IF EXISTS jc_small")
            conn.execute("CREATE TABLE jc_small AS SELECT (g * 7) % 11 AS a, g % 2 = 0 AS y "
                         "FROM generate_series(1, 200) g")
            conn.execute("CREATE MODEL jc_kept FROM jc_small TARGET y FUNCTION jc_kept_f SETTINGS (MAX_RUNTIME 5)")
            model_id = conn.execute("SELECT id FROM mlproxy.models WHERE model_name = 'jc_kept'").fetchone()[0]
            conn.execute("SELECT pg_notify('mlproxy_models', %s)", (f'{{"event": "dropped", "id": {model_id}}}',))
            deadline = time.monotonic() + 60
            while conn.execute("SELECT state FROM mlproxy.models WHERE id = %s", (model_id,)).fetchone()[0] \
                    == "TRAINING" and time.monotonic() < deadline:
                time.sleep(0.3)
            assert conn.execute("SELECT state FROM mlproxy.models WHERE id = %s",
                                (model_id,)).fetchone() == ("READY",)
            conn.execute("DROP MODEL jc_kept")
    finally:
        proxy.stop()


def test_startup_removes_what_a_crash_left(pg, tmp_path):
    data_dir = tmp_path / "data"
    with psycopg.connect(pg.uri, autocommit=True) as admin:
        catalog = admin.execute("SELECT to_regclass('mlproxy.models') IS NOT NULL").fetchone()[0]
        unused = admin.execute("SELECT coalesce(max(id), 0) + 100000 FROM mlproxy.models").fetchone()[0] \
            if catalog else 100000
    leftover = data_dir / "jobs" / "postgres" / str(unused)
    export = data_dir / "jobs" / "staging" / ("ab" * 16)
    for path in (leftover, export):
        path.mkdir(parents=True)
        (path / "data.csv").write_text("1,2\n")
    proxy = start_proxy(pg.uri, "--data-dir", str(data_dir))
    try:
        if not catalog:  # the sweep looks at databases with a catalog: make one
            with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                conn.execute("DROP MODEL IF EXISTS no_such_model_at_all")  # noqa - creates nothing
        assert _wait(lambda: not export.exists())
        if catalog:
            assert _wait(lambda: not leftover.exists())
            assert proxy.wait_for_log(f"removing the job directory of a dropped model database=postgres id={unused}")
    finally:
        proxy.stop()


def test_killing_a_worker_that_has_ended_is_no_error():
    """A model created and dropped at once: its worker may have ended by the time
    DROP MODEL (or the progress poll) kills it. Once ended, asyncio's kill raises
    ProcessLookupError, which escaped the training task (seen in the fuzzer's logs)."""
    import asyncio
    import sys

    from proxy.training.jobs import _kill

    async def run() -> int:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        await proc.wait()
        _kill(proc)
        return proc.returncode

    assert asyncio.run(run()) == 0
