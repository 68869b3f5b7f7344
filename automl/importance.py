"""Feature importances per input column (for EXPLAIN_MODEL), summing to 1.

Forests report impurity importances and linear models |coefficient| (on
standardised features), both free. Gradient boosting and MLPs have neither, so
they get permutation importance on the held-out rows: how much the loss grows when
one input column (all of its derived features at once) is shuffled. Importance of
an input is the sum over the features it feeds; dropped inputs get 0.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from .columns import ColumnInfo
from .families import Family
from .problem import CLUSTERING, REGRESSION
from .validation import predict_proba

MAX_PERMUTATION_ROWS = 1000


def feature_importances(fam: Family, est: Any, spec: dict[str, Any], infos: Sequence[ColumnInfo],
                        X: np.ndarray, y: np.ndarray | None, problem_type: str, n_classes: int,
                        seed: int, deadline: float) -> dict[str, float]:
    inputs = [f["input"] for f in spec["features"]]
    per_feature = _per_feature(fam, est, X, y, inputs, problem_type, n_classes, seed, deadline)
    totals = {i.name: 0.0 for i in infos}
    if per_feature is not None:
        for name, value in zip(inputs, per_feature):
            totals[name] += max(0.0, float(value))
    total = sum(totals.values())
    if total <= 0:
        used = sorted(set(inputs), key=inputs.index)
        return {name: (1.0 / len(used) if name in used else 0.0) for name in totals} if used else totals
    return {name: value / total for name, value in totals.items()}


def _per_feature(fam: Family, est: Any, X: np.ndarray, y: np.ndarray | None, inputs: list[str],
                 problem_type: str, n_classes: int, seed: int, deadline: float) -> np.ndarray | None:
    if hasattr(est, "feature_importances_"):
        return np.asarray(est.feature_importances_, dtype=np.float64)
    if hasattr(est, "coef_"):
        return np.abs(np.atleast_2d(est.coef_)).sum(axis=0)
    if problem_type == CLUSTERING:
        centers = np.asarray(est.cluster_centers_)
        sizes = np.bincount(est.labels_, minlength=len(centers)).astype(np.float64)
        mean = (sizes[:, None] * centers).sum(axis=0) / sizes.sum()
        return (sizes[:, None] * (centers - mean) ** 2).sum(axis=0)
    if y is None or len(y) < 2:
        return None
    permuted = _permutation(est, X, y, inputs, problem_type, n_classes, seed, deadline)
    if permuted is None and hasattr(est, "gain_importances"):
        return est.gain_importances()  # the deadline came first: the booster's own gains
    return permuted


def _permutation(est: Any, X: np.ndarray, y: np.ndarray, inputs: list[str], problem_type: str,
                 n_classes: int, seed: int, deadline: float) -> np.ndarray | None:
    rng = np.random.default_rng([seed, 303])
    if len(X) > MAX_PERMUTATION_ROWS:
        rows = np.sort(rng.choice(len(X), MAX_PERMUTATION_ROWS, replace=False))
        X, y = X[rows], y[rows]

    def loss(M: np.ndarray) -> float:
        if problem_type == REGRESSION:
            return float(skm.mean_squared_error(y, est.predict(M)))
        proba = np.clip(predict_proba(est, M, n_classes), 1e-15, 1.0)
        return float(skm.log_loss(y, proba / proba.sum(axis=1, keepdims=True), labels=np.arange(n_classes)))

    base = loss(X)
    out = np.zeros(X.shape[1])
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(inputs):
        groups.setdefault(name, []).append(j)
    for cols in groups.values():
        if time.monotonic() > deadline:
            return None
        M = X.copy()
        M[:, cols] = X[rng.permutation(len(X))][:, cols]
        # spread the input's importance over its features; only the sum is used
        out[cols] = (loss(M) - base) / len(cols)
    return out
