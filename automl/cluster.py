"""Training on a Dask cluster (dask.distributed): the search's trials as tasks, and
XGBoost's own Dask training for the winner's final fit on partitioned data.

`ClusterTrials` is the search's trial pool (automl.search.TrialPool): the selection
part's matrices, targets and folds are sent to the cluster once (as tasks that carry
them, so that a worker's death loses none), and each batch
of trials the search hands it runs as one task per trial, side by side on the
cluster's workers. The search itself (which trial comes next, the budget, the
leaderboard) stays in the training process; it records a batch in the order it was
submitted, so results do not depend on which worker finished first.

What returns from the cluster is plain data, never a fitted estimator: Dask pickles
task arguments and results, so a task returns a dict of floats and strings (the
trial's score, seconds, threshold) plus, for XGBoost, the first fold's Booster as
XGBoost's JSON model bytes, which the training process loads into a fresh Booster.
The final model is fitted in the training process (or, for an XGBOOST winner, by
xgboost.dask, whose Booster crosses as XGBoost's own UBJSON model bytes and is
re-read from its JSON here), then goes through the same export and compiler as a
local job: no executable object from the cluster reaches the catalog.

Time: the search's deadline is a monotonic time in the training process; a task
gets it as wall-clock time (cluster hosts are assumed NTP-synchronised) and turns it
back into its own monotonic deadline.

Faults: a task whose worker dies is re-run by the scheduler on another worker (up
to `distributed.scheduler.allowed-failures`, then it fails as KilledWorker and
the search goes on without that trial). A cluster that stops answering (no
scheduler connection, or no workers, for LOST_AFTER seconds) raises ClusterLost;
one that does not answer at the start raises ClusterUnavailable. Both are
AutoMLErrors the proxy's worker turns into a local retry or a FAILED reason.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np

from .errors import AutoMLError
from .families import Context, Family, TrialInterrupted
from .validation import Evaluator, TrialResult

#: seconds to wait for the scheduler when connecting
CONNECT_TIMEOUT = 10.0
#: a cluster with no scheduler connection or no workers for this long is lost
LOST_AFTER = 15.0
#: after the search deadline, tasks still running get this long to notice it
DEADLINE_GRACE = 5.0


class ClusterUnavailable(AutoMLError):
    """The training cluster does not answer."""

    sqlstate = "08001"  # sqlclient_unable_to_establish_sqlconnection


class ClusterLost(AutoMLError):
    """The training cluster went away while training."""

    sqlstate = "08006"  # connection_failure


def connect(address: str, timeout: float = CONNECT_TIMEOUT) -> Any:
    """A dask.distributed Client for `address` (ClusterUnavailable if it does not
    answer within `timeout` seconds)."""
    try:
        from distributed import Client
    except ImportError:
        raise ClusterUnavailable("training on a cluster needs dask.distributed",
                                 hint="pip install 'mlproxy[cluster]'") from None
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterUnavailable(f"training cluster {address} does not answer: {exc or type(exc).__name__}") \
            from None


def describe(address: str, timeout: float = CONNECT_TIMEOUT) -> dict[str, Any]:
    """The cluster's workers and threads (what `serve` checks at startup)."""
    client = connect(address, timeout)
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        return {"workers": len(workers), "threads": sum(int(w.get("nthreads", 1)) for w in workers.values())}
    finally:
        client.close()


def _threads(client: Any) -> int:
    """The cluster's worker threads (0 when the scheduler cannot say). A
    synchronous client asks the scheduler (dask.distributed 2026: scheduler_info
    is a call); a scheduler that is gone fails it at once, one that does not answer
    within distributed's TCP timeout (30 s) too."""
    try:
        workers = client.scheduler_info().get("workers", {})
        return sum(int(w.get("nthreads", 1)) for w in workers.values())
    except Exception:  # noqa: BLE001 - asked again in the wait loop
        return 0


def _lost(client: Any, exc: BaseException) -> ClusterLost:
    return ClusterLost(f"training cluster {client.scheduler.address} lost: {type(exc).__name__}: {exc}")


