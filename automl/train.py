"""automl.train: the whole CREATE MODEL training job, start to finish.

prepare data (sample, drop NULL targets, infer the problem) -> split off a test
part -> column roles and preprocessing specs (fitted on the selection part only)
-> scheduled search under the budget -> refit the winner on the selection part
-> metrics on the untouched test part -> TrainedModel.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits

from . import problem as P
from .columns import ColumnInfo, check_supported, describe, kind_of, pg_type_name, to_raw
from .custom import fit_custom_spec, parse
from .errors import InvalidOption, MissingColumn, TimeBudgetExceeded, UnsupportedColumnType, UnusableData
from .families import FAMILIES, Context, Family, TrialInterrupted, family_for
from .hyperparams import map_hyperparameters
from .importance import feature_importances
from .metrics import classification_metrics, clustering_metrics, regression_metrics
from .options import TrainOptions
from .preprocess import fit_spec
from .search import Budget, Search, Trial
from .spec import transform
from .trained import TrainedModel
from .validation import MAX_TEST_ROWS, MIN_ROWS, TEST_FRACTION, Evaluator, make_folds, predict_proba, stratified_split

Progress = Callable[[dict[str, Any]], None]
#: Imbalanced: the rarest class has less than this share of the majority class.
IMBALANCE_RATIO = 0.5
#: Objectives that reward getting rare classes right; balanced class weights start on.
_BALANCE_OBJECTIVES = ("f1", "f1_macro", "balanced_accuracy", "auc", "recall", "recall_macro", "precision_macro")


@dataclass
class _Clock:
    start: float
    budget: float
    progress: Progress | None

    @property
    def hard_deadline(self) -> float:
        # a little slack for building the result object after the last check
        return self.start + self.budget - min(0.25, 0.02 * self.budget)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def report(self, **info: Any) -> None:
        if self.progress is not None:
            self.progress({"elapsed": round(self.elapsed(), 3), "max_runtime": self.budget, **info})


def train(table: pa.Table, options: TrainOptions | Mapping[str, Any], *,
          progress: Progress | None = None, n_jobs: int | None = None) -> TrainedModel:
    """Train the best model the budget allows for `options.target` from `table`.

    Feature columns are all other columns, in table order. Raises an AutoMLError
    subclass (with `sqlstate`) for anything a SQL user has to fix."""
    clock = _Clock(time.monotonic(), 0.0, progress)
    opts = TrainOptions.from_mapping(options)
    clock.budget = float(opts.max_runtime)
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if not isinstance(table, pa.Table):
        raise InvalidOption(f"training data must be a pyarrow Table, not {type(table).__name__}")
    jobs = n_jobs or _available_cores()
    with threadpool_limits(limits=jobs):
        clock.report(phase="preparing", trials=0)
        if opts.model_type == "KMEANS":
            return _train_kmeans(table, opts, clock, jobs)
        return _train_supervised(table, opts, clock, jobs)


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# -- data preparation -------------------------------------------------------------------


def _find_column(table: pa.Table, name: str) -> str:
    if name in table.column_names:
        return name
    folded = [c for c in table.column_names if c.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    raise MissingColumn(f"target column {name!r} does not exist in the training data",
                        hint=f"columns are: {', '.join(table.column_names)}")


def _sample_cells(table: pa.Table, opts: TrainOptions, report: list[str]) -> pa.Table:
    cells = table.num_rows * max(1, table.num_columns)
    if cells <= opts.max_cells:
        return table
    keep = max(1, opts.max_cells // max(1, table.num_columns))
    rng = np.random.default_rng([opts.seed, 7])
    rows = np.sort(rng.choice(table.num_rows, size=keep, replace=False))
    report.append(f"MAX_CELLS {opts.max_cells}: {table.num_rows} rows x {table.num_columns} columns = {cells} cells; "
                  f"sampled {keep} rows at random (seed {opts.seed})")
    return table.take(pa.array(rows))


def _feature_infos(table: pa.Table, names: list[str], rows: np.ndarray,
                   raw: dict[str, np.ndarray], report: list[str]) -> list[ColumnInfo]:
    infos = []
    for name in names:
        info = describe(name, table.schema.field(name).type, raw[name][rows])
        infos.append(info)
        if not info.used:
            report.append(f"column {name!r} dropped: {info.reason}")
    if not any(i.used for i in infos):
        raise UnusableData("no usable input column: every column is constant, all NULL or ID-like",
                           hint="select columns that vary and carry information about the target")
    return infos


def _encode_target(values: np.ndarray, t: pa.DataType, kind: str, problem_type: str
                   ) -> tuple[np.ndarray, list[Any] | None]:
    if problem_type == P.REGRESSION:
        return values.astype(np.float64), None
    keys = values.astype(str) if kind == "text" else values.astype(np.float64)
    uniq, codes = np.unique(keys, return_inverse=True)
    if kind == "text":
        classes: list[Any] = [str(u) for u in uniq]
    elif kind == "boolean":
        classes = [bool(u) for u in uniq]
    elif pa.types.is_integer(t) or (pa.types.is_decimal(t) and np.all(uniq == np.round(uniq))):
        classes = [int(u) for u in uniq]
    else:
        classes = [float(u) for u in uniq]
    return codes.astype(np.int64), classes


# -- supervised -------------------------------------------------------------------------


def _train_supervised(table: pa.Table, opts: TrainOptions, clock: _Clock, jobs: int) -> TrainedModel:
    report: list[str] = []
    target = _find_column(table, opts.target or "")
    ttype = table.schema.field(target).type
    try:
        pg_type_name(ttype)
        tkind = kind_of(ttype)
        if tkind == "datetime":
            raise UnsupportedColumnType("")
    except UnsupportedColumnType:
        raise UnsupportedColumnType(f"target column {target!r} has type {ttype}, which cannot be predicted",
                                    hint="use a numeric, boolean or text target") from None
    features = [c for c in table.column_names if c != target]
    if not features:
        raise UnusableData("the training data has no input columns besides the target")
    for name in features:
        check_supported(name, table.schema.field(name).type)

    table = _sample_cells(table, opts, report)
    y_raw = to_raw(table.column(target))
    from .spec import is_null

    present = ~is_null(y_raw)
    if not present.any():
        raise UnusableData(f"target column {target!r} is NULL in every row")
    if not present.all():
        report.append(f"{int((~present).sum())} rows with a NULL target left out")
    rows = np.flatnonzero(present)
    y_values = y_raw[rows]

    if opts.problem_type is None:
        problem_type, why = P.infer_problem_type(y_values, tkind)
        report.append(f"problem type {problem_type} inferred: {why}")
    else:
        P.check_problem_type(opts.problem_type, y_values, tkind)
        problem_type = opts.problem_type
    objective = P.resolve_objective(opts.objective, problem_type)
    report.append(f"objective {objective.name}" + (" (default)" if opts.objective is None else ""))
    y, classes = _encode_target(y_values, ttype, tkind, problem_type)
    n = len(y)
    if n < MIN_ROWS:
        raise UnusableData(f"only {n} rows with a non-NULL target; at least {MIN_ROWS} are needed to train "
                           "and validate a model")
    model_types = [f.model_type for f in family_for(problem_type, opts.model_type)]
    fixed = map_hyperparameters(opts.model_type, opts.hyperparameters, problem_type) if opts.model_type else {}

    is_class = problem_type != P.REGRESSION
    sel, test = stratified_split(y if is_class else None, n, TEST_FRACTION, opts.seed, cap=MAX_TEST_ROWS)
    raw = {name: to_raw(table.column(name))[rows] for name in features}
    infos = _feature_infos(table, features, sel, raw, report)
    raw_sel = {k: v[sel] for k, v in raw.items()}
    raw_test = {k: v[test] for k, v in raw.items()}
    y_sel, y_test = y[sel], y[test]

    target_kind = {P.REGRESSION: "regression", P.BINARY: "binary"}.get(problem_type, "multiclass")
    families = [FAMILIES[m] for m in model_types]
    plan = parse(opts.preprocessors, infos) if opts.preprocessors else None
    specs: dict[str, dict[str, Any]] = {}
    for enc in sorted({f.encoding for f in families}):
        if plan is not None:
            specs[enc] = fit_custom_spec(plan, infos, raw_sel, y_sel, enc, target_kind)
        else:
            specs[enc] = fit_spec(infos, raw_sel, y_sel, enc, target_kind)
    matrices = {enc: transform(spec, raw_sel) for enc, spec in specs.items()}

    folds = make_folds(y_sel if is_class else None, len(y_sel), opts.seed)
    n_classes = len(classes) if classes else 0
    counts = np.bincount(y_sel, minlength=n_classes) if is_class else np.array([])
    imbalanced = bool(is_class and counts.min() < IMBALANCE_RATIO * counts.max())
    if imbalanced:
        report.append(f"class imbalance: smallest class {int(counts.min())} rows vs largest {int(counts.max())}; "
                      "balanced class weights are searched")
    fold_rows = len(folds[0][0])
    contexts = {}
    for fam in families:
        ctx = Context(problem_type, fold_rows, matrices[fam.encoding].shape[1], n_classes, opts.seed, jobs,
                      imbalanced=imbalanced, balance_by_default=imbalanced and objective.metric in _BALANCE_OBJECTIVES,
                      fixed=dict(fixed))
        contexts[fam.model_type] = ctx
    evaluator = Evaluator(matrices, y_sel, folds, objective, problem_type, n_classes, opts.seed)
    validation = (f"{len(folds)}-fold cross-validation" if len(folds) > 1 else "one holdout split")
    report.append(f"rows: {len(sel)} for training/selection ({validation}), {len(test)} held out for the metrics")

    search = _run_search(families, contexts, evaluator, objective, clock, opts, fold_rows, len(folds), len(sel))
    winner = search.winner()
    fam = FAMILIES[winner.family]
    report.append(f"search: {len(search.trials)} trials, stopped: {search.stop_reason}")
    report.append(f"winner: {winner.family} {winner.params} (validation {objective.name} {winner.score:.6g})")

    est = _refit(fam, winner, contexts[fam.model_type], matrices[fam.encoding], y_sel, clock, report)
    spec = specs[fam.encoding]
    X_test = transform(spec, raw_test)
    threshold = winner.result.threshold
    if is_class:
        proba = predict_proba(est, X_test, n_classes)
        metrics = classification_metrics(y_test, proba, problem_type, threshold)
    else:
        metrics = regression_metrics(y_test, np.asarray(est.predict(X_test), dtype=np.float64))
    importances = feature_importances(fam, est, spec, infos, X_test, y_test, problem_type, n_classes,
                                      opts.seed, clock.hard_deadline)
    exported = fam.export(est)
    label_type = pg_type_name(ttype) if is_class else "double precision"
    result = TrainedModel(
        problem_type=problem_type,
        model_type=fam.model_type,
        objective=objective.name,
        target=target,
        preprocessing=spec,
        estimator=exported,
        classes=classes,
        label_type=label_type,
        metrics=metrics,
        leaderboard=[t.entry() for t in search.trials],
        feature_importances=importances,
        training_seconds=round(clock.elapsed(), 3),
        rows_used=n,
        threshold=threshold if problem_type == P.BINARY else None,
        report=report,
        sklearn_model=est if exported is not est else None,
    )
    clock.report(phase="done", trials=len(search.trials), best_score=winner.score,
                 best_model_type=winner.family, objective=objective.name)
    return result


def _run_search(families: list[Family], contexts: dict[str, Context], evaluator: Evaluator,
                objective: P.Objective, clock: _Clock, opts: TrainOptions, fold_rows: int,
                n_folds: int, n_sel: int) -> Search:
    overhead = min(5.0, 0.2 + 0.03 * clock.budget)
    holder: dict[str, Search] = {}

    def reserve() -> float:
        s = holder.get("search")
        best = s.winner() if s else None
        if best is None:
            return overhead
        per_fit = best.result.seconds / n_folds / max(best.fidelity, 1e-3)
        return overhead + per_fit * n_sel / max(1, fold_rows)

    def on_trial(trial: Trial, best: Trial | None) -> None:
        clock.report(phase="searching", trials=len(holder["search"].trials),
                     best_score=None if best is None else best.score,
                     best_model_type=None if best is None else best.family, objective=objective.name)

    search = Search(families, contexts, evaluator, objective, Budget(clock.hard_deadline, reserve), opts.seed,
                    on_trial=on_trial, n_train_rows=fold_rows, tune=opts.auto)
    holder["search"] = search
    search.run()
    if search.winner() is None:
        raise TimeBudgetExceeded(
            f"MAX_RUNTIME {opts.max_runtime:g} s was not enough to train even one candidate model",
            hint="raise MAX_RUNTIME, or lower MAX_CELLS to train on fewer rows")
    return search


def _refit(fam: Family, winner: Trial, ctx: Context, X: np.ndarray, y: np.ndarray,
           clock: _Clock, report: list[str]) -> Any:
    """The winner fitted on the whole selection part, if the budget allows; else the
    winner's own first-fold model (still never trained on the test part)."""
    clock.report(phase="refitting", best_model_type=winner.family, best_score=winner.score)
    overhead = min(5.0, 0.2 + 0.03 * clock.budget) * 0.5
    try:
        est = fam.fit(fam.build(winner.params, ctx), X, y, clock.hard_deadline - overhead)
        report.append(f"refit on all {len(y)} selection rows")
        return est
    except TrialInterrupted:
        report.append("time budget reached during the refit: kept the winning trial's model")
        return winner.result.model


