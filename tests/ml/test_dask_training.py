"""Training on a Dask cluster (`--training-cluster`): a dask.distributed LocalCluster
of two worker processes (one thread each) that the test starts; no mocks.

- through the proxy: CREATE MODEL trains its search on the cluster, the XGBoost
  winner's final fit runs with xgboost.dask on several row partitions, the model's
  quality is within noise of local training at the same budget, and predictions
  through SQL equal the offline predictor of the stored artifact;
- a cluster worker SIGKILLed mid-search: the search goes on without it;
- the cluster lost mid-job: retried on the local worker with the fallback, else
  FAILED with the reason (never stuck);
- a scheduler that does not answer: `serve` stops at startup saying so, or starts
  with the fallback.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psycopg
import pyarrow as pa
import pytest

from tests.ml.conftest import wait_for_state
from tests.support.servers import start_proxy

distributed = pytest.importorskip("distributed")

ROWS = 12_000  # selection part ~9.6k rows: the final fit is cut into 4 partitions (2 per worker)
BUDGET = 10
# AUTO OFF: one configuration, so the comparison with local training measures the
# partitioned fit, not how many trials a loaded machine ran in the budget
XGB = "MODEL_TYPE XGBOOST AUTO OFF HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '40', MAX_DEPTH '4')"


def _table(rows: int = ROWS, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 6))
    y = X[:, 0] + X[:, 1] * X[:, 2] - 0.5 * X[:, 3] + rng.normal(0, 0.6, rows) > 0
    return pa.table({**{f"f{i}": X[:, i] for i in range(6)}, "label": y})


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=50) as local:
        # as a long-running cluster is after its first job (or with `dask worker
        # --preload automl.cluster`): the training modules imported
        with distributed.Client(local, set_as_default=False) as client:
            client.run(_preload)
            _warm_xgboost_dask(client)
        yield local


def _warm_xgboost_dask(client) -> None:
    """One tiny xgboost.dask fit: the first on a fresh cluster costs ~15 s here
    (imports on the workers, XGBoost's tracker), once per cluster, not per job."""
    from automl.boosting import XGBModel
    from automl.cluster import fit_xgboost_partitioned

    X = np.random.default_rng(0).normal(size=(400, 2))
    fit_xgboost_partitioned(client, XGBModel({"objective": "binary:logistic"}, 2, 2), X,
                            (X[:, 0] > 0).astype(float), time.monotonic() + 120)


def _preload() -> None:
    import automl.cluster  # noqa: F401
    import automl.train  # noqa: F401
    import xgboost.dask  # noqa: F401


def _within(seconds: float, call):
    """call() in a thread, waited for `seconds` at most: a training that does not
    return fails the test saying where it waits (its thread's stack), never hangs it."""
    import sys
    import traceback

    box: dict = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="training")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        stack = "".join(traceback.format_stack(sys._current_frames()[thread.ident]))
        pytest.fail(f"training did not return within {seconds:g} s; it waits in:\n{stack}")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _worker_pids(client) -> list[int]:
    return sorted(client.run(os.getpid).values())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_create_model_on_the_cluster_through_the_proxy(pg, cluster, tmp_path):
    import automl
    from compiler.artifact import load
    from compiler.predictor import load_predictor

    table = _table()
    proxy = start_proxy(pg.uri, "--data-dir", str(tmp_path / "data"),
                        "--training-cluster", cluster.scheduler_address)
    try:
        assert proxy.wait_for_log("training cluster " + cluster.scheduler_address)
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            cols = [f"f{i}" for i in range(6)]
            conn.execute("DROP TABLE IF EXISTS dask_points")
            conn.execute("CREATE TABLE dask_points (id serial, " + ", ".join(f"{c} float8" for c in cols)
                         + ", label boolean)")
            with conn.cursor().copy(f"COPY dask_points ({', '.join(cols)}, label) FROM STDIN") as copy:
                for row in zip(*(table.column(c).to_pylist() for c in [*cols, "label"])):
                    copy.write_row(row)
            conn.execute("DROP MODEL IF EXISTS dask_model")
            conn.execute(f"CREATE MODEL dask_model FROM (SELECT {', '.join(cols)}, label FROM dask_points) "
                         f"TARGET label FUNCTION dask_predict {XGB} "
                         f"SETTINGS (MAX_RUNTIME {BUDGET}, MAX_CELLS 1000000)")
            info = wait_for_state(conn, "dask_model", timeout=180)
            assert info["Model State"] == "READY", (info, proxy.read_log()[-3000:])
            (artifact, details, metrics), = conn.execute(
                "SELECT artifact, details, metrics FROM mlproxy.models WHERE model_name = 'dask_model'").fetchall()
            report = "\n".join(details["report"])
            assert f"training cluster {cluster.scheduler_address}: trials ran as tasks on 2 workers" in report
            # the workers read the snapshot in the data directory themselves (the job
            # process held only the search's rows and the held-out ones)
            assert "training data read where it is: 12000 rows in 4 partitions" in report, report
            assert "with xgboost.dask on the training cluster (4 row partitions read by its workers)" in report, \
                report
            # predictions through SQL equal the offline predictor of the stored artifact
            rows = conn.execute(f"SELECT {', '.join(cols)}, dask_predict({', '.join(cols)}) FROM dask_points "
                                "ORDER BY id").fetchall()
        predictor = load_predictor(load(bytes(artifact)), tmp_path / "oracle-cache", build=False)
        columns = {c: np.array([r[i] for r in rows]) for i, c in enumerate(cols)}
        assert [r[-1] for r in rows] == predictor.predict(columns).tolist()
        # quality within noise of local training at the same budget (held-out F1)
        local = automl.train(table, {"target": "label", "model_type": "XGBOOST", "auto": False,
                                     "hyperparameters": {"NUM_ROUND": "40", "MAX_DEPTH": "4"},
                                     "max_runtime": BUDGET})
        assert abs(metrics["f1"] - local.metrics["f1"]) < 0.03, (metrics, local.metrics)
    finally:
        proxy.stop()