def until_healthy(client: Any) -> None:
    """Return once the client is connected to a scheduler with workers; ClusterLost
    after LOST_AFTER seconds without."""
    since = time.monotonic()
    while not (client.status == "running" and _threads(client) > 0):
        if time.monotonic() - since > LOST_AFTER:
            why = "no connection to its scheduler" if client.status != "running" else "it has no workers"
            raise ClusterLost(f"training cluster {client.scheduler.address} lost: {why} for {LOST_AFTER:g} s")
        time.sleep(0.1)


def wait_all(client: Any, futures: list[Any], give_up: float) -> bool:
    """Until every task is done (True) or `give_up` (monotonic; False); ClusterLost
    if the cluster stops answering meanwhile. Every wait on the cluster goes through
    here or has its own timeout: nothing waits on a cluster without a bound."""
    while time.monotonic() < give_up:
        # the Client's own thread updates the futures; polling needs no default client
        if all(f.done() for f in futures):
            return True
        time.sleep(0.1)
        if not (client.status == "running" and _threads(client) > 0):
            until_healthy(client)
    return all(f.done() for f in futures)


class _TaskLost(Exception):
    """A trial task cancelled on the cluster (not failed): run again once."""


class ClusterTrials:
    """The search's trials as tasks on a Dask cluster (see the module's text)."""

    def __init__(self, client: Any, evaluator: Evaluator) -> None:
        self.client = client
        self.evaluator = evaluator
        self._inputs: dict[str, Any] = {}
        self._common = self._common_input()
        self.setup = {"objective": evaluator.objective, "problem_type": evaluator.problem_type,
                      "n_classes": evaluator.n_classes, "seed": evaluator.seed}

    def _common_input(self) -> Any:
        return self._hold({"y": self.evaluator.y, "folds": self.evaluator.folds})

    def _hold(self, data: Any) -> Any:
        """A future of `data` with lineage: the data travels in its task, which the
        scheduler keeps, so a worker that dies holding it takes nothing with it (the
        task runs again on another worker). (A broadcast scatter had to reach every
        worker the scheduler knew, and waited on one just killed: the job was lost.)
        Sending never blocks: the client's thread ships it."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Sending large graph": it is meant to travel once
            return self.client.submit(_value, data, pure=False)

    def _encoded(self, encoding: str) -> Any:
        if encoding not in self._inputs:
            self._inputs[encoding] = self._hold(self.evaluator.inputs(encoding))
        return self._inputs[encoding]

    def run(self, trials: list[tuple[Family, dict[str, Any], Context, float]],
            deadline: float) -> list[TrialResult | Exception]:
        outcomes = self._run_once(trials, deadline)
        lost = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, _TaskLost)]
        if lost:
            # tasks cancelled with a worker (or their input lost with it): once the
            # cluster answers again, their inputs are sent anew and they run once more
            self._until_healthy()
            self._inputs.clear()
            self._common = self._common_input()
            again = self._run_once([trials[i] for i in lost], deadline)
            for i, outcome in zip(lost, again):
                outcomes[i] = RuntimeError(str(outcome)) if isinstance(outcome, _TaskLost) else outcome
        return outcomes

    def _run_once(self, trials: list[tuple[Family, dict[str, Any], Context, float]],
                  deadline: float) -> list[TrialResult | Exception]:
        if not trials:
            return []
        wall_deadline = time.time() + (deadline - time.monotonic())
        try:
            futures = [self.client.submit(run_trial, self._encoded(fam.encoding), self._common, self.setup,
                                          fam.model_type, params, ctx, fidelity, wall_deadline, pure=False)
                       for fam, params, ctx, fidelity in trials]
        except Exception as exc:
            if self.client.status != "running":
                raise _lost(self.client, exc) from None
            raise
        try:
            self._wait(futures, deadline + DEADLINE_GRACE)
        except BaseException:
            self._cancel(futures)
            raise
        out: list[TrialResult | Exception] = []
        for future, (fam, params, ctx, fidelity) in zip(futures, trials):
            out.append(self._outcome(future, fam, params, ctx))
        self._cancel([f for f in futures if not f.done()])
        return out

    def _until_healthy(self) -> None:
        until_healthy(self.client)

    def _wait(self, futures: list[Any], give_up: float) -> None:
        wait_all(self.client, futures, give_up)

    def _outcome(self, future: Any, fam: Family, params: dict[str, Any], ctx: Context) -> TrialResult | Exception:
        if future.status == "finished":
            try:
                # fetched from the worker that holds it; one that died meanwhile
                # loses it: the task runs again (bounded, never a hang)
                data = future.result(timeout=LOST_AFTER)
            except TimeoutError:
                return _TaskLost("trial result not fetched from the cluster within "
                                 f"{LOST_AFTER:g} s")
            if data.get("interrupted"):
                return TrialInterrupted()
            if data.get("error"):
                return ValueError(data["error"])
            model = None
            if data.get("xgboost_json") is not None:
                model = load_xgboost(fam, params, ctx, data["xgboost_json"])
            return TrialResult(float(data["score"]), float(data["seconds"]), float(data["fit_seconds"]),
                               data["threshold"], model, float(data["cost_units"]))
        if future.status == "error":
            exc = future.exception(timeout=LOST_AFTER)
            return RuntimeError(f"trial task failed on the cluster: {type(exc).__name__}: {exc}")
        if future.done():  # cancelled, or its input lost with the workers that held it
            return _TaskLost(f"trial task {future.status} on the cluster")
        return TrialInterrupted()  # still running past the deadline

    def _cancel(self, futures: list[Any]) -> None:
        if futures:
            try:
                self.client.cancel(futures)
            except Exception:  # noqa: BLE001 - a lost cluster has nothing left to cancel
                pass


def _value(data: Any) -> Any:
    """A trial input's task: the data it carries (see ClusterTrials._hold)."""
    return data


