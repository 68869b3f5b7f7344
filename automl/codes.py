"""Integer columns that are codes, not measurements: student and product ids, state,
postal and area codes. Redshift's documentation promises that Autopilot tells them
apart; the column's type cannot (both are integers), its relation to the target can.

A measurement behaves smoothly: neighbouring values have similar targets, so the
target means over narrow ranges of values predict held-out rows as well as the means
of each value on its own. A code does not: students 1041 and 1042 have nothing in
common, and only the per-value means carry its signal. `mark_codes` compares the two
on the selection rows (cross-fitted on two seeded halves, as automl/diagnose.py
scores columns): per-value means smoothed towards the prior (TARGET_SMOOTHING rows,
as the ordinal encoding's), against the means over quantile ranges holding about
two values each. An integer column with more than 10 distinct values (fewer are
used by value, as before) whose per-value means explain at least CODE_GAIN more of
the target's variance (the Brier score for classes), and at least CODE_SIGNAL in
all, is a code.

A code keeps its value as a feature and gains, for the tree encoding, the
target-ordered ordinal a text category has (automl/preprocess.py), up to
MAX_CODE_CATEGORIES most frequent values; the dense encoding keeps the value only.
Keys are the values as float64 print them ("1041.0"), the contract's key rule for
numbers (docs/model-contract.md), so no new spec op is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from .columns import ColumnInfo
from .preprocess import TARGET_SMOOTHING

INTEGER_TYPES = frozenset(("smallint", "integer", "bigint"))
#: integers with at most this many distinct values are used by value only (columns.py)
MIN_CODE_VALUES = 11
#: a code's per-value means explain at least this much more of the target's variance
#: than the means over ranges of values ...
CODE_GAIN = 0.005
#: ... and at least this much in all (held-out, cross-fitted)
CODE_SIGNAL = 0.01
#: the ranges hold about this many distinct values each, at most MAX_RANGES of them
VALUES_PER_RANGE = 2
MAX_RANGES = 64
#: fewer selection rows than this decide nothing (every integer stays numeric)
MIN_ROWS = 100


def mark_codes(infos: Sequence[ColumnInfo], raw: Mapping[str, np.ndarray], y: np.ndarray,
               n_classes: int, seed: int) -> tuple[list[ColumnInfo], list[str]]:
    """(infos with code columns' role set to "code", report lines). `raw` and `y` are
    the selection rows; `n_classes` is 0 for regression."""
    out, lines = [], []
    for info in infos:
        if info.role == "numeric" and info.pg_type in INTEGER_TYPES and info.distinct >= MIN_CODE_VALUES:
            level, ranges = code_scores(raw[info.name], y, n_classes, seed)
            if level - ranges >= CODE_GAIN and level >= CODE_SIGNAL:
                reason = (f"integer with {info.distinct} distinct values that behaves as a code: each value's "
                          f"target mean explains {level:.3f} of the target held out, ranges of values "
                          f"{ranges:.3f}; used by value and as a category")
                info = replace(info, role="code", reason=reason)
                lines.append(f"column {info.name!r}: {reason}")
        out.append(info)
    return out, lines


def code_scores(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int) -> tuple[float, float]:
    """(per-value, per-range) share of the target's variance explained on held-out
    halves, for the rows where `x` is not NULL; (0, 0) for too few rows."""
    x = np.asarray(x, dtype=np.float64)
    present = ~np.isnan(x)
    if present.sum() < MIN_ROWS:
        return 0.0, 0.0
    x = x[present]
    if n_classes:
        Y = np.zeros((len(x), n_classes))
        Y[np.arange(len(x)), np.asarray(y)[present].astype(np.int64)] = 1.0
    else:
        Y = np.asarray(y, dtype=np.float64)[present][:, None]
    total = float(((Y - Y.mean(axis=0)) ** 2).sum())
    if total <= 0.0:
        return 0.0, 0.0
    half = np.random.default_rng([seed, 606]).permutation(len(x)) < len(x) // 2
    values, by_value = np.unique(x, return_inverse=True)
    n_ranges = max(2, min(MAX_RANGES, len(values) // VALUES_PER_RANGE))
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_ranges + 1)[1:-1]))
    by_range = np.searchsorted(edges, x, side="right")
    level = _held_out_sse(by_value, len(values), Y, half, TARGET_SMOOTHING)
    ranges = _held_out_sse(by_range, len(edges) + 1, Y, half, 0.0)
    return 1.0 - level / total, 1.0 - ranges / total


def _held_out_sse(codes: np.ndarray, k: int, Y: np.ndarray, half: np.ndarray, smoothing: float) -> float:
    """Squared error of group means (pulled towards the prior by `smoothing` rows)
    fitted on each half and scored on the other."""
    sse = 0.0
    for fit in (half, ~half):
        score = ~fit
        prior = Y[fit].mean(axis=0) if fit.any() else np.zeros(Y.shape[1])
        n = np.bincount(codes[fit], minlength=k).astype(np.float64)[:, None]
        sums = np.stack([np.bincount(codes[fit], weights=Y[fit, j], minlength=k) for j in range(Y.shape[1])], axis=1)
        weight = n + smoothing
        means = np.where(weight > 0, (sums + smoothing * prior) / np.maximum(weight, 1e-300), prior)
        sse += float(((Y[score] - means[codes[score]]) ** 2).sum())
    return sse
