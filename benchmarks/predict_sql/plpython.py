"""(e) The in-database alternative a user would otherwise write: PL/Python calling
scikit-learn, the fitted pipeline of (c) pickled into a table and cached per session
(PL/Python's GD), on the same generated rows.

  (e) scalar    SELECT id, predict_plpy(<features>) FROM bench: one Python call and one
                scikit-learn predict per row (what a model function is); timed over the
                first `sample` rows, as it takes hours for 1M rows
  (e) batch     SELECT * FROM predict_plpy_all(): a set-returning function that reads
                the table through a PL/Python cursor and predicts chunks of 10,000 rows
                (the fastest form PL/Python allows), over all rows
  (e) one row   prepared SELECT id, predict_plpy(...) FROM bench WHERE id = $1 against
                the same without the call, straight to Postgres, interleaved

Debian's PL/Python (`postgresql-plpython3-<version>`) builds against the system
Postgres, not against the embedded one (pgserver's, a different major version), so
this part runs on a Postgres of its own from the system binaries, started as the
unprivileged user with the same table (same statement and seed: checked identical on
Postgres 15 and 16, every value; the JSON keeps its sum of y). The server's Python
is the system python3; it imports this interpreter's scikit-learn through PYTHONPATH
(same minor version needed), and OpenMP is limited to one thread (one core, as (c)
and mlproxy predict). Nothing is installed here: without PL/Python the part is
skipped with the command that installs it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import pwd
import random
import shutil
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from benchmarks.passthrough.servers import UNPRIVILEGED_USER, _free_port, _wait_accepting

from . import run as base  # attributes read at call time: run.py imports this module

INSTALL_HINT = "apt-get install postgresql-plpython3-{version} (Debian's PL/Python for the system Postgres)"
CHUNK = 10_000

FUNCTIONS = """
CREATE TABLE plpy_model (name text PRIMARY KEY, model bytea NOT NULL);
CREATE FUNCTION plpy_load_model() RETURNS void AS $$
  if 'bench_model' not in GD:
      import pickle
      import pandas
      row = plpy.execute("SELECT model FROM plpy_model WHERE name = 'bench'")[0]
      GD['bench_model'] = pickle.loads(row['model'])
      GD['pandas'] = pandas
$$ LANGUAGE plpython3u;

CREATE FUNCTION predict_plpy({args}) RETURNS float8 AS $$
  if 'bench_model' not in GD:
      plpy.execute("SELECT plpy_load_model()")
  frame = GD['pandas'].DataFrame([[{names}]], columns={columns!r})
  return float(GD['bench_model'].predict(frame)[0])
$$ LANGUAGE plpython3u STABLE PARALLEL SAFE;

CREATE FUNCTION predict_plpy_all() RETURNS TABLE (id bigint, prediction float8) AS $$
  if 'bench_model' not in GD:
      plpy.execute("SELECT plpy_load_model()")
  model, pandas = GD['bench_model'], GD['pandas']
  cursor = plpy.cursor("SELECT id, {names} FROM bench")
  while True:
      rows = cursor.fetch({chunk})
      if not rows:
          break
      frame = pandas.DataFrame.from_records([dict(r) for r in rows])
      for pair in zip(frame['id'].tolist(), model.predict(frame[{columns!r}]).tolist()):
          yield pair
$$ LANGUAGE plpython3u;
"""


def system_postgres_with_plpython() -> tuple[Path, str] | tuple[None, str]:
    """(bin directory, version) of a system Postgres with PL/Python installed, or
    (None, why not)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: p.parts[-3])
    if not versions:
        return None, "no system Postgres (/usr/lib/postgresql/<version>/bin); apt-get install postgresql"
    for postgres in reversed(versions):
        version = postgres.parts[-3]
        if (postgres.parent.parent / "lib" / "plpython3.so").exists():
            return postgres.parent, version
    version = versions[-1].parts[-3]
    return None, "PL/Python is not installed: " + INSTALL_HINT.format(version=version)