def run_trial(inputs: tuple[np.ndarray, list[np.ndarray] | None], common: dict[str, Any], setup: dict[str, Any],
              model_type: str, params: dict[str, Any], ctx: Context, fidelity: float,
              wall_deadline: float) -> dict[str, Any]:
    """One trial on a cluster worker: the same Evaluator as a local trial, on the
    scattered data; returns plain data only (see the module's text)."""
    from .boosting import XGBModel
    from .registry import FAMILIES
    from .search import FIT_ERRORS

    deadline = time.monotonic() + (wall_deadline - time.time())
    encoding = FAMILIES[model_type].encoding
    X, per_fold = inputs
    evaluator = Evaluator({encoding: X}, common["y"], common["folds"], setup["objective"],
                          setup["problem_type"], setup["n_classes"], setup["seed"],
                          fold_matrices={encoding: per_fold} if per_fold else None)
    ctx = replace(ctx, n_jobs=_worker_threads())
    try:
        result = evaluator.run(FAMILIES[model_type], params, ctx, fidelity, deadline)
    except TrialInterrupted:
        return {"interrupted": True}
    except FIT_ERRORS as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    model = result.model
    return {"score": float(result.score), "seconds": float(result.seconds),
            "fit_seconds": float(result.fit_seconds),
            "threshold": None if result.threshold is None else float(result.threshold),
            "cost_units": float(result.cost_units),
            "xgboost_json": model.model_json() if isinstance(model, XGBModel) else None}


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1


def load_xgboost(fam: Family, params: dict[str, Any], ctx: Context, model_json: bytes) -> Any:
    """An XGBModel of `params` whose Booster is read from XGBoost's JSON model."""
    import xgboost as xgb

    est = fam.build(params, ctx)
    booster = xgb.Booster()
    booster.load_model(bytearray(model_json))
    est.booster = booster
    return est


# -- XGBoost's Dask interface: the final fit on partitioned data -------------------------------

#: rows per partition of the final fit's data (at least two partitions per worker)
PARTITION_ROWS = 250_000
#: how long reading the snapshot's partitions on the workers may take, at most, when
#: the job's deadline is later (a store that does not answer must not hold the job)
READ_TIMEOUT = 600.0


