"""automl.train: the whole CREATE MODEL training job, start to finish.

prepare data (sample, drop NULL targets, infer the problem) -> split off a test
part -> column roles and preprocessing specs (fitted on the selection part only)
-> scheduled search under the budget -> refit the winner on the selection part
-> metrics on the untouched test part -> TrainedModel.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits

from . import problem as P
from .clustering import train_kmeans
from . import confirm, ensemble
from .codes import mark_codes
from .custom import fit_custom_spec, parse
from .diagnose import findings
from .dataset import Clock, Progress, check_columns, feature_infos, find_target, prepare_target, sample_cells
from .errors import InvalidOption, TimeBudgetExceeded, UnusableData
from .families import PARALLEL_MIN_CELLS, Context, Family, TrialInterrupted
from .registry import FAMILIES, families_for
from .boosting import XGBModel, xgboost_fixed
from .hyperparams import map_hyperparameters
from .evaluation import classification_evaluation, regression_evaluation
from .evaluation import trials as evaluation_trials
from .importance import feature_importances
from .metrics import classification_metrics, regression_metrics
from .options import TrainOptions
from .preprocess import fit_spec, learns_from_target, refit_orders
from .search import FIT_ERRORS, Budget, Search, Trial
from .columns import ColumnInfo, kind_of, to_raw
from .partitioned import MIN_PARTITIONED_ROWS, ParquetData, Plan, TargetCoding
from .spec import transform
from .trained import TrainedModel
from .validation import MAX_TEST_ROWS, MIN_ROWS, TEST_FRACTION, Evaluator, cross_validates, make_folds, \
    predict_proba, stratified_split

#: AUTO ON: the model kept is the winner refitted on every row (the test part too); the
#: metrics measure the winning trial's own model on the test part (docs/automl.md)
REFIT_ALL_ROWS = True
#: AUTO ON: the search keeps time for refitting an ensemble's members as well as the
#: winner's (`_run_search`); off, only the winner's (benchmarks' mlproxy_noblendtime)
BLEND_TIME = True
#: a refit is predicted as its trial's slowest fold fit scaled by rows, times this
#: (measured at 30 s: ensembles of 6 and 4 LightGBM members on diamonds and movies,
#: 40-44k rows, refitted in 1.34 s and 3.05 s against 1.47 s and 3.22 s predicted
#: without it; the margin is for a machine busier during the refit than the search)
REFIT_MARGIN = 1.25
#: AUTO ON, a search on one holdout split: its finalists are cross-validated with the
#: time it leaves (automl/confirm.py); off, the holdout's ranking stands (benchmarks'
#: mlproxy_noconfirm)
CONFIRM = True
#: AUTO ON, a search on one holdout split: once its first local search has converged
#: with no trial skipped for time, if the holdout's score is loose (search.WIDEN_ERROR),
#: it goes on with WIDEN_FOLDS folds of confirmation's cross-validation around the
#: holdout (automl/search.py Search._widen); off, on the holdout to the end
#: (benchmarks' mlproxy_nowiden)
WIDEN = True
WIDEN_FOLDS = 3

#: Imbalanced: the rarest class has less than this share of the majority class.
IMBALANCE_RATIO = 0.5
#: Objectives that reward getting rare classes right; balanced class weights start on.
_BALANCE_OBJECTIVES = ("f1", "f1_macro", "balanced_accuracy", "auc", "recall", "recall_macro", "precision_macro")


def train(table: pa.Table | ParquetData, options: TrainOptions | Mapping[str, Any], *,
          progress: Progress | None = None, n_jobs: int | None = None, cluster: Any = None) -> TrainedModel:
    """Train the best model the budget allows for `options.target` from `table`.

    Feature columns are all other columns, in table order. Raises an AutoMLError
    subclass (with `sqlstate`) for anything a SQL user has to fix.

    `cluster`: a Dask scheduler address (or a dask.distributed Client) to run the
    search's trials on, and an XGBOOST winner's final fit (automl/cluster.py); the
    budget is then wall time across the cluster. A cluster that does not answer or
    goes away raises ClusterUnavailable / ClusterLost.

    `table` may be a ParquetData (automl/partitioned.py): with a cluster, its
    workers read it in partitions, the search runs on a sample of it drawn on the
    workers, and an XGBoost winner's final fit reads every partition there; this
    process never holds the whole table. Without a cluster it is read here."""
    clock = Clock(time.monotonic(), 0.0, progress)
    opts = TrainOptions.from_mapping(options)
    clock.budget = float(opts.max_runtime)
    source = table if isinstance(table, ParquetData) else None
    if source is not None and (cluster is None or opts.model_type == "KMEANS"):
        table, source = source.read_all(), None
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if source is not None:
        meta = source.open(here=True).metadata
        rows, columns = meta.num_rows, meta.num_columns
    elif isinstance(table, pa.Table):
        rows, columns = table.num_rows, table.num_columns
    else:
        raise InvalidOption(f"training data must be a pyarrow Table, not {type(table).__name__}")
    jobs = n_jobs or _available_cores()
    # small jobs run single-threaded throughout (see families.PARALLEL_MIN_CELLS)
    small = rows * max(1, columns) < PARALLEL_MIN_CELLS
    with threadpool_limits(limits=1 if small else jobs):
        clock.report(phase="preparing", trials=0)
        if opts.model_type == "KMEANS":  # one fit, no search: trained here
            return train_kmeans(table, opts, clock, jobs)
        if cluster is None:
            return _train_supervised(table, opts, clock, jobs)
        from .cluster import connect

        client = connect(cluster) if isinstance(cluster, str) else cluster
        try:
            if source is not None:
                return _train_from_source(source, rows, opts, clock, jobs, client)
            return _train_supervised(table, opts, clock, jobs, client)
        finally:
            if client is not cluster:
                client.close(timeout=5)


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# -- supervised -------------------------------------------------------------------------


@dataclass
class _Partitioned:
    """A table that is the test and sample rows of a snapshot the workers read
    (automl/partitioned.py): which of its rows are test rows, and what to read."""

    source: ParquetData
    plan: Plan
    is_test: np.ndarray


def _train_from_source(source: ParquetData, rows: int, opts: TrainOptions, clock: Clock, jobs: int,
                       client: Any) -> TrainedModel:
    """Supervised training on a snapshot the cluster's workers read (see train)."""
    from .cluster import SourceUnreadable, sample_source

    schema = source.open(here=True).schema_arrow
    find_target(schema.empty_table(), opts)  # a missing target is said before any reading
    if rows < MIN_PARTITIONED_ROWS:
        return _train_supervised(source.read_all(), opts, clock, jobs, client)
    plan = Plan.make(rows, len(schema), opts.seed, len(client.nthreads()), TEST_FRACTION, MAX_TEST_ROWS)
    clock.report(phase="sampling", trials=0)
    try:
        table, is_test = sample_source(client, source, plan, clock.hard_deadline)
    except SourceUnreadable as exc:
        if source.local is None:
            raise
        # e.g. a data directory the workers do not share: read here, as before
        return _train_supervised(source.read_all(), opts, clock, jobs, client,
                                 notes=[f"the cluster's workers could not read the snapshot ({exc}): "
                                        "the job read it and sent the search's data to them"])
    return _train_supervised(table, opts, clock, jobs, client, partitioned=_Partitioned(source, plan, is_test))