# -- clustering -------------------------------------------------------------------------


def _train_kmeans(table: pa.Table, opts: TrainOptions, clock: _Clock, jobs: int) -> TrainedModel:
    report: list[str] = []
    features = list(table.column_names)
    if not features:
        raise UnusableData("the training data has no columns")
    for name in features:
        check_supported(name, table.schema.field(name).type)
    table = _sample_cells(table, opts, report)
    n = table.num_rows
    if n < MIN_ROWS:
        raise UnusableData(f"only {n} rows; at least {MIN_ROWS} are needed to cluster and validate")
    fixed = map_hyperparameters("KMEANS", opts.hyperparameters, None)
    if opts.k is not None:
        fixed["n_clusters"] = int(opts.k)
    sel, test = stratified_split(None, n, TEST_FRACTION, opts.seed, cap=MAX_TEST_ROWS)
    raw = {name: to_raw(table.column(name)) for name in features}
    infos = _feature_infos(table, features, sel, raw, report)
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
                 "score": float(key), "seconds": round(time.monotonic() - start, 4), "fidelity": 1.0,
                 "phase": "screen"}
        leaderboard.append(entry)
        if best is None or key > best[0]:
            best = (key, est, m)
        clock.report(phase="searching", trials=len(leaderboard), best_score=best[2]["msd"],
                     best_model_type="KMEANS", objective="MSD")
    if best is None:
        raise TimeBudgetExceeded(f"MAX_RUNTIME {opts.max_runtime:g} s was not enough to fit k-means")
    _, est, metrics = best
    if len(candidates) > 1:
        report.append(f"K={est.n_clusters} chosen by silhouette among K=2..{candidates[-1]}")
    importances = feature_importances(fam, est, spec, infos, X_test, None, P.CLUSTERING, 0, opts.seed,
                                      clock.hard_deadline)
    return TrainedModel(
        problem_type=P.CLUSTERING, model_type="KMEANS", objective="MSD", target=None,
        preprocessing=spec, estimator=fam.export(est), classes=None, label_type="integer",
        metrics=metrics, leaderboard=leaderboard, feature_importances=importances,
        training_seconds=round(clock.elapsed(), 3), rows_used=n, threshold=None, report=report,
        sklearn_model=est,
    )