def fit_xgboost_partitioned(client: Any, est: Any, X: np.ndarray, y: np.ndarray, deadline: float,
                            partitions: int | None = None) -> Any:
    """Fit `est` (an XGBModel without early stopping) with xgboost.dask on `X`, `y`
    cut into row partitions spread over the cluster's workers. The Booster comes back
    as XGBoost's own model bytes and is re-read from its JSON. TrialInterrupted when
    `deadline` (monotonic) stopped it before its last round."""
    import dask.array as da
    from sklearn.utils.class_weight import compute_sample_weight

    workers = max(1, len(client.nthreads()))
    count = partitions or max(2 * workers, math.ceil(len(y) / PARTITION_ROWS))
    bounds = np.linspace(0, len(y), count + 1).astype(np.int64)
    weight = compute_sample_weight(est.class_weight, y) if est.class_weight else None

    def parts(values: np.ndarray) -> Any:
        futures = client.scatter([values[a:b] for a, b in zip(bounds[:-1], bounds[1:])], hash=False,
                                 timeout=LOST_AFTER)
        return da.concatenate([da.from_delayed(f, shape=(b - a, *values.shape[1:]), dtype=values.dtype)
                               for f, a, b in zip(futures, bounds[:-1], bounds[1:])])

    try:
        data = (parts(X), parts(y), None if weight is None else parts(weight))
    except (TimeoutError, OSError) as exc:
        raise _lost(client, exc) from None
    est = _train_dask(client, est, *data, deadline)
    est.partitions = count
    return est


class FinalFitStuck(RuntimeError):
    """xgboost.dask did not end in time (e.g. a worker it had pinned a task to died:
    its task waits for that worker forever). The job keeps the winning trial's model."""


def _train_dask(client: Any, est: Any, X: Any, y: Any, weight: Any, deadline: float) -> Any:
    """xgboost.dask.train of `est` on dask arrays; the Booster re-read from its JSON.
    Bounded: it runs in a thread the job waits for until `deadline` plus the
    cluster's grace (FinalFitStuck after that), and XGBoost's own collective
    operations on the workers time out as well."""
    import xgboost as xgb
    from xgboost import collective
    from xgboost import dask as dxgb

    params = {**est.params, "nthread": _cluster_threads(client), "tree_method": est.params.get("tree_method", "hist")}
    left = max(0.0, deadline - time.monotonic())
    wall_deadline = time.time() + left
    wait = left + DEADLINE_GRACE + LOST_AFTER

    def fit() -> Any:
        with client.as_current():  # the partitions' graph is computed by this client
            dtrain = dxgb.DaskDMatrix(client, X, y, weight=weight)
            return dxgb.train(client, params, dtrain, num_boost_round=est.num_round,
                              callbacks=[WallDeadline(wall_deadline)],
                              coll_cfg=collective.Config(timeout=int(min(max(60.0, wait), 86_400.0))))

    try:
        out = _bounded(fit, wait, "the final fit with xgboost.dask")
    except FinalFitStuck:
        raise
    except Exception as exc:
        if client.status != "running" or not _threads(client):
            raise _lost(client, exc) from None
        raise
    booster = xgb.Booster()
    booster.load_model(bytearray(out["booster"].save_raw("json")))
    if booster.num_boosted_rounds() < est.num_round:
        raise TrialInterrupted()
    est.booster = booster
    return est


# -- data read where it is: the snapshot's partitions on the workers ---------------------------


class SourceUnreadable(AutoMLError):
    """The cluster's workers cannot read the snapshot (e.g. a data directory that is
    not shared with them): the job reads it itself."""

    sqlstate = "58030"  # io_error


def _gathered(client: Any, futures: list[Any], give_up: float, what: str) -> list[Any]:
    """The results of `futures`, waited for until `give_up` (monotonic) at most."""
    try:
        if not wait_all(client, futures, give_up):
            raise SourceUnreadable(f"{what} took longer than the time left")
        failed = [f for f in futures if f.status == "error"]
        if failed:
            exc = failed[0].exception()
            raise SourceUnreadable(f"{what} failed on the cluster: {type(exc).__name__}: {exc}")
        if any(f.status != "finished" for f in futures):
            raise SourceUnreadable(f"{what}: a task was {next(f.status for f in futures if f.status != 'finished')}")
        return [f.result(timeout=LOST_AFTER) for f in futures]
    except TimeoutError:
        raise SourceUnreadable(f"{what}: a result was not fetched from the cluster within {LOST_AFTER:g} s") \
            from None
    except BaseException:
        _cancel_all(client, futures)
        raise