@pytest.mark.dask_full
def test_a_table_beyond_the_sample_through_the_proxy(pg, cluster, tmp_path, request):
    """MAX_CELLS raised past the search's sample (2M cells): CREATE MODEL streams the
    export into a Parquet snapshot of several row groups and checks a sample of it;
    the workers read the partitions, the search runs on the sample, the XGBoost final
    fit on every non-test row; SQL predictions equal the offline predictor."""
    if not (request.config.getoption("--dask-full") or os.environ.get("MLPROXY_DASK_FULL")):
        pytest.skip("a 3.5M-cell table (~1 min here): run with --dask-full or MLPROXY_DASK_FULL=1")
    from compiler.artifact import load
    from compiler.predictor import load_predictor

    rows = 500_000  # 3.5M cells of 7 columns: the sample (2M cells) is about 57 % of them
    cols = [f"f{i}" for i in range(6)]
    proxy = start_proxy(pg.uri, "--data-dir", str(tmp_path / "data"),
                        "--training-cluster", cluster.scheduler_address)
    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS dask_big")
            # generated by Postgres itself: a reproducible table of 8 columns (id too)
            conn.execute("CREATE TABLE dask_big AS SELECT g AS id, "
                         + ", ".join(f"sin(g * {i + 1}.37) + cos(g * {i + 3}.11) AS f{i}" for i in range(6))
                         + ", (sin(g * 1.37) + cos(g * 3.11)) * (sin(g * 2.37) + cos(g * 4.11)) "
                           "+ sin(g * 0.013) > 0 AS label "
                           f"FROM generate_series(1, {rows}) AS g")
            conn.execute("DROP MODEL IF EXISTS dask_big_model")
            conn.execute(f"CREATE MODEL dask_big_model FROM (SELECT {', '.join(cols)}, label FROM dask_big) "
                         f"TARGET label FUNCTION dask_big_predict {XGB} "
                         f"SETTINGS (MAX_RUNTIME 60, MAX_CELLS 4000000)")
            info = wait_for_state(conn, "dask_big_model", timeout=300)
            assert info["Model State"] == "READY", (info, proxy.read_log()[-3000:])
            (artifact, details), = conn.execute(
                "SELECT artifact, details FROM mlproxy.models WHERE model_name = 'dask_big_model'").fetchall()
            report = "\n".join(details["report"])
            assert f"training data read where it is: {rows} rows in" in report, report
            assert "the search ran on a sample of" in report, report
            assert "non-test rows of the snapshot with xgboost.dask" in report, report
            sample = conn.execute(f"SELECT {', '.join(cols)}, dask_big_predict({', '.join(cols)}) FROM dask_big "
                                  "WHERE id % 97 = 0 ORDER BY id").fetchall()
        predictor = load_predictor(load(bytes(artifact)), tmp_path / "oracle-cache", build=False)
        columns = {c: np.array([r[i] for r in sample]) for i, c in enumerate(cols)}
        assert [r[-1] for r in sample] == predictor.predict(columns).tolist()
    finally:
        proxy.stop()