def _train_supervised(table: pa.Table, opts: TrainOptions, clock: Clock, jobs: int,
                      client: Any = None, partitioned: _Partitioned | None = None,
                      notes: list[str] | None = None) -> TrainedModel:
    report: list[str] = list(notes or [])
    target_name = find_target(table, opts)
    features = [c for c in table.column_names if c != target_name]
    if not features:
        raise UnusableData("the training data has no input columns besides the target")
    check_columns(table, features)
    if partitioned is None:  # (a snapshot read in partitions is what the export kept within MAX_CELLS)
        table = sample_cells(table, opts, report)
    target = prepare_target(table, target_name, opts, report)
    problem_type, objective, y, classes, rows = (target.problem_type, target.objective, target.y,
                                                 target.classes, target.rows)
    n = len(y)
    model_types = [f.model_type for f in families_for(opts.model_type)]
    fixed = (map_hyperparameters(opts.model_type, opts.hyperparameters, problem_type, report)
             if opts.model_type else {})
    n_classes = len(classes) if classes else 0
    if "XGBOOST" in model_types:
        fixed = xgboost_fixed(fixed, target.loss, problem_type, n_classes, opts.model_type == "XGBOOST", report)

    is_class = problem_type != P.REGRESSION
    sel = test = None
    if partitioned is not None:
        # the rows' own parts (automl/partitioned.py): the final fit on the workers
        # leaves out exactly these test rows
        held = partitioned.is_test[rows]
        sel, test = np.flatnonzero(~held), np.flatnonzero(held)
        plan = partitioned.plan
        report.append(f"training data read where it is: {plan.rows} rows in {len(plan.partitions)} partitions "
                      f"read by the cluster's workers; the search ran on "
                      + (f"a sample of {len(sel)} rows (SAMPLE_CELLS {plan.sample_cells}) drawn on the workers"
                         if plan.sampled else f"all {len(sel)} non-test rows")
                      + f", {len(test)} rows held out")
        if len(test) == 0 or len(sel) < MIN_ROWS:
            partitioned, sel = None, None
            report.append("too few rows for the held-out split by row: split the sample as a local job does")
    if sel is None:
        sel, test = stratified_split(y if is_class else None, n, TEST_FRACTION, opts.seed, cap=MAX_TEST_ROWS)
    raw = {name: to_raw(table.column(name))[rows] for name in features}
    infos = feature_infos(table, features, sel, raw, report)
    raw_sel = {k: v[sel] for k, v in raw.items()}
    raw_test = {k: v[test] for k, v in raw.items()}
    y_sel, y_test = y[sel], y[test]
    infos, code_lines = mark_codes(infos, raw_sel, y_sel, n_classes, opts.seed)
    report.extend(code_lines)

    target_kind = {P.REGRESSION: "regression", P.BINARY: "binary"}.get(problem_type, "multiclass")
    families = [FAMILIES[m] for m in model_types]
    specs = _fit_specs(families, opts, infos, raw_sel, y_sel, target_kind)
    matrices = {enc: transform(spec, raw_sel) for enc, spec in specs.items()}

    # cells of the matrix the tree families' trials fit (integer codes count twice);
    # AUTO OFF fits the one configuration it is given: more folds would only cost, so
    # no budget for them beyond the row limit
    width = matrices["tree"].shape[1] if "tree" in matrices else len(features)
    folds = make_folds(y_sel if is_class else None, len(y_sel), opts.seed,
                       cross_validates(len(y_sel), width, float(opts.max_runtime) if opts.auto else 0.0))
    fold_specs = _fold_specs(specs, opts, infos, raw_sel, y_sel, target_kind, folds)
    fold_matrices = {enc: [transform(s, raw_sel) for s in per_fold] for enc, per_fold in fold_specs.items()}
    counts = np.bincount(y_sel, minlength=n_classes) if is_class else np.array([])
    imbalanced = bool(is_class and counts.min() < IMBALANCE_RATIO * counts.max())
    if imbalanced:
        report.append(f"class imbalance: smallest class {int(counts.min())} rows vs largest {int(counts.max())}; "
                      "balanced class weights are searched")
    fold_rows = len(folds[0][0])
    balance = imbalanced and objective.metric in _BALANCE_OBJECTIVES
    contexts = {fam.model_type: Context(problem_type, fold_rows, matrices[fam.encoding].shape[1], n_classes,
                                        opts.seed, jobs, imbalanced=imbalanced, balance_by_default=balance,
                                        fixed=dict(fixed) if fam.model_type == (opts.model_type or "") else
                                        {k: v for k, v in fixed.items() if k == "objective"},
                                        table=opts.hyperparameter_table if fam.model_type == opts.model_type else None,
                                        budget=float(opts.max_runtime))
                for fam in families}
    evaluator = Evaluator(matrices, y_sel, folds, objective, problem_type, n_classes, opts.seed, fold_matrices)
    validation = (f"{len(folds)}-fold cross-validation" if len(folds) > 1 else "one holdout split")
    report.append(f"rows: {len(sel)} for training/selection ({validation}), {len(test)} held out for the metrics")
    if opts.auto and "tree" in specs:
        report.extend(findings(infos, specs["tree"], matrices["tree"], y_sel, problem_type, opts.seed))

    pool = None
    if client is not None:
        from .cluster import ClusterTrials

        pool = ClusterTrials(client, evaluator)
        threads = sum(client.nthreads().values())
        report.append(f"training cluster {client.scheduler.address}: trials ran as tasks on "
                      f"{len(client.nthreads())} workers ({threads} threads)")
    refit_rows, refit_share = len(sel), 1 / 3
    if partitioned is not None and "XGBOOST" in model_types:
        # the final fit reads every non-test row, spread over the cluster's threads
        # (a trial task uses one worker's): the search keeps the time for that
        plan = partitioned.plan
        refit_rows = max(len(sel), int(plan.rows * (1 - plan.test_share) / max(1, threads)))
        refit_share = 1 / 2
    elif partitioned is None and REFIT_ALL_ROWS and opts.auto:
        refit_rows = n  # the final fit is on every row (see below)
    blends = opts.auto and pool is None and partitioned is None and ensemble.FAMILY in model_types
    holdout = opts.auto and pool is None and partitioned is None and not evaluator.is_cv
    more = confirm.more_folds(folds[0], y_sel if is_class else None, opts.seed) if holdout else []

    def more_matrices(extra: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, list[np.ndarray]]:
        return {enc: [transform(s, raw_sel) for s in per_fold]
                for enc, per_fold in _fold_specs(specs, opts, infos, raw_sel, y_sel, target_kind, extra).items()}

    def widening() -> Evaluator:
        # the holdout and the first folds of confirmation's cross-validation around it
        extra = more[:WIDEN_FOLDS - 1]
        per_fold = {enc: [fold_matrices[enc][0], *m] for enc, m in more_matrices(extra).items()}
        return Evaluator(matrices, y_sel, [folds[0], *extra], objective, problem_type, n_classes, opts.seed,
                         per_fold)

    search = _run_search(families, contexts, evaluator, objective, clock, opts, fold_rows, refit_rows, pool,
                         refit_share, blends, widening if holdout and WIDEN else None)
    winner, trials = search.winner(), search.trials
    report.append(f"search: {len(search.trials)} trials, stopped: {search.stop_reason}")
    if search.widened:
        report.append(search.widened)
    confirmation = None
    if holdout and CONFIRM and not search.evaluator.is_cv:

        def confirming() -> Evaluator:
            return Evaluator(matrices, y_sel, more, objective, problem_type, n_classes, opts.seed, more_matrices(more))

        confirmation = confirm.confirm(search, confirming,
                                       lambda t: _refit_seconds(t, len(more) * fold_rows, fold_rows), report)
        if confirmation is not None:
            winner, trials = confirmation.trials[0], confirm.merged(search.trials, confirmation)
    fam = FAMILIES[winner.family]
    report.append(f"winner: {winner.family} {winner.params} (validation {objective.name} {winner.score:.6g})")
    if not fam.searched:
        report.append("no model beat the constant baseline in validation: the model predicts "
                      + ("the mean" if problem_type == P.REGRESSION else "the class shares") + " whatever the inputs")

    spec = specs[fam.encoding]
    read_fit = None
    if partitioned is not None:
        coding = TargetCoding(target.name, kind_of(table.schema.field(target.name).type) == "text",
                              None if classes is None else tuple(classes), _class_weights(y_sel, n_classes))
        src = partitioned

        def read_fit(est: Any, deadline: float) -> Any:
            from .cluster import fit_xgboost_source

            weighed = coding if est.class_weight else replace(coding, weights=None)
            return fit_xgboost_source(client, est, src.source, src.plan, features, spec, weighed, deadline)

    X_test = transform(spec, raw_test)
    # AUTO ON (table in memory): the model kept is the winner refitted on every row;
    # the metrics measure the winning trial's own model (never trained on the test part)
    refit_all = REFIT_ALL_ROWS and opts.auto and partitioned is None and len(y_test) > 0
    measured = winner.result.model if refit_all else None
    threshold = winner.result.threshold
    blend = None
    # an ensemble of confirmed trials is selected on all their validation predictions
    candidates, rows = ((confirmation.trials, confirmation.rows) if confirmation is not None
                        else (search.current(), search.evaluator.validation_rows()))
    selection = (ensemble.select(candidates, winner, y_sel[rows], objective, problem_type, n_classes)
                 if blends else None)
    if selection is not None:
        report.append(selection.describe(winner.score, objective.name))
        if _blend_fits(selection, refit_rows, fold_rows, contexts, clock, report):
            blend_fam = FAMILIES[ensemble.FAMILY]
            if blend_fam.encoding != fam.encoding:  # the test rows as the blend's matrix
                X_test = transform(specs[blend_fam.encoding], raw_test)
            fam, spec = blend_fam, specs[blend_fam.encoding]
            X_all, y_all = ((np.vstack([matrices[fam.encoding], X_test]), np.concatenate([y_sel, y_test]))
                            if refit_all else (matrices[fam.encoding], y_sel))
            blend = _fit_blend(selection, fam, contexts[fam.model_type], X_all, y_all, n_classes, clock, report)
            threshold = selection.threshold
    if blend is not None:
        est, first_fold = blend
        measured = first_fold if refit_all else est
    elif measured is not None:
        est = _refit(fam, winner, contexts[fam.model_type], np.vstack([matrices[fam.encoding], X_test]),
                     np.concatenate([y_sel, y_test]), clock, report, client, what="rows (test part included)",
                     grow=opts.auto)
    else:
        est = measured = _refit(fam, winner, contexts[fam.model_type], matrices[fam.encoding], y_sel, clock,
                                report, client, read_fit, grow=opts.auto)
        if getattr(est, "rows", None) is not None:
            n = int(est.rows) + len(test)  # the final fit's rows and the held-out rows
    # a first-fold model (the winning trial's, a blend of them; what the metrics
    # measure, or what a refit cut by the deadline keeps) reads its inputs through
    # the first fold's spec, where category orders were fitted on that fold alone
    first_fold = {id(winner.result.model), id(blend[1]) if blend is not None else None}
    fold_spec = fold_specs[fam.encoding][0] if fam.encoding in fold_specs else spec
    X_measured = transform(fold_spec, raw_test) if id(measured) in first_fold and fold_spec is not spec else X_test
    if id(est) in first_fold:
        spec = fold_spec
        X_test = X_measured
    if is_class:
        proba = predict_proba(measured, X_measured, n_classes)
        metrics = classification_metrics(y_test, proba, problem_type, threshold)
        evaluation = classification_evaluation(y_test, proba, classes, problem_type, threshold)
    else:
        pred = np.asarray(measured.predict(X_measured), dtype=np.float64)
        metrics = regression_metrics(y_test, pred)
        evaluation = regression_evaluation(y_test, pred, opts.seed)
    importances = feature_importances(fam, measured, spec, infos, X_measured, y_test, problem_type, n_classes,
                                      opts.seed, clock.hard_deadline)
    exported = fam.export(est)
    leaderboard = [t.entry() for t in trials]
    result = TrainedModel(
        problem_type=problem_type,
        model_type=fam.model_type,
        objective=objective.name,
        target=target.name,
        preprocessing=spec,
        estimator=exported,
        classes=classes,
        label_type=target.pg_type,
        metrics=metrics,
        leaderboard=leaderboard,
        feature_importances=importances,
        training_seconds=round(clock.elapsed(), 3),
        rows_used=n,
        threshold=threshold if problem_type == P.BINARY else None,
        report=report,
        # (a widened search's: the trials scored on its folds, comparable with each other)
        top_trials=_top_trials(trials if confirmation is not None else search.current(), winner, objective),
        evaluation={**evaluation, "trials": evaluation_trials(leaderboard),
                    "greater_is_better": objective.greater_is_better},
        sklearn_model=est if exported is not est else None,
        explain_rows=X_test,
    )
    clock.report(phase="done", trials=len(search.trials), best_score=winner.score,
                 best_model_type=winner.family, objective=objective.name)
    return result


