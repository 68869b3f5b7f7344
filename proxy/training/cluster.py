"""Training on a Dask cluster: the proxy's side (`--training-cluster`).

automl/cluster.py runs the search's trials on the cluster; this module holds the
proxy's policy around it: the check at startup (a scheduler that does not answer
stops `serve`, unless `--training-cluster-fallback`), and, in the worker process,
what a job does when the cluster does not answer or goes away mid-training: with
the fallback it is trained again on the local worker (a fresh MAX_RUNTIME, the
report says why), without it the job ends FAILED with the reason. Either way the
worker process ends, so no job stays TRAINING because of the cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("mlproxy.training")

#: seconds `serve` waits for the scheduler at startup
STARTUP_TIMEOUT = 5.0


def check_at_startup(address: str, fallback: bool, timeout: float = STARTUP_TIMEOUT) -> str | None:
    """None if `address` answers (or the fallback makes that optional), else why
    `serve` cannot start. Runs before the event loop (it blocks up to `timeout`)."""
    from automl.cluster import ClusterUnavailable, describe

    try:
        info = describe(address, timeout)
    except ClusterUnavailable as exc:
        if fallback:
            log.warning("%s; training_cluster_fallback is on: jobs train on the local workers "
                        "until it answers", exc)
            return None
        return (f"{exc}; start the scheduler, fix --training-cluster, or set "
                f"--training-cluster-fallback to train locally meanwhile")
    log.info("training cluster %s: %d workers, %d threads", address, info["workers"], info["threads"])
    if info["workers"] == 0:
        log.warning("training cluster %s has no workers yet: trials wait for one (a job whose "
                    "cluster has none for a while is %s)", address,
                    "trained locally" if fallback else "FAILED")
    return None


def train(table: Any, spec: dict[str, Any], progress: Callable[[dict[str, Any]], None]) -> Any:
    """automl.train for a job's spec: on the cluster when the spec names one."""
    import automl
    from automl.cluster import ClusterLost, ClusterUnavailable

    cluster = spec.get("training_cluster") or None
    if cluster is None:
        return automl.train(table, spec["options"], progress=progress, n_jobs=spec.get("n_jobs"))
    try:
        import dask.array  # noqa: F401 - imported before MAX_RUNTIME's clock starts, as automl is
        import xgboost.dask  # noqa: F401
    except ImportError:
        pass  # automl.cluster.connect says what to install
    try:
        return automl.train(table, spec["options"], progress=progress, n_jobs=spec.get("n_jobs"),
                            cluster=cluster["address"])
    except (ClusterUnavailable, ClusterLost) as exc:
        if not cluster.get("fallback"):
            exc.hint = ("the job is not retried locally unless training_cluster_fallback is on; "
                        "drop the model and create it again once the cluster is back")
            raise
        progress({"phase": "retrying locally", "reason": str(exc)})
        trained = automl.train(table, spec["options"], progress=progress, n_jobs=spec.get("n_jobs"))
        trained.report.insert(0, f"{exc}: trained again on the local worker (training_cluster_fallback)")
        return trained