def _mixed_table(rows: int, seed: int = 3) -> pa.Table:
    """Numbers with NULLs, a text column with NULLs, a text target of 3 classes."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 3))
    cat = rng.integers(0, 4, rows)
    score = X[:, 0] + 0.8 * X[:, 1] * X[:, 2] + (cat == 2) - 0.7 * (cat == 0) + rng.normal(0, 0.5, rows)
    label = np.where(score < -0.5, "low", np.where(score < 0.7, "mid", "high")).astype(object)
    label[rng.random(rows) < 0.02] = None  # NULL targets: left out everywhere
    f0 = X[:, 0].copy()
    f0[rng.random(rows) < 0.05] = np.nan
    return pa.table({"f0": pa.array(f0, from_pandas=True), "f1": X[:, 1], "f2": X[:, 2],
                     "c": pa.array(np.array(["a", "b", "c", None], dtype=object)[cat], pa.string()),
                     "label": pa.array(label, pa.string())})


def test_the_workers_read_the_snapshot_and_the_search_runs_on_a_sample(cluster, tmp_path, monkeypatch):
    """A snapshot larger than the search's sample: the job process gets only the
    sample and the held-out rows (drawn on the workers); the XGBoost final fit reads
    every other row on the workers, preprocessed there with the sample's spec."""
    import pyarrow.parquet as pq

    import automl
    from automl.partitioned import ParquetData, Plan, row_uniforms
    from automl.validation import MAX_TEST_ROWS, TEST_FRACTION

    rows = 9000
    table = _mixed_table(rows)
    path = tmp_path / "data.parquet"
    pq.write_table(table, path, row_group_size=1000)
    monkeypatch.setattr("automl.partitioned.SAMPLE_CELLS", 2000 * table.num_columns)  # ~2000 rows
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        model = automl.train(ParquetData(str(path)), {"target": "label", "model_type": "XGBOOST", "auto": False,
                                                      "hyperparameters": {"NUM_ROUND": "30", "MAX_DEPTH": "4"},
                                                      "max_runtime": BUDGET}, cluster=client)
    report = "\n".join(model.report)
    plan = Plan.make(rows, table.num_columns, 0, 2, TEST_FRACTION, MAX_TEST_ROWS)
    u = row_uniforms(0, 0, rows)
    known = table.column("label").is_valid().to_numpy(zero_copy_only=False)
    sample = int(((u >= plan.test_share) & (u < plan.test_share + plan.sample_share) & known).sum())
    test = int(((u < plan.test_share) & known).sum())
    fit = int(((u >= plan.test_share) & known).sum())
    assert 1500 < sample < 2500 and fit > 3 * sample, (sample, fit)
    assert (f"training data read where it is: {rows} rows in 4 partitions read by the cluster's workers; "
            f"the search ran on a sample of {sample} rows") in report, report
    assert f"refit on all {fit} non-test rows of the snapshot with xgboost.dask" in report, report
    assert model.rows_used == fit + test
    assert model.classes == ["high", "low", "mid"] and model.metrics["accuracy"] > 0.7, model.metrics
    # the spec was fitted on the sample; the model predicts the raw columns through it
    spec_inputs = [f["input"] for f in model.preprocessing["features"]]
    assert "c" in spec_inputs and model.preprocessing["features"][spec_inputs.index("c")]["op"] == "ordinal"


def test_workers_that_cannot_read_the_snapshot_get_it_from_the_job(cluster, tmp_path):
    """A store the workers do not share (a path only the job's host has): the job
    reads its own copy and sends the search's data, as before; never a failed job."""
    import pyarrow.parquet as pq

    import automl
    from automl.partitioned import ParquetData

    path = tmp_path / "data.parquet"
    pq.write_table(_table(3000, seed=4), path, row_group_size=1000)
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        model = automl.train(ParquetData(str(tmp_path / "not-shared" / "data.parquet"), local=str(path)),
                             {"target": "label", "model_type": "XGBOOST", "auto": False,
                              "hyperparameters": {"NUM_ROUND": "20"}, "max_runtime": BUDGET}, cluster=client)
    assert "the cluster's workers could not read the snapshot (reading the snapshot failed on the cluster: " \
           "FileNotFoundError" in model.report[0], model.report
    assert any("refit on all" in line and "xgboost.dask" in line for line in model.report), model.report
    assert model.metrics["accuracy"] > 0.75


def test_a_worker_killed_mid_search_the_search_goes_on(cluster):
    import automl

    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        pids = client.run(os.getpid)  # worker address -> pid
        killed: list[int] = []

        def kill_one_mid_trial() -> None:
            # SIGKILL the first worker seen running a trial task (mid-fit)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                for address, keys in client.processing().items():
                    if any("run_trial" in str(key) for key in keys):
                        os.kill(pids[address], signal.SIGKILL)
                        killed.append(pids[address])
                        return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_one_mid_trial)
        killer.start()
        model = _within(4 * BUDGET + 30, lambda: automl.train(_table(4000, seed=1),
                                                              {"target": "label", "max_runtime": BUDGET},
                                                              cluster=client))
        killer.join(70)
        assert not killer.is_alive(), "the killer thread did not end"
        assert killed, "no trial task was seen running"
        # the killed worker's trial re-ran on the other (its input was copied to both)
        assert len(model.leaderboard) >= 2 and not any("trials failed" in line for line in model.report), \
            model.report
        assert model.metrics["accuracy"] > 0.75, model.report
        # the nanny replaced the killed worker: the cluster has two again
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (len(client.nthreads()) < 2 or killed[0] in _worker_pids(client)):
            time.sleep(0.5)
        assert len(client.nthreads()) == 2 and killed[0] not in _worker_pids(client)