def _top_trials(trials: list[Trial], winner: Trial, objective: P.Objective, count: int = 5) -> list[dict[str, Any]]:
    """The leaderboard's top `count` entries, best first: the winner, then confirmed
    trials (automl/confirm.py), then full-fidelity ones, then the rest, each by score."""
    others = sorted((t for t in trials if t is not winner),
                    key=lambda t: (t.phase == confirm.PHASE, t.fidelity >= 1.0, objective.utility(t.score)),
                    reverse=True)
    return [t.entry() for t in [winner, *others][:count]]


def _fit_specs(families: list[Family], opts: TrainOptions, infos: list[ColumnInfo], raw: dict[str, np.ndarray],
               y: np.ndarray, target_kind: str) -> dict[str, dict[str, Any]]:
    """One fitted preprocessing spec per encoding the searched families need."""
    plan = parse(opts.preprocessors, infos) if opts.preprocessors else None
    specs = {}
    for enc in sorted({f.encoding for f in families}):
        if plan is not None:
            specs[enc] = fit_custom_spec(plan, infos, raw, y, enc, target_kind)
        else:
            specs[enc] = fit_spec(infos, raw, y, enc, target_kind)
    return specs


def _fold_specs(specs: dict[str, dict[str, Any]], opts: TrainOptions, infos: list[ColumnInfo],
                raw: dict[str, np.ndarray], y: np.ndarray, target_kind: str,
                folds: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, list[dict[str, Any]]]:
    """For each encoding whose spec learns from the target (category orders), each
    fold's own spec, its orders fitted on that fold's training rows: validation
    scores the selection rows through them (automl/validation.py Evaluator), and a
    trial's model (fitted on the first fold) reads its inputs through the first."""
    keep = frozenset(parse(opts.preprocessors, infos)) if opts.preprocessors else frozenset()
    return {enc: [refit_orders(spec, infos, {k: v[tr] for k, v in raw.items()}, y[tr], target_kind, keep)
                  for tr, _ in folds]
            for enc, spec in specs.items() if learns_from_target(infos, enc, target_kind)}