@contextlib.contextmanager
def postgres_server(bindir: Path, work: Path, settings: dict[str, str]) -> Iterator[str]:
    """A throwaway server from `bindir` on a unix socket in `work`; yields its DSN."""
    user = UNPRIVILEGED_USER if os.geteuid() == 0 else None
    pgdata, sockets = work / "pgdata", work / "sockets"
    sockets.mkdir(parents=True)
    if user is not None:
        entry = pwd.getpwnam(user)
        work.chmod(0o755)
        for path in (work, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(site.getsitepackages()), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    subprocess.run([str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   user=user, env=env, check=True, stdout=subprocess.DEVNULL)
    port = _free_port()
    options = [f"-c{k}={v}" for k, v in {**settings, "listen_addresses": "127.0.0.1"}.items()]
    with open(work / "postgres.log", "wb") as log:
        process = subprocess.Popen([str(bindir / "postgres"), "-D", str(pgdata), "-p", str(port), "-k", str(sockets),
                                    *options], user=user, env=env, stdout=log, stderr=log)
    try:
        _wait_accepting("127.0.0.1", port, process, 30)
        dsn = f"host={sockets} port={port} user=postgres dbname=postgres"
        deadline = time.monotonic() + 60
        while True:  # listening comes before accepting sessions ("starting up")
            try:
                psycopg.connect(dsn, connect_timeout=5).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        yield dsn
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(pipeline: Any, rows: int, repeat: int, iterations: int, binary: bool, sample: int = 2_000) -> dict[str, Any]:
    """Part (e) on its own server; a dict for the benchmark's JSON (with "skipped"
    and the reason when PL/Python is unavailable, "failed" when its server or
    functions fail, so parts (a)-(c) are still written)."""
    bindir, version = system_postgres_with_plpython()
    if bindir is None:
        print(f"(e) PL/Python skipped: {version}", flush=True)
        return {"skipped": version}
    try:
        return _run(bindir, version, pipeline, rows, repeat, iterations, binary, sample)
    except (OSError, subprocess.SubprocessError, RuntimeError, psycopg.Error) as exc:
        print(f"(e) PL/Python FAILED: {exc}", flush=True)
        return {"failed": str(exc)}


def _run(bindir: Path, version: str, pipeline: Any, rows: int, repeat: int, iterations: int, binary: bool,
         sample: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="predict-sql-plpy-") as tmp, \
            postgres_server(bindir, Path(tmp), {"max_connections": "20", "shared_buffers": "256MB"}) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION plpython3u")
            base.create_table(conn, rows)
            args = ", ".join([f"{c} float8" for c in base.NUMERIC] + [f"{c} text" for c in base.TEXT])
            conn.execute(FUNCTIONS.format(args=args, names=", ".join(base.FEATURES), columns=base.FEATURES,
                                          chunk=CHUNK))
            conn.execute("INSERT INTO plpy_model VALUES ('bench', %s)", (pickle.dumps(pipeline),))
            checksum = conn.execute("SELECT sum(y), count(*) FROM bench").fetchone()
            # the answers are the pipeline's own (same rows, same pickled model)
            features = ", ".join(base.FEATURES)
            got = conn.execute(f"SELECT predict_plpy({features}) FROM bench ORDER BY id LIMIT 50").fetchall()
            frame = _frame(conn.execute(f"SELECT {features} FROM bench ORDER BY id LIMIT 50").fetchall())
            same = bool(np.allclose([g[0] for g in got], pipeline.predict(frame), rtol=1e-12, atol=0))
        print(f"(e) PL/Python on the system Postgres {version}: scalar function over {min(sample, rows):,} rows, "
              f"batch function over {rows:,} ...", flush=True)
        scalar = []
        batch = []
        for _ in range(repeat):
            seconds, count = base.stream(dsn, f"SELECT id, predict_plpy({', '.join(base.FEATURES)}) FROM bench "
                                         f"WHERE id <= {min(sample, rows)}", binary)
            scalar.append(seconds)
            seconds, count = base.stream(dsn, "SELECT id, prediction FROM predict_plpy_all()", binary)
            assert count == rows, (count, rows)
            batch.append(seconds)
        latency = _latency(dsn, rows, iterations)
    sample_rows = min(sample, rows)
    out = {
        "server": f"system Postgres {version} (Debian), PL/Python, scikit-learn via PYTHONPATH, OMP_NUM_THREADS=1",
        "table_checksum": {"sum_y": float(checksum[0]), "rows": int(checksum[1])},
        "answers_match_pipeline": same,
        "scalar": {"rows": sample_rows, "seconds": scalar, "median": float(np.median(scalar)),
                   "rows_per_second": sample_rows / float(np.median(scalar)),
                   "projected_seconds_for_all_rows": rows * float(np.median(scalar)) / sample_rows},
        "batch": {"rows": rows, "seconds": batch, "median": float(np.median(batch)),
                  "rows_per_second": rows / float(np.median(batch))},
        "latency": latency,
    }
    print(render(out), flush=True)
    return out


def _frame(rows: list) -> Any:
    import pandas as pd

    return pd.DataFrame(rows, columns=base.FEATURES)


def _latency(dsn: str, rows: int, iterations: int) -> dict[str, Any]:
    sqls = {"with_plpython": f"SELECT id, predict_plpy({', '.join(base.FEATURES)}) FROM bench WHERE id = %s",
            "without_model": f"SELECT id, {', '.join(base.FEATURES)} FROM bench WHERE id = %s"}
    rng = random.Random(0)
    samples: dict[str, list[int]] = {name: [] for name in [*sqls, "without_model_other_session"]}
    # the same lookup on a session that never runs Python: a backend that just spent
    # milliseconds in scikit-learn waits longer for a core on a busy machine
    with psycopg.connect(dsn, autocommit=True) as conn, psycopg.connect(dsn, autocommit=True) as other:
        targets = [("with_plpython", conn), ("without_model", conn), ("without_model_other_session", other)]
        for step in range(iterations + 100):
            row_id = rng.randint(1, rows)
            for name, session in targets:
                sql = sqls[name.removesuffix("_other_session")]
                started = time.perf_counter_ns()
                session.execute(sql, (row_id,), prepare=True, binary=True).fetchall()
                if step >= 100:  # the first calls load the model into the session and prepare
                    samples[name].append(time.perf_counter_ns() - started)
    out: dict[str, Any] = {}
    for name, values in samples.items():
        us = np.array(values) / 1000
        out[name] = {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99))}
    out["added_p50_us"] = out["with_plpython"]["p50_us"] - out["without_model"]["p50_us"]
    out["iterations"] = iterations
    return out


