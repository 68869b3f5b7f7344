"""A data directory that is read-only or full: CREATE MODEL answers Postgres' own
error for it (58030 io_error, 53100 disk_full, naming the path and the cause), the
session goes on, no model is left half-created, and training works again once the
directory is writable; `serve` refuses to start on a directory it cannot write.

The tests need mounts (a read-only bind mount, a small tmpfs): chmod does not stop
root, which these tests may run as. Without the privilege to mount, they are
skipped with the reason (shown by -ra), never passed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.ml.conftest import wait_for_state
from tests.support.servers import start_proxy


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here (mount {' '.join(args)}): {result.stderr.strip()} "
                    "- the storage error tests need a read-only bind mount / tmpfs")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=True)


@contextlib.contextmanager
def read_only(path: Path):
    """`path` read-only (a read-only bind mount of itself) for the block's duration."""
    _mount("--bind", str(path), str(path))
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True,
                       capture_output=True)
        yield
    finally:
        _umount(path)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield
    finally:
        _umount(path)


def _fill(directory: Path) -> Path:
    """Fill the file system of `directory` to the last byte; returns the filler."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as out:
        for size in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError:
                pass
    return filler


@pytest.fixture(scope="module")
def points(pg):
    with psycopg.connect(pg.uri, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS storage_points")
        conn.execute("""CREATE TABLE storage_points AS
            SELECT g AS id, (g % 7)::float8 AS a, (g % 5)::float8 AS b,
                   CASE WHEN g % 7 > 3 THEN 'high' ELSE 'low' END AS label
              FROM generate_series(1, 2000) g""")
    yield
    with psycopg.connect(pg.uri, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS storage_points")


def _create_sql(model: str) -> str:
    return (f"CREATE MODEL {model} FROM (SELECT a, b, label FROM storage_points) TARGET label "
            f"FUNCTION predict_{model} SETTINGS (MAX_RUNTIME 3)")


def _assert_nothing_left(conn, pg, model: str) -> None:
    """The session is usable and the model exists nowhere: no catalog row, no stub."""
    assert conn.execute("SELECT 1").fetchone() == (1,)
    assert model not in [r[1] for r in conn.execute("SHOW MODEL ALL").fetchall()]
    with psycopg.connect(pg.uri, autocommit=True) as admin:
        assert admin.execute("SELECT count(*) FROM mlproxy.models WHERE model_name = %s",
                             (model,)).fetchone() == (0,)
        assert admin.execute("SELECT to_regproc(%s)", (f"predict_{model}",)).fetchone() == (None,)


def _trains_again(conn, model: str) -> None:
    conn.execute(_create_sql(model))
    info = wait_for_state(conn, model, timeout=90)
    assert info["Model State"] == "READY", info
    assert conn.execute(f"SELECT predict_{model}(a, b) FROM storage_points WHERE id = 4").fetchone()
    conn.execute(f"DROP MODEL {model}")


@pytest.mark.timeout(180)
def test_read_only_data_directory(pg, points, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    proxy = start_proxy(pg.uri, "--data-dir", str(data_dir))
    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            conn.execute("DROP MODEL IF EXISTS ro_model")
            with read_only(data_dir):
                with pytest.raises(psycopg.Error) as caught:
                    conn.execute(_create_sql("ro_model"))
                assert caught.value.sqlstate == "58030", caught.value
                message = caught.value.diag.message_primary
                assert message.startswith("could not create directory ")
                assert f'"{data_dir}/jobs' in message, message
                assert message.endswith(": Read-only file system"), message
                _assert_nothing_left(conn, pg, "ro_model")
            _trains_again(conn, "ro_model")
        assert proxy.alive()
    finally:
        proxy.stop()


@pytest.mark.timeout(180)
def test_full_data_directory(pg, points, tmp_path):
    data_dir = tmp_path / "full"
    with small_tmpfs(data_dir, "8m"):
        proxy = start_proxy(pg.uri, "--data-dir", str(data_dir))
        try:
            with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                conn.execute("DROP MODEL IF EXISTS full_model")
                filler = _fill(data_dir)
                with pytest.raises(psycopg.Error) as caught:
                    conn.execute(_create_sql("full_model"))
                assert caught.value.sqlstate == "53100", caught.value
                message = caught.value.diag.message_primary
                assert message.startswith(f'could not write to file "{data_dir}/jobs/staging/')
                assert message.endswith('/data.csv": No space left on device'), message
                _assert_nothing_left(conn, pg, "full_model")
                # the failed snapshot left nothing behind
                assert list((data_dir / "jobs" / "staging").iterdir()) == []
                filler.unlink()
                _trains_again(conn, "full_model")
            assert proxy.alive()
        finally:
            proxy.stop()


@pytest.mark.timeout(180)
def test_job_that_cannot_be_put_in_place_unregisters_its_model(pg, points, tmp_path):
    """The snapshot is written, the model registered, and then its job directory
    cannot be created (the database's job directory is read-only): the registration
    is undone, and the client gets the error."""
    data_dir = tmp_path / "data"
    jobs = data_dir / "jobs" / "postgres"
    jobs.mkdir(parents=True)
    proxy = start_proxy(pg.uri, "--data-dir", str(data_dir))
    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            conn.execute("DROP MODEL IF EXISTS placed_model")
            with read_only(jobs):
                with pytest.raises(psycopg.Error) as caught:
                    conn.execute(_create_sql("placed_model"))
                assert caught.value.sqlstate == "58030", caught.value
                message = caught.value.diag.message_primary
                assert message.startswith(f'could not rename file "{data_dir}/jobs/staging/')
                assert f' to "{jobs}/' in message, message
                _assert_nothing_left(conn, pg, "placed_model")
                assert list((data_dir / "jobs" / "staging").iterdir()) == []
            _trains_again(conn, "placed_model")
    finally:
        proxy.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["read-only", "full"])
def test_serve_refuses_a_data_directory_it_cannot_write(pg, tmp_path, kind):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    cmd = [sys.executable, "-m", "proxy", "serve", "--upstream", pg.uri, "--listen", "127.0.0.1:0",
           "--data-dir", str(data_dir)]
    cwd = Path(__file__).resolve().parents[2]
    if kind == "read-only":
        context, cause = read_only(data_dir), "Read-only file system"
    else:
        context, cause = small_tmpfs(data_dir, "64k"), "No space left on device"
    with context:
        if kind == "full":
            _fill(data_dir)
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=cwd,
                                env=os.environ.copy())
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "mlproxy ready" not in result.stdout
    assert f"mlproxy: directory {data_dir} is not writable: could not " in result.stderr
    assert f'"{data_dir}/' in result.stderr and cause in result.stderr, result.stderr


@pytest.mark.timeout(180)
def test_disk_full_during_training(pg, points, tmp_path):
    """The snapshot is written, then the disk fills up before the worker writes
    anything: the model ends FAILED saying which file could not be written and why,
    the job's directory is gone, and the next model trains once there is space."""
    data_dir = tmp_path / "full"
    with small_tmpfs(data_dir, "8m"):
        proxy = start_proxy(pg.uri, "--data-dir", str(data_dir))
        try:
            with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
                conn.execute("DROP MODEL IF EXISTS starved_model")
                conn.execute(_create_sql("starved_model"))
                filler = _fill(data_dir)
                info = wait_for_state(conn, "starved_model", timeout=60)
                assert info["Model State"] == "FAILED", (info, proxy.read_log()[-3000:])
                reason = info["Failure Reason"]
                assert reason.startswith(f'could not write to file "{data_dir}/jobs/'), reason
                assert reason.endswith(": No space left on device"), reason
                assert conn.execute("SELECT 1").fetchone() == (1,)
                conn.execute("DROP MODEL starved_model")
                assert list((data_dir / "jobs" / "postgres").iterdir()) == []
                filler.unlink()
                _trains_again(conn, "starved_model")
            assert proxy.alive()
            assert "Task exception was never retrieved" not in proxy.read_log()
        finally:
            proxy.stop()