def _run_search(families: list[Family], contexts: dict[str, Context], evaluator: Evaluator,
                objective: P.Objective, clock: Clock, opts: TrainOptions, fold_rows: int, n_sel: int,
                pool: Any = None, refit_share: float = 1 / 3, blends: bool = False,
                widen: Any = None) -> Search:
    overhead = min(5.0, 0.2 + 0.03 * clock.budget)
    if pool is not None:
        # on a cluster the final fit starts xgboost.dask's workers and scatters the
        # partitions first: a fixed share of the budget is kept for that
        overhead += min(3.0, 0.15 * clock.budget)
    holder: dict[str, Search] = {}
    grown = contexts if opts.auto else None  # AUTO ON refits grow (LightGBM.refit_configs)

    def reserve() -> float:
        s = holder.get("search")
        best = s.winner() if s else None
        if best is None:
            return overhead
        # the refit can be cut short (the trial's own model is the fallback), so the
        # search never gives up more than a third of the budget for it (half, when
        # the final fit is the one that reads every partition of a snapshot)
        cap = clock.budget * refit_share
        refit = _refit_seconds(best, n_sel, fold_rows, grown)
        if blends and BLEND_TIME:
            # an ensemble refits each of its members: time for that is kept too
            # (when it fits under the cap), or a search the budget cuts short would
            # find a better ensemble and then drop it for want of the time it spent
            together = _blend_seconds(ensemble.candidates_of(s.current()), n_sel, fold_rows, grown)
            if together <= cap:
                refit = max(refit, together)
        return overhead + min(refit, cap)

    def on_trial(trial: Trial, best: Trial | None) -> None:
        clock.report(phase="searching", trials=len(holder["search"].trials),
                     best_score=None if best is None else best.score,
                     best_model_type=None if best is None else best.family, objective=objective.name)

    budget = Budget(clock.hard_deadline, reserve, float(opts.max_runtime))
    search = Search(families, contexts, evaluator, objective, budget, opts.seed,
                    on_trial=on_trial, n_train_rows=fold_rows, tune=opts.auto, pool=pool, widen=widen,
                    widen_folds=WIDEN_FOLDS)
    holder["search"] = search
    search.run()
    if search.failures:
        search.stop_reason += f"; {len(search.failures)} trials failed (first: {search.failures[0]})"
    if search.winner() is None and search.failures and not search.stopped_by_budget:
        raise UnusableData(f"no candidate model could be trained on this data: {search.failures[0]}")
    if search.winner() is None:
        raise TimeBudgetExceeded(
            f"MAX_RUNTIME {opts.max_runtime:g} s was not enough to train even one candidate model",
            hint="raise MAX_RUNTIME, or lower MAX_CELLS to train on fewer rows")
    return search