def render(e: dict[str, Any]) -> str:
    if "skipped" in e or "failed" in e:
        return f"(e) PL/Python: {'skipped' if 'skipped' in e else 'FAILED'} ({e.get('skipped') or e['failed']})"
    s, b, lat = e["scalar"], e["batch"], e["latency"]
    return "\n".join([
        f"(e) PL/Python + scikit-learn in the database ({e['server']})",
        f"  scalar predict_plpy() per row   {s['rows_per_second']:>10,.0f} rows/s over {s['rows']:,} rows "
        f"(all {b['rows']:,}: ~{s['projected_seconds_for_all_rows']:,.0f} s)",
        f"  batch predict_plpy_all()        {b['rows_per_second']:>10,.0f} rows/s, {b['median']:.2f} s for "
        f"{b['rows']:,} rows",
        f"  one row, prepared: p50 {lat['with_plpython']['p50_us']:.0f} us with the call, "
        f"{lat['without_model']['p50_us']:.0f} us without: {lat['added_p50_us']:.0f} us added "
        f"({lat['without_model_other_session']['p50_us']:.0f} us without on a session that runs no Python)",
        f"  answers equal the pipeline's: {e['answers_match_pipeline']}",
    ])


if __name__ == "__main__":  # pragma: no cover - a manual check of the server setup
    print(system_postgres_with_plpython(), shutil.which("psql"), sys.version)