@pytest.mark.parametrize("fallback", [False, pytest.param(True, marks=pytest.mark.dask_full)])
def test_cluster_lost_mid_job_retries_locally_or_fails_with_the_reason(monkeypatch, fallback, request):
    from automl.cluster import ClusterLost
    from proxy.training import cluster as policy

    if fallback and not (request.config.getoption("--dask-full") or os.environ.get("MLPROXY_DASK_FULL")):
        pytest.skip("the local retry trains twice (~40 s here): run with --dask-full or MLPROXY_DASK_FULL=1")
    monkeypatch.setattr("automl.cluster.LOST_AFTER", 2.0)
    table = _table(3000, seed=2)
    for fallback in (fallback,):
        local = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=50)
        with distributed.Client(local, set_as_default=False) as client:
            client.run(_preload)
        phases: list[str] = []

        def close_mid_trial(local=local) -> None:
            # scheduler and worker gone while the first trial runs
            with distributed.Client(local.scheduler_address, set_as_default=False) as watcher:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if any("run_trial" in str(k) for keys in watcher.processing().values() for k in keys):
                        break
                    time.sleep(0.05)
            local.close()

        closer = threading.Thread(target=close_mid_trial)
        closer.start()
        spec = {"options": {"target": "label", "max_runtime": BUDGET},
                "training_cluster": {"address": local.scheduler_address, "fallback": fallback}}
        started = time.monotonic()
        try:
            if fallback:
                model = policy.train(table, spec, lambda info: phases.append(info.get("phase")))
                assert "retrying locally" in phases
                assert "lost" in model.report[0] and "trained again on the local worker" in model.report[0]
                assert model.metrics["accuracy"] > 0.75
            else:
                with pytest.raises(ClusterLost) as lost:
                    policy.train(table, spec, lambda info: phases.append(info.get("phase")))
                assert "training cluster" in lost.value.message and "lost" in lost.value.message
                assert "training_cluster_fallback" in lost.value.hint
                assert lost.value.sqlstate == "08006"
        finally:
            closer.join()
        assert time.monotonic() - started < 3 * BUDGET + 20  # never stuck


def test_a_scheduler_that_does_not_answer(pg, tmp_path, monkeypatch):
    import automl
    from automl.cluster import ClusterUnavailable

    monkeypatch.setattr("automl.cluster.CONNECT_TIMEOUT", 2.0)
    address = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(ClusterUnavailable) as exc:
        automl.train(_table(500), {"target": "label", "max_runtime": 5}, cluster=address)
    assert f"training cluster {address} does not answer" in str(exc.value)
    env = {"MLPROXY_TRAINING_CLUSTER": address}
    # the two proxies side by side: each waits the cluster's connect timeout (10 s)
    with ThreadPoolExecutor(2) as pool:
        refusing = pool.submit(start_proxy, pg.uri, "--data-dir", str(tmp_path / "a"), env=env, timeout=60)
        falling_back = pool.submit(start_proxy, pg.uri, "--data-dir", str(tmp_path / "b"),
                                   "--training-cluster-fallback", env=env, timeout=60)
        proxy = falling_back.result()
        try:
            with pytest.raises(RuntimeError) as refused:
                refusing.result()
            text = str(refused.value)
            assert f"training cluster {address} does not answer" in text and "--training-cluster-fallback" in text
            assert proxy.wait_for_log("jobs train on the local workers")
        finally:
            proxy.stop()


def test_the_settings_check_the_cluster_address():
    from proxy.settings import ConfigError, resolve

    ok = resolve({}, {"MLPROXY_TRAINING_CLUSTER": "scheduler:8786"}, None)
    assert ok["training_cluster"].value == "tcp://scheduler:8786"
    assert resolve({"training_cluster": "tls://10.0.0.5:8786"}, {}, None)["training_cluster"].value \
        == "tls://10.0.0.5:8786"
    for bad in ("http://scheduler:8786", "tcp://scheduler", "tcp://:8786", "tcp://scheduler:99999"):
        with pytest.raises(ConfigError, match="training_cluster"):
            resolve({}, {"MLPROXY_TRAINING_CLUSTER": bad}, None)
    with pytest.raises(ConfigError, match="training_cluster_fallback .* needs training_cluster"):
        resolve({}, {"MLPROXY_TRAINING_CLUSTER_FALLBACK": "on"}, None)