def _class_weights(y: np.ndarray, n_classes: int) -> tuple[float, ...] | None:
    """Balanced class weights as scikit-learn's ('balanced'), from the sample's
    class counts (the final fit on the workers weighs its rows by them)."""
    if not n_classes:
        return None
    counts = np.maximum(np.bincount(y, minlength=n_classes), 1)
    return tuple(float(v) for v in len(y) / (n_classes * counts))


def _blend_fits(selection: ensemble.Selection, rows: int, fold_rows: int, contexts: dict[str, Context],
                clock: Clock, report: list[str]) -> bool:
    """Whether refitting the ensemble's members on `rows` rows is predicted to fit in
    the time left. If not, the single winner, refitted on every row, is kept:
    measured on diamonds, a blend of first-fold models, which saw two thirds of the
    rows, did worse than the winner refitted."""
    predicted = _blend_seconds(selection.members, rows, fold_rows, contexts)
    if time.monotonic() + predicted <= clock.hard_deadline - _refit_overhead(clock):
        return True
    report.append(f"ensemble: not kept: refitting its members (~{predicted:.0f} s) would not fit in the time "
                  "left; the best single model is")
    return False


def _refit_seconds(trial: Trial, rows: int, fold_rows: int, contexts: dict[str, Context] | None = None) -> float:
    """The predicted seconds of fitting a trial's configuration on `rows` rows: its
    slowest fold's fit (on `fold_rows` times its fidelity) scaled by the rows, with
    REFIT_MARGIN to spare; with `contexts`, a refit of the kept model, also by what
    its family's `refit_configs` adds (LightGBM's rounds)."""
    growth = FAMILIES[trial.family].refit_growth(rows, contexts[trial.family]) if contexts else 1.0
    return REFIT_MARGIN * trial.result.fit_seconds * growth * rows / max(1.0, trial.fidelity * fold_rows)


