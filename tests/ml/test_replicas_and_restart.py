"""The catalog lives in the database: proxy replicas share models, and a training job
survives the proxy that started it."""

from __future__ import annotations

import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import psycopg

from tests.ml.conftest import wait_for_state
from tests.support.servers import start_proxy


def test_model_created_on_one_proxy_is_ready_on_another(pg, dataset_tables, tmp_path):
    other = start_proxy(pg.uri, "--data-dir", str(tmp_path / "replica"))
    try:
        with psycopg.connect(dataset_tables.dsn(), autocommit=True) as first:
            first.execute("DROP MODEL IF EXISTS shared_model")
            first.execute("CREATE MODEL shared_model FROM (SELECT f0, f1, f2, f3, species FROM iris) "
                          "TARGET species FUNCTION predict_shared SETTINGS (MAX_RUNTIME 6)")
        with psycopg.connect(other.dsn(), autocommit=True) as second:
            info = wait_for_state(second, "shared_model")
            assert info["Model State"] == "READY", info
            second.execute("DROP MODEL shared_model")
        with psycopg.connect(dataset_tables.dsn(), autocommit=True) as first:
            assert "shared_model" not in [r[1] for r in first.execute("SHOW MODEL ALL").fetchall()]
    finally:
        other.stop()


def test_catalog_migration_is_safe_when_proxies_start_together(pg, tmp_path):
    with psycopg.connect(pg.uri, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS race_db")
        admin.execute("CREATE DATABASE race_db")
    proxies = [start_proxy(pg.uri, "--data-dir", str(tmp_path / f"p{i}")) for i in range(3)]
    try:
        conns = [psycopg.connect(p.dsn(db="race_db"), autocommit=True) for p in proxies]
        results: list[object] = []

        def show(conn):
            try:
                results.append(conn.execute("SHOW MODEL ALL").fetchall())
            except Exception as exc:  # noqa: BLE001
                results.append(exc)

        threads = [threading.Thread(target=show, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == [[], [], []], results
        for c in conns:
            c.close()
    finally:
        for p in proxies:
            p.stop()


def test_training_job_resumes_after_proxy_restart(pg, dataset_tables, tmp_path):
    data_dir = tmp_path / "restart"
    proxy = start_proxy(pg.uri, "--data-dir", str(data_dir))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("DROP MODEL IF EXISTS resumed_model")
        conn.execute("CREATE MODEL resumed_model FROM (SELECT f0, f1, f2, f3, species FROM iris) "
                     "TARGET species FUNCTION predict_resumed SETTINGS (MAX_RUNTIME 6)")
    linux = sys.platform.startswith("linux")
    deadline = time.monotonic() + 20
    while linux and not _workers_of(data_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not linux or _workers_of(data_dir), "the training worker did not start"
    time.sleep(0.4)  # (its once-a-second check of the parent is not what must stop it)
    proxy.stop(signal.SIGKILL)  # no goodbye: the job's worker is orphaned mid-training
    # ... and dies with it (PR_SET_PDEATHSIG), so that the restarted proxy's worker
    # is the job's only one (two raced on its files)
    deadline = time.monotonic() + 0.5
    while _workers_of(data_dir) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _workers_of(data_dir)
    restarted = start_proxy(pg.uri, "--data-dir", str(data_dir))
    try:
        with psycopg.connect(restarted.dsn(), autocommit=True) as conn:
            info = wait_for_state(conn, "resumed_model", timeout=120)
            assert info["Model State"] == "READY", info
            conn.execute("DROP MODEL resumed_model")
    finally:
        restarted.stop()


def _workers_of(data_dir: Path) -> list[int]:
    """Live training workers of the proxy whose data directory is `data_dir` (Linux:
    their command lines; zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"proxy.training.worker" in cmdline and any(str(data_dir).encode() in part for part in cmdline):
            found.append(int(entry.name))
    return found


def test_job_without_snapshot_fails_with_reason(pg, dataset_tables, tmp_path):
    data_dir = tmp_path / "lost"
    proxy = start_proxy(pg.uri, "--data-dir", str(data_dir))
    with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
        conn.execute("DROP MODEL IF EXISTS orphan_model")
        conn.execute("CREATE MODEL orphan_model FROM (SELECT f0, f1, species FROM iris) "
                     "TARGET species FUNCTION predict_orphan SETTINGS (MAX_RUNTIME 30)")
    proxy.stop(signal.SIGKILL)
    shutil.rmtree(data_dir / "jobs")
    # make the job look abandoned long ago, as if its proxy never came back
    with psycopg.connect(pg.uri, autocommit=True) as admin:
        admin.execute("UPDATE mlproxy.models SET heartbeat = now() - interval '1 hour' "
                      "WHERE model_name = 'orphan_model'")
    restarted = start_proxy(pg.uri, "--data-dir", str(data_dir))
    try:
        with psycopg.connect(restarted.dsn(), autocommit=True) as conn:
            info = wait_for_state(conn, "orphan_model", timeout=60)
            assert info["Model State"] == "FAILED"
            assert "snapshot is not available" in info["Failure Reason"]
            conn.execute("DROP MODEL orphan_model")
    finally:
        restarted.stop()
