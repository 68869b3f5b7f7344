"""What the data holds, for the training report: a quick look at each input column on
its own, before the search, so a table that defeats the search is named as such
(one informative column, a target that one column determines, columns of noise, only
categorical inputs).

Each used input is scored alone by cross-fitted bin means: its tree-encoded feature
(the value, or the ordinal code of a category) is cut into at most MAX_BINS bins
(its distinct values when fewer), the bins' target means (regression) or majority
classes (classification) are learned on one half of the selection rows and scored on
the other, and the other way round. Against predicting without any input (held-out
R2 0, or the majority class's share), that says whether the column carries signal on
its own and whether it determines the target. Cheap (a few sorts per column) and
seeded, so the same data gives the same lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .columns import ColumnInfo
from .preprocess import MAX_ONE_HOT, MAX_ORDINAL_CATEGORIES
from .problem import REGRESSION

MAX_BINS = 64
#: a column "determines" the target when alone it scores at least this (held-out R2 or
#: accuracy), well above the constant baseline
DETERMINES = 0.99
#: signal: at least this much above the constant baseline (R2 or accuracy points)
SIGNAL = 0.01
MAX_NAMED = 5


def findings(infos: Sequence[ColumnInfo], spec: dict[str, Any], X: np.ndarray, y: np.ndarray,
             problem_type: str, seed: int) -> list[str]:
    """Report lines: what the inputs, each on its own, say about the target."""
    used = [i for i in infos if i.used]
    if not used or len(y) < 20:
        return []
    rng = np.random.default_rng([seed, 505])
    half = rng.permutation(len(y)) < len(y) // 2
    base = _score(np.zeros(len(y)), y, half, problem_type)
    scores: dict[str, float] = {}
    for j, feat in enumerate(spec["features"]):
        s = _score(X[:, j], y, half, problem_type)
        scores[feat["input"]] = max(scores.get(feat["input"], -np.inf), s)
    what = "held-out R2" if problem_type == REGRESSION else "held-out accuracy"
    lines = []
    for info in used:
        if info.role == "categorical" and info.distinct > MAX_ORDINAL_CATEGORIES:
            lines.append(f"data: column {info.name!r} has {info.distinct} distinct values: its "
                         f"{MAX_ORDINAL_CATEGORIES} most frequent are categories (for trees; {MAX_ONE_HOT} for "
                         "linear models), the rest are treated as unseen")
    if all(i.role == "categorical" for i in used) and len(used) > 1:
        lines.append(f"data: every input is categorical ({len(used)} text columns)")
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    top, top_score = ranked[0]
    if top_score >= DETERMINES and top_score - base >= 0.05:
        lines.append(f"data: column {top!r} alone determines the target ({what} {top_score:.3f} from it alone, "
                     f"{base:.3f} without inputs)")
    signal = [name for name, s in ranked if s - base >= SIGNAL]
    quiet = [name for name, s in ranked if s - base < SIGNAL]
    if len(signal) == 1 and len(scores) > 1:
        lines.append(f"data: only column {signal[0]!r} shows signal on its own ({what} {top_score:.3f}, "
                     f"{base:.3f} without inputs)")
    if quiet and len(quiet) >= max(2, len(scores) // 2):
        named = ", ".join(repr(n) for n in quiet[:MAX_NAMED]) + (", ..." if len(quiet) > MAX_NAMED else "")
        lines.append(f"data: {len(quiet)} of {len(scores)} inputs show no signal on their own ({named})")
    if not signal:
        lines.append(f"data: no input shows signal on its own (best {top!r}: {what} {top_score:.3f}, "
                     f"{base:.3f} without inputs)")
    return lines


def _score(x: np.ndarray, y: np.ndarray, half: np.ndarray, problem_type: str) -> float:
    """Held-out score of bin means on `x`, fitted on each half and scored on the other."""
    x = np.asarray(x, dtype=np.float64)
    values = np.unique(x)
    bins = min(MAX_BINS, max(2, len(y) // 20))
    if len(values) <= bins:
        codes = np.searchsorted(values, x)
        k = len(values)
    else:
        edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
        codes = np.searchsorted(edges, x, side="right")
        k = len(edges) + 1
    if problem_type == REGRESSION:
        yf = np.asarray(y, dtype=np.float64)
        pred = np.empty(len(y))
        for a in (half, ~half):
            b = ~a
            sums = np.bincount(codes[a], weights=yf[a], minlength=k)
            counts = np.bincount(codes[a], minlength=k)
            prior = float(yf[a].mean()) if a.any() else 0.0
            means = np.where(counts > 0, sums / np.maximum(counts, 1), prior)
            pred[b] = means[codes[b]]
        sst = float(((yf - yf.mean()) ** 2).sum())
        return 1.0 - float(((yf - pred) ** 2).sum()) / sst if sst > 0 else 0.0
    yi = np.asarray(y, dtype=np.int64)
    n_classes = int(yi.max()) + 1
    pred = np.empty(len(y), dtype=np.int64)
    for a in (half, ~half):
        b = ~a
        table = np.zeros((k, n_classes))
        np.add.at(table, (codes[a], yi[a]), 1.0)
        majority = int(np.argmax(np.bincount(yi[a], minlength=n_classes)))
        best = np.where(table.sum(axis=1) > 0, table.argmax(axis=1), majority)
        pred[b] = best[codes[b]]
    return float(np.mean(pred == yi))