def _cancel_all(client: Any, futures: list[Any]) -> None:
    try:
        client.cancel(futures)
    except Exception:  # noqa: BLE001 - a lost cluster has nothing left to cancel
        pass


def sample_source(client: Any, source: Any, plan: Any, deadline: float) -> tuple[Any, np.ndarray]:
    """The test and sample rows of every partition, drawn on the workers (one task per
    partition), concatenated in partition order: (table, is_test)."""
    import pyarrow as pa

    from .partitioned import sample_task

    futures = [client.submit(sample_task, source, plan, a, b, pure=False) for a, b in plan.partitions]
    parts = _gathered(client, futures, min(deadline, time.monotonic() + READ_TIMEOUT), "reading the snapshot")
    tables = [t for t, _ in parts]
    return pa.concat_tables(tables), np.concatenate([m for _, m in parts])


def fit_xgboost_source(client: Any, est: Any, source: Any, plan: Any, features: list[str],
                       spec: dict[str, Any], target: Any, deadline: float) -> Any:
    """Fit `est` with xgboost.dask on every non-test row of the snapshot: each
    partition is read and preprocessed (`spec`) on a worker and stays there; only
    its row count comes back. `est.rows` and `est.unseen` tell how many rows the fit
    used and how many were left out for a target class the sample had not seen."""
    import operator

    import dask.array as da

    from .partitioned import training_partition

    # (the partitions' data leaves the workers when these futures are released, at
    # the return; cancelling them would also cancel the getitem tasks built on them)
    futures = [client.submit(training_partition, source, plan, a, b, features, spec, target, pure=False)
               for a, b in plan.partitions]
    counts = _gathered(client, [client.submit(_counts, f) for f in futures],
                       min(deadline, time.monotonic() + READ_TIMEOUT), "reading the snapshot's partitions")
    n_features = len(spec["features"])

    def column(index: int, dtype: Any, shape: Any) -> Any:
        return da.concatenate([
            da.from_delayed(client.submit(operator.getitem, f, index), shape=shape(rows), dtype=dtype)
            for f, (rows, _) in zip(futures, counts) if rows])

    X = column(0, np.float64, lambda rows: (rows, n_features))
    y = column(1, np.float64, lambda rows: (rows,))
    weight = column(2, np.float64, lambda rows: (rows,)) if target.weights is not None else None
    est = _train_dask(client, est, X, y, weight, deadline)
    est.partitions = len(futures)
    est.rows = sum(rows for rows, _ in counts)
    est.unseen = sum(unseen for _, unseen in counts)
    return est


def _counts(part: tuple[Any, ...]) -> tuple[int, int]:
    return len(part[1]), int(part[3])


def _bounded(fn: Any, seconds: float, what: str) -> Any:
    """fn() in a daemon thread, waited for `seconds` at most (FinalFitStuck after:
    the thread is left behind, and ends with the process)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="mlproxy-bounded")
    thread.start()
    thread.join(seconds if math.isfinite(seconds) else None)
    if thread.is_alive():
        raise FinalFitStuck(f"{what} did not end within {seconds:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _cluster_threads(client: Any) -> int:
    return max(1, min(client.nthreads().values(), default=1))


try:
    from xgboost.callback import TrainingCallback as _Callback
except ImportError:  # pragma: no cover - xgboost is a dependency
    _Callback = object  # type: ignore[assignment,misc]


class WallDeadline(_Callback):  # type: ignore[misc,valid-type]
    """Stops XGBoost's rounds at a wall-clock deadline (it runs on the workers)."""

    def __init__(self, wall_deadline: float) -> None:
        super().__init__()
        self.wall_deadline = wall_deadline

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        return time.time() > self.wall_deadline