def _blend_seconds(members: Sequence[Trial], rows: int, fold_rows: int,
                   contexts: dict[str, Context] | None = None) -> float:
    """The predicted seconds of refitting an ensemble's members on `rows` rows (none
    for fewer than two: no ensemble)."""
    return sum(_refit_seconds(t, rows, fold_rows, contexts) for t in members) if len(members) > 1 else 0.0


def _grown(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The report's words for rounds a refit grew (LightGBM.refit_configs)."""
    if after.get("num_round") == before.get("num_round"):
        return ""
    return f", rounds grown in proportion ({before.get('num_round')} -> {after.get('num_round')})"


def _refit_overhead(clock: Clock) -> float:
    return min(5.0, 0.2 + 0.03 * clock.budget) * 0.5


def _fit_blend(selection: ensemble.Selection, fam: Family, ctx: Context, X: np.ndarray, y: np.ndarray,
               n_classes: int, clock: Clock, report: list[str]) -> tuple[Any, Any]:
    """(the ensemble refitted on `X`, the ensemble of its members' first-fold models:
    what the metrics measure). A refit running into the deadline keeps the
    first-fold ensemble (never trained on the test part), as `_refit` keeps the
    winning trial's model."""
    measured = ensemble.LGBBlend([t.result.model for t in selection.members], selection.weights, n_classes)
    overhead = _refit_overhead(clock)
    clock.report(phase="refitting", best_model_type=fam.model_type, best_score=selection.score)
    try:
        configs = fam.refit_configs([t.params for t in selection.members], ctx, len(y))
        members = [fam.fit(fam.build(params, ctx), X, y, clock.hard_deadline - overhead) for params in configs]
    except TrialInterrupted:
        report.append("ensemble: time budget reached during the refit: kept its members' first-fold models")
        return measured, measured
    report.append(f"ensemble: each member refit on all {len(y)} rows{_grown(selection.members[0].params, configs[0])}")
    return ensemble.LGBBlend(members, selection.weights, n_classes), measured


def _refit(fam: Family, winner: Trial, ctx: Context, X: np.ndarray, y: np.ndarray,
           clock: Clock, report: list[str], client: Any = None, read_fit: Any = None,
           what: str = "selection rows", grow: bool = False) -> Any:
    """The winner fitted on `X` (the whole selection part, or every row), if the
    budget allows; else the winner's own first-fold model (still never trained on the
    test part). On a cluster, an XGBOOST winner is fitted by xgboost.dask on row
    partitions: with `read_fit`, on every partition of the snapshot, read on the workers.
    `grow` (AUTO ON): the family's `refit_configs` for the rows (LightGBM: more rounds)."""
    clock.report(phase="refitting", best_model_type=winner.family, best_score=winner.score)
    overhead = _refit_overhead(clock)
    fallback = winner.result.model
    try:
        params = fam.refit_configs([winner.params], ctx, len(y))[0] if grow else winner.params
        est = fam.build(params, ctx)
        if client is not None and isinstance(est, XGBModel) and not est.early_stopping_rounds:
            from .cluster import ClusterLost, fit_xgboost_partitioned

            try:
                if read_fit is not None:
                    est = read_fit(est, clock.hard_deadline - overhead)
                else:
                    est = fit_xgboost_partitioned(client, est, X, y, clock.hard_deadline - overhead)
            except (TrialInterrupted, ClusterLost):
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. a worker holding partitions died
                report.append(f"the final fit on the cluster failed ({type(exc).__name__}: {exc}): "
                              "kept the winning trial's model")
                return fallback
            if read_fit is not None:
                report.append(f"refit on all {est.rows} non-test rows of the snapshot with xgboost.dask on the "
                              f"training cluster ({est.partitions} row partitions read by its workers)"
                              + (f"; {est.unseen} rows of a target class the sample lacked left out"
                                 if est.unseen else ""))
            else:
                report.append(f"refit on all {len(y)} {what} with xgboost.dask on the training cluster "
                              f"({est.partitions} row partitions across its workers)")
            return est
        est = fam.fit(est, X, y, clock.hard_deadline - overhead)
        report.append(f"refit on all {len(y)} {what}{_grown(winner.params, params)}"
                      + (" (of the search's sample: only an XGBoost final fit reads every partition)"
                         if read_fit is not None else ""))
        return est
    except TrialInterrupted:
        if fallback is None:
            # the trial's model stayed on the cluster (only XGBoost's returns, as
            # data): keep what the refit grew by the deadline, else fit it whole
            return _grown_so_far(fam, est, X, y, report)
        report.append("time budget reached during the refit: kept the winning trial's model")
        return fallback
    except FIT_ERRORS as exc:
        if fallback is None:
            raise
        report.append(f"refit failed ({exc}): kept the winning trial's model")
        return fallback


def _grown_so_far(fam: Family, est: Any, X: np.ndarray, y: np.ndarray, report: list[str]) -> Any:
    """A refit the deadline stopped, when no trial's model is at hand: an ensemble
    grown in chunks or rounds is a valid model with what it grew (fewer trees, rounds
    or epochs: Family.stopped_fit); one that grew nothing is fitted whole (over the
    budget, and said so)."""
    kept = fam.stopped_fit(est)
    if kept is None:
        est = fam.fit(est, X, y, float("inf"))
        report.append("time budget reached before the refit could start: refitted past MAX_RUNTIME")
        return est
    est = kept
    grown = getattr(est, fam.grow_attr) if fam.grow_attr else None
    report.append(f"time budget reached during the refit: kept the {grown} {fam.grow_attr} grown by then")
    return est
