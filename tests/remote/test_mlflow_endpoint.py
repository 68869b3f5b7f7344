"""A remote model served by MLflow's scoring server, a real model server from PyPI.

The test trains a scikit-learn pipeline (imputer + linear regression), saves it
with MLflow, and runs `mlflow models serve --env-manager local` once for the module
(it takes half a minute to start here). MLflow reads text/csv with
pandas.read_csv, so it needs a header line: the operator marks the endpoint
`mlflow+http://...` and the proxy sends the function's argument names (arg1, ...)
first; MLflow answers JSON, {"predictions": [...]}.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import psycopg
import pytest

from tests.support.servers import psql, start_proxy

pytest.importorskip("mlflow", reason="mlflow is a test dependency (pip install '.[test]')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _features(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(0, 10, n), rng.normal(5, 2, n)])


@pytest.fixture(scope="module")
def mlflow_model(tmp_path_factory):
    """(fitted pipeline, URL of the MLflow server scoring it)."""
    import pandas as pd
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    X = pd.DataFrame(_features(400, 1), columns=["arg1", "arg2"])
    y = 3.0 * X.arg1 - 2.0 * X.arg2 + np.random.default_rng(2).normal(0, 0.1, len(X)) + 7
    model = make_pipeline(SimpleImputer(), LinearRegression()).fit(X, y)
    path = tmp_path_factory.mktemp("mlflow") / "model"
    mlflow.sklearn.save_model(model, str(path), signature=infer_signature(X, y),
                              skops_trusted_types=["numpy.dtype"])  # (the imputer keeps a dtype)
    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    mlflow = shutil.which("mlflow", path=bin_dir) or "mlflow"
    log = open(path.parent / "serve.log", "wb")
    # (its backend runs `exec uvicorn` in a shell: the environment's bin first, so
    # that a run of this interpreter without its venv activated finds it too)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    server = subprocess.Popen([mlflow, "models", "serve", "-m", str(path), "--env-manager", "local",
                               "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url + "/ping", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail("mlflow models serve did not start: "
                        + (path.parent / "serve.log").read_text(errors="replace")[-2000:])
        time.sleep(0.5)
    yield model, url
    os.killpg(server.pid, signal.SIGTERM)  # its own session: the server and its workers
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    log.close()


@pytest.fixture(scope="module")
def mlflow_proxy(pg, mlflow_model):
    _, url = mlflow_model
    process = start_proxy(pg.uri, "--endpoint", f"houses=mlflow+{url}", "--endpoint", f"plain={url}")
    yield process
    process.stop()


def test_mlflow_scoring_server(mlflow_proxy, mlflow_model):
    import pandas as pd

    model, _ = mlflow_model
    X = _features(300, 7)
    X[::10, 1] = np.nan  # NULL: an empty CSV field, NaN for pandas, imputed by the pipeline
    expected = model.predict(pd.DataFrame(X, columns=["arg1", "arg2"]))
    values = ", ".join(f"({i}, {float(a)!r}::float8, {'NULL' if np.isnan(b) else repr(float(b))}::float8)"
                       for i, (a, b) in enumerate(X))
    with psycopg.connect(mlflow_proxy.dsn(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS rm_houses")
        conn.execute(f"CREATE TABLE rm_houses AS SELECT * FROM (VALUES {values}) AS v(id, a, b)")
        for name in ("rm_mlflow", "rm_mlflow_super", "rm_mlflow_plain"):
            conn.execute(f"DROP MODEL IF EXISTS {name}")
        conn.execute("CREATE MODEL rm_mlflow FUNCTION rm_price (float8, float8) RETURNS float8 "
                     "SAGEMAKER 'houses' IAM_ROLE default SETTINGS (MAX_BATCH_ROWS 64)")
        conn.execute("CREATE MODEL rm_mlflow_super FUNCTION rm_price_doc (float8, float8) RETURNS SUPER "
                     "SAGEMAKER 'houses'")
        try:
            for binary in (False, True):  # streaming path, extended protocol
                rows = conn.execute("SELECT id, rm_price(a, b) FROM rm_houses ORDER BY id",
                                    binary=binary).fetchall()
                assert [i for i, _ in rows] == list(range(300))
                np.testing.assert_allclose([v for _, v in rows], expected, rtol=1e-12)
            # general path, prepared
            for limit in (50.0, 0.0):
                count = conn.execute("SELECT count(*) FROM rm_houses WHERE rm_price(a, b) > %s",
                                     (limit,), prepare=True).fetchone()[0]
                assert count == int((expected > limit).sum())
            doc = conn.execute("SELECT rm_price_doc(a, b) FROM rm_houses WHERE id = 3").fetchone()[0]
            assert doc == pytest.approx(expected[3], rel=1e-12)
            # simple protocol
            out = psql(mlflow_proxy.host, mlflow_proxy.port, "SELECT rm_price(a, b) FROM rm_houses ORDER BY id")
            np.testing.assert_allclose([float(v) for v in out.stdout.split()], expected, rtol=1e-12)
            # without the header MLflow takes the first row for one: its error is the statement's
            conn.execute("CREATE MODEL rm_mlflow_plain FUNCTION rm_price_plain (float8, float8) RETURNS float8 "
                         "SAGEMAKER 'plain'")
            with pytest.raises(psycopg.Error) as info:
                conn.execute("SELECT rm_price_plain(a, b) FROM rm_houses").fetchall()
            assert info.value.sqlstate == "38000" and "HTTP 400" in str(info.value)
            assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            for name in ("rm_mlflow", "rm_mlflow_super", "rm_mlflow_plain"):
                conn.execute(f"DROP MODEL IF EXISTS {name}")
            conn.execute("DROP TABLE rm_houses")
