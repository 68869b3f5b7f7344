"""KMEANS: unsupervised clustering, with K given or chosen by silhouette."""

from __future__ import annotations

import time

import pyarrow as pa

from . import problem as P
from .columns import to_raw
from .dataset import Clock, check_columns, feature_infos, sample_cells
from .errors import TimeBudgetExceeded, UnusableData
from .families import Context
from .registry import FAMILIES
from .hyperparams import map_hyperparameters
from .evaluation import clustering_evaluation, trials
from .importance import feature_importances
from .metrics import clustering_metrics
from .options import TrainOptions
from .preprocess import fit_spec
from .spec import transform
from .trained import TrainedModel
from .validation import MAX_TEST_ROWS, MIN_ROWS, TEST_FRACTION, stratified_split


def train_kmeans(table: pa.Table, opts: TrainOptions, clock: Clock, jobs: int) -> TrainedModel:
    report: list[str] = []
    features = list(table.column_names)
    if not features:
        raise UnusableData("the training data has no columns")
    check_columns(table, features)
    table = sample_cells(table, opts, report)
    n = table.num_rows
    if n < MIN_ROWS:
        raise UnusableData(f"only {n} rows; at least {MIN_ROWS} are needed to cluster and validate")
    fixed = map_hyperparameters("KMEANS", opts.hyperparameters, None)
    if opts.k is not None:
        fixed["n_clusters"] = int(opts.k)
    sel, test = stratified_split(None, n, TEST_FRACTION, opts.seed, cap=MAX_TEST_ROWS)
    raw = {name: to_raw(table.column(name)) for name in features}
    infos = feature_infos(table, features, sel, raw, report)
    spec = fit_spec(infos, {k: v[sel] for k, v in raw.items()}, None, "dense", "none")
    X = transform(spec, {k: v[sel] for k, v in raw.items()})
    X_test = transform(spec, {k: v[test] for k, v in raw.items()})
    fam = FAMILIES["KMEANS"]
    ctx = Context(P.CLUSTERING, len(sel), X.shape[1], 0, opts.seed, jobs, fixed=fixed)
    k_max = min(10, len(sel) - 1)
    candidates = [fixed["n_clusters"]] if "n_clusters" in fixed else list(range(2, k_max + 1))
    if candidates[0] > len(sel):
        raise UnusableData(f"K={candidates[0]} clusters need at least that many rows; only {len(sel)} are available")
    leaderboard, best = [], None
    for k in candidates:
        params = {**fixed, "n_clusters": k}
        start = time.monotonic()
        if leaderboard and start + leaderboard[-1]["seconds"] * 1.5 > clock.hard_deadline - 0.2:
            report.append("time budget reached while choosing K")
            break
        est = fam.fit(fam.build(params, ctx), X, None, clock.hard_deadline)
        # K is chosen on the selection rows by silhouette (MSD always falls as K grows);
        # the test rows only measure the chosen model
        fit_m = clustering_metrics(X, est.labels_, est.cluster_centers_, opts.seed)
        key = fit_m.get("silhouette", -1.0)
        m = clustering_metrics(X_test, est.predict(X_test), est.cluster_centers_, opts.seed)
        entry = {"trial": len(leaderboard), "family": "KMEANS", "params": {"n_clusters": k},
                 "score": fit_m["msd"], "silhouette": float(key), "fidelity": 1.0, "phase": "screen",
                 "seconds": round(time.monotonic() - start, 4)}
        leaderboard.append(entry)
        if best is None or key > best[0]:
            best = (key, est, m)
        clock.report(phase="searching", trials=len(leaderboard), best_score=best[2]["msd"],
                     best_model_type="KMEANS", objective="MSD")
    if best is None:
        raise TimeBudgetExceeded(f"MAX_RUNTIME {opts.max_runtime:g} s was not enough to fit k-means")
    _, est, metrics = best
    evaluation = clustering_evaluation(spec, est.cluster_centers_, est.labels_, est.predict(X_test))
    if len(candidates) > 1:
        report.append(f"K={est.n_clusters} chosen by silhouette among K=2..{candidates[-1]}")
    importances = feature_importances(fam, est, spec, infos, X_test, None, P.CLUSTERING, 0, opts.seed,
                                      clock.hard_deadline)
    clock.report(phase="done", trials=len(leaderboard), best_score=metrics["msd"], best_model_type="KMEANS",
                 objective="MSD")
    return TrainedModel(
        problem_type=P.CLUSTERING, model_type="KMEANS", objective="MSD", target=None,
        preprocessing=spec, estimator=fam.export(est), classes=None, label_type="integer",
        metrics=metrics, leaderboard=leaderboard, feature_importances=importances,
        training_seconds=round(clock.elapsed(), 3), rows_used=n, threshold=None, report=report,
        sklearn_model=est,
        evaluation={**evaluation, "trials": trials(leaderboard), "greater_is_better": False},
    )
