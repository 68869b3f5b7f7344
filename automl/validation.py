"""Splits and trial evaluation.

The data is split once into a *selection* part and a *test* part (stratified for
classification). The test part is never seen by the search: it only measures the
final model. Inside the selection part, trials are scored by k-fold
cross-validation on small data and on larger data the budget affords (a single
split is too noisy to rank models), else by a single holdout split. All splits are
seeded permutations, so the same data and seed give the same rows everywhere.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .families import PARALLEL_MIN_CELLS, Context, Family, quiet
from .metrics import relative_standard_error, row_losses, score, tune_threshold
from .problem import BINARY, REGRESSION, Objective

TEST_FRACTION = 0.2
MAX_TEST_ROWS = 50_000
#: at most this many selection rows -> cross-validation instead of one holdout split ...
CV_MAX_ROWS = 5_000
#: ... and above it, up to CV_HOLDOUT_ROWS, while the cells the trials fit (rows x
#: columns of the search's tree matrix) are at most this many per second of
#: MAX_RUNTIME: FLAML's rule (10 million cells an hour). One 20% holdout of a large
#: table ranks close configurations by noise (diamonds, 6,473 validation rows: the
#: rank correlation of validation and held-out MSE over the 12 best configurations
#: was -0.71 and 0.07 on seeds 0 and 1)
CV_CELLS_PER_SECOND = 10_000_000 / 3600
CV_HOLDOUT_ROWS = 100_000
HOLDOUT_FRACTION = 0.2
MIN_ROWS = 20


def stratified_split(y: np.ndarray | None, n: int, fraction: float, seed: int,
                     cap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(kept, split-off) index arrays; per class when `y` (class codes) is given.
    A class with one row stays in `kept` (it cannot be in both parts)."""
    rng = np.random.default_rng(seed)
    share = fraction if cap is None else min(fraction, cap / max(1, n))
    kept, off = [], []
    for idx in _class_groups(y, n):
        idx = rng.permutation(idx)
        k = int(round(share * len(idx))) if len(idx) > 1 else 0
        k = min(k, len(idx) - 1) if len(idx) > 1 else 0
        if len(idx) > 1 and k == 0 and y is not None:
            k = 1 if len(idx) >= 3 else 0
        off.append(idx[:k])
        kept.append(idx[k:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(off))


def _class_groups(y: np.ndarray | None, n: int) -> list[np.ndarray]:
    """Row indices per class (all rows as one group without classes)."""
    return [np.arange(n)] if y is None else [np.flatnonzero(y == c) for c in np.unique(y)]


def cross_validates(rows: int, columns: int, budget: float) -> bool:
    """Whether `rows` selection rows of `columns` columns are cross-validated under a
    MAX_RUNTIME of `budget` seconds (else one holdout split)."""
    return rows <= CV_MAX_ROWS or (rows <= CV_HOLDOUT_ROWS and rows * columns <= CV_CELLS_PER_SECOND * budget)


def make_folds(y: np.ndarray | None, n: int, seed: int,
               cross_validate: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """k-fold CV (k=5 up to 1000 rows, else 3) or one holdout split, as
    `cross_validates` decided."""
    if not cross_validate:
        train, val = stratified_split(y, n, HOLDOUT_FRACTION, seed + 1)
        return [(train, val)]
    k = 5 if n <= 1000 else 3
    rng = np.random.default_rng(seed + 1)
    fold_of = np.empty(n, dtype=np.int64)
    offset = 0
    for idx in _class_groups(y, n):
        idx = rng.permutation(idx)
        fold_of[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]


def folds_around(holdout: tuple[np.ndarray, np.ndarray], y: np.ndarray | None, seed: int,
                 k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """k-fold CV whose first fold is `holdout` (train, validation): its training
    rows split into k - 1 more validation parts (per class when `y` is given), so a
    configuration already scored on the holdout is cross-validated by k - 1 more
    fits of the same size (automl/confirm.py)."""
    train, val = holdout
    rng = np.random.default_rng(seed + 3)
    part_of = np.empty(len(y) if y is not None else len(train) + len(val), dtype=np.int64)
    part_of[val] = 0
    offset = 0
    for idx in _class_groups(None if y is None else y[train], len(train)):
        rows = train[rng.permutation(idx)]
        part_of[rows] = 1 + (np.arange(len(rows)) + offset) % (k - 1)
        offset += len(rows)
    return [(train, val)] + [(np.flatnonzero(part_of != f), np.flatnonzero(part_of == f)) for f in range(1, k)]


@dataclass
class TrialResult:
    score: float
    seconds: float
    #: the slowest fold's fit, in seconds: what a fit of the configuration on more
    #: rows is predicted from (train._refit_seconds)
    fit_seconds: float
    threshold: float | None
    model: Any          # fitted on the first fold's training rows
    cost_units: float
    #: the predictions on the validation rows (Evaluator.validation_rows, in row
    #: order: values, or class probabilities), for an ensemble (automl/ensemble.py);
    #: the search keeps them for each family's best few trials only
    oof: np.ndarray | None = None


class Evaluator:
    """Scores one configuration of one family on the selection part."""

    def __init__(self, matrices: dict[str, np.ndarray], y: np.ndarray,
                 folds: list[tuple[np.ndarray, np.ndarray]], objective: Objective,
                 problem_type: str, n_classes: int, seed: int,
                 fold_matrices: dict[str, list[np.ndarray]] | None = None) -> None:
        self.matrices = matrices
        #: per encoding whose spec learns from the target, one matrix per fold: all
        #: rows through that fold's spec (fitted on its training rows only), so no
        #: validation row is scored through an encoding that has seen its target
        #: (automl/preprocess.py refit_orders); other encodings use `matrices`
        self.fold_matrices = fold_matrices or {}
        self.y = y
        self.folds = folds
        self.objective = objective
        self.problem_type = problem_type
        self.n_classes = n_classes
        self.seed = seed
        rng = np.random.default_rng(seed + 2)
        # fixed row order per fold, so a fidelity-f trial uses a prefix of it
        self.orders = [rng.permutation(tr) for tr, _ in folds]

    @property
    def is_cv(self) -> bool:
        return len(self.folds) > 1

    def validation_rows(self) -> np.ndarray:
        """The rows a trial is scored on (every row under CV), in row order: what
        TrialResult.oof holds the predictions of."""
        seen = np.zeros(len(self.y), dtype=bool)
        for _, val in self.folds:
            seen[val] = True
        return np.flatnonzero(seen)

    def inputs(self, encoding: str) -> tuple[np.ndarray, list[np.ndarray] | None]:
        """An encoding's matrix and its per-fold matrices (None: the one serves every fold)."""
        return self.matrices[encoding], self.fold_matrices.get(encoding)

    def subset(self, fold: int, fidelity: float) -> np.ndarray:
        order = self.orders[fold]
        m = max(1, int(math.ceil(fidelity * len(order))))
        rows = order[:m]
        if self.problem_type != REGRESSION:
            # every class must be present for predict_proba to have k columns
            missing = np.setdiff1d(np.unique(self.y[order]), np.unique(self.y[rows]))
            if len(missing):
                extra = [order[np.flatnonzero(self.y[order] == c)[0]] for c in missing]
                rows = np.concatenate([rows, extra])
        return np.sort(rows)

    def run(self, family: Family, params: dict[str, Any], ctx: Context, fidelity: float,
            deadline: float) -> TrialResult:
        start = time.monotonic()
        X, per_fold = self.inputs(family.encoding)
        Xs = per_fold or [X] * len(self.folds)
        n = len(self.y)
        out = np.zeros((n, self.n_classes)) if self.problem_type != REGRESSION else np.zeros(n)
        seen = np.zeros(n, dtype=bool)

        fit_seconds = [0.0] * len(self.folds)

        def fold(f: int) -> Any:
            rows = self.subset(f, fidelity)
            began = time.monotonic()
            est = family.fit(family.build(params, ctx), Xs[f][rows], self.y[rows], deadline)
            fit_seconds[f] = time.monotonic() - began
            return est

        workers = min(len(self.folds), ctx.n_jobs) if X.size < PARALLEL_MIN_CELLS else 1
        if workers > 1:
            # small single-threaded fits: the folds themselves run side by side (the
            # estimators release the GIL while growing trees); each fold's model is
            # independent of scheduling, so results do not depend on the threads
            with quiet(), ThreadPoolExecutor(max_workers=workers) as pool:
                models = list(pool.map(fold, range(len(self.folds))))
        else:
            models = [fold(f) for f in range(len(self.folds))]
        for est, Xf, (_, val) in zip(models, Xs, self.folds):
            out[val] = self.predict(est, Xf[val])
            seen[val] = True
        first = models[0]
        pred = out[seen]
        value, threshold = self.scored(seen, pred)
        seconds = time.monotonic() - start
        return TrialResult(value, seconds, max(fit_seconds), threshold, first, cost_units(family, params, fidelity),
                           pred)

    def without_first(self) -> Evaluator:
        """The same evaluation without the first fold (a holdout already scored:
        automl/search.py Search._widen fits only the others)."""
        return Evaluator(self.matrices, self.y, self.folds[1:], self.objective, self.problem_type, self.n_classes,
                         self.seed, {enc: per_fold[1:] for enc, per_fold in self.fold_matrices.items()})

    def joined(self, first: TrialResult, first_oof: np.ndarray, others: TrialResult) -> TrialResult:
        """A configuration's result on every fold from its result on the first
        (`first`, its predictions `first_oof`) and on the others (`others`, from
        `without_first()`): scored on all their predictions, the first fold's model kept."""
        rows = np.concatenate([self.folds[0][1], np.sort(np.concatenate([val for _, val in self.folds[1:]]))])
        order = np.argsort(rows, kind="stable")
        return self.combined(first, others, rows[order], np.concatenate([first_oof, others.oof])[order])

    def combined(self, first: TrialResult, others: TrialResult, rows: np.ndarray,
                 pred: np.ndarray) -> TrialResult:
        """One configuration's result from two of its evaluations (`first`, whose
        model it keeps, and `others`), `pred` being their predictions of `rows`
        together: scored by this evaluator on all of them (joined; confirm.combine)."""
        value, threshold = self.scored(rows, pred)
        return TrialResult(value, first.seconds + others.seconds, max(first.fit_seconds, others.fit_seconds),
                           threshold, first.model, first.cost_units, pred)

    def score_error(self, oof: np.ndarray, threshold: float | None) -> float | None:
        """The relative standard error of a score made of the predictions `oof` of the
        validation rows (metrics.relative_standard_error of their row losses); None
        when the objective is not a mean of row losses (metrics.row_losses)."""
        rows = self.validation_rows()
        losses = row_losses(self.objective.metric, self.y[rows], oof, self.problem_type, threshold)
        return None if losses is None else relative_standard_error(losses)

    def first_fold_predictions(self, family: Family, model: Any) -> np.ndarray:
        """A first-fold model's predictions of that fold's validation rows (a holdout
        trial's `TrialResult.oof`, when the search dropped it)."""
        X, per_fold = self.inputs(family.encoding)
        return self.predict(model, (per_fold[0] if per_fold else X)[self.folds[0][1]])

    def scored(self, rows: np.ndarray, pred: np.ndarray) -> tuple[float, float | None]:
        """(score, decision threshold: binary only, tuned on them) of the predictions
        `pred` of the targets of `rows` (indices or a mask)."""
        y = self.y[rows]
        threshold = tune_threshold(self.objective, y, pred) if self.problem_type == BINARY else None
        return score(self.objective, y, pred, self.problem_type, threshold), threshold

    def predict(self, est: Any, X: np.ndarray) -> np.ndarray:
        if self.problem_type == REGRESSION:
            return np.asarray(est.predict(X), dtype=np.float64)
        return predict_proba(est, X, self.n_classes)


def predict_proba(est: Any, X: np.ndarray, n_classes: int) -> np.ndarray:
    """predict_proba with one column per class code 0..k-1, even when the estimator
    was fitted on rows missing some class."""
    proba = np.asarray(est.predict_proba(X), dtype=np.float64)
    if proba.shape[1] == n_classes:
        return proba
    full = np.zeros((len(X), n_classes))
    full[:, np.asarray(est.classes_, dtype=np.int64)] = proba
    return full


def cost_units(family: Family, params: dict[str, Any], fidelity: float) -> float:
    """Relative cost of a trial: rows used times the family's size of the
    configuration (ensemble size, epochs; LightGBM: rounds times leaves)."""
    return max(1e-6, fidelity * float(family.size(params)))
