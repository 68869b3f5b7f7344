"""Fit the preprocessing spec (docs/model-contract.md) from training columns.

Two encodings, chosen per estimator family, both expressed in the contract's JSON ops:

* `tree`: tree ensembles are invariant to scaling, so numbers pass through unscaled;
  NULL becomes a sentinel just below the column's minimum (trees can then split
  missing values off on their own); a categorical column becomes one `ordinal`
  feature whose category order follows the smoothed target mean (for multiclass, the
  categories' frequency order; MULTICLASS_ORDERS gives one feature per class instead),
  so a single threshold separates high-target from low-target categories, and
  unseen/NULL values land where the overall mean would.
* `dense`: linear models, MLPs and k-means need comparable scales: numbers are
  median-filled and standardised; categoricals become `one_hot` indicators for the
  frequent categories (unseen, rare and NULL values give all zeros).

Every learned number is plain JSON; applying it is `spec.transform`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .columns import ColumnInfo
from .spec import as_datetime, as_float, as_keys, datetime_part

SPEC_VERSION = 1
MAX_ORDINAL_CATEGORIES = 1000
#: an integer code (automl/codes.py) keeps this many of its most frequent values as
#: categories: ids outnumber a text column's categories (a rating table's thousands of
#: students), and each carries its own effect
MAX_CODE_CATEGORIES = 5000
MAX_ONE_HOT = 30
#: smoothing weight (in rows) pulling a rare category's target mean to the prior
TARGET_SMOOTHING = 10.0
#: with MULTICLASS_ORDERS, multiclass targets with at most this many classes get one
#: target-ordered ordinal per class for each category (tree encoding); else one
#: frequency-ordered. Off: measured worse at 30 s, seeds 0-2 (docs/automl.md, "What
#: each lever did": chile 0.6693 frequency vs 0.6614 per class, bundesliga 0.5236 vs
#: 0.5200; the orders are fitted on the rows the folds validate on, so more of them
#: overfit); the benchmark's variant mlproxy_classorders turns it on
MAX_CLASS_ORDERS = 8
MULTICLASS_ORDERS = False
DATETIME_CANDIDATES = ("year", "month", "day", "dayofweek", "dayofyear", "hour", "epoch_days")


def fit_spec(
    infos: Sequence[ColumnInfo],
    raw: Mapping[str, np.ndarray],
    y: np.ndarray | None,
    encoding: str,
    target_kind: str = "none",
) -> dict[str, Any]:
    """Fit a spec for all used columns. `y` is the encoded training target (class
    index or float) aligned with `raw`; `target_kind` is 'regression', 'binary',
    'multiclass' or 'none' (it decides how categories are ordered)."""
    features: list[dict[str, Any]] = []
    for info in infos:
        if info.used:
            features.extend(fit_column(info, raw[info.name], y, encoding, target_kind))
    return make_spec(infos, features)


def make_spec(infos: Sequence[ColumnInfo], features: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": SPEC_VERSION,
        "inputs": [{"name": i.name, "type": i.pg_type} for i in infos],
        "features": features,
    }


def fit_column(info: ColumnInfo, values: np.ndarray, y: np.ndarray | None,
               encoding: str, target_kind: str) -> list[dict[str, Any]]:
    if info.role in ("numeric", "boolean"):
        x = as_float(values)
        return [numeric_feature(info.name, "numeric", x, encoding)]
    if info.role == "code":
        # an integer code (automl/codes.py): its value, and for trees its categories too
        x = as_float(values)
        value = numeric_feature(info.name, "numeric", x, encoding)
        if encoding != "tree":
            return [value]
        keys, limit = _category_keys(info, values)
        return [value, *category_features(info.name, keys, y, target_kind, limit)]
    if info.role == "datetime":
        out = []
        for part, x in datetime_series(info, values):
            finite = x[~np.isnan(x)]
            if len(np.unique(finite)) > 1:
                feat = numeric_feature(info.name, "datetime_part", x, encoding)
                feat["part"] = part
                out.append(feat)
        return out
    if info.role == "categorical":
        if encoding == "tree":
            keys, limit = _category_keys(info, values)
            return category_features(info.name, keys, y, target_kind, limit)
        return one_hot_features(info.name, as_keys(values), MAX_ONE_HOT)
    raise ValueError(f"cannot encode role {info.role!r}")


def _category_keys(info: ColumnInfo, values: np.ndarray) -> tuple[np.ndarray, int]:
    """A tree category's keys and how many categories it keeps: an integer code is
    keyed by its float64 text (as spec.transform keys a numeric input), a text
    column by its value."""
    if info.role == "code":
        return as_keys(as_float(values)), MAX_CODE_CATEGORIES
    return as_keys(values), MAX_ORDINAL_CATEGORIES


def category_features(name: str, keys: np.ndarray, y: np.ndarray | None, target_kind: str,
                      limit: int) -> list[dict[str, Any]]:
    """The tree encoding of a category: one target-ordered ordinal (binary,
    regression), one frequency-ordered for a multiclass target (one per class with
    MULTICLASS_ORDERS, up to MAX_CLASS_ORDERS classes); the `limit` most frequent
    categories kept."""
    if target_kind == "multiclass" and y is not None and MULTICLASS_ORDERS:
        classes = np.unique(np.asarray(y))
        if len(classes) <= MAX_CLASS_ORDERS:
            # one ordinal per class, categories ordered by their smoothed rate of
            # that class: a frequency order separates nothing a class depends on
            return [ordinal_feature(name, keys, (np.asarray(y) == k).astype(np.float64), "binary", limit=limit)
                    for k in classes]
    return [ordinal_feature(name, keys, y, target_kind, limit=limit)]


def learns_from_target(infos: Sequence[ColumnInfo], encoding: str, target_kind: str) -> bool:
    """Whether `fit_spec` reads the target for this encoding: the tree encoding orders
    categories (text columns and integer codes) by their target mean. Validation
    must not score rows whose own target placed their category: such a spec's orders
    are fitted again on each fold's training rows (`refit_orders`)."""
    ordered = target_kind in ("regression", "binary") or (target_kind == "multiclass" and MULTICLASS_ORDERS)
    return encoding == "tree" and ordered and any(i.role in ("categorical", "code") for i in infos)


def refit_orders(spec: dict[str, Any], infos: Sequence[ColumnInfo], raw: Mapping[str, np.ndarray],
                 y: np.ndarray, target_kind: str, keep: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`spec` with every category order fitted again from these rows (a fold's
    training rows) and their target: the same features in the same places (so the
    matrix keeps its columns), only which category gets which ordinal changes.
    Columns in `keep` (a PREPROCESSORS plan's own, lexically ordered) stay as they are."""
    infos_by_name = {i.name: i for i in infos}
    refitted: dict[str, Any] = {}
    features = []
    for feat in spec["features"]:
        info = infos_by_name.get(feat["input"])
        if feat["op"] != "ordinal" or info is None or info.name in keep or info.role not in ("categorical", "code"):
            features.append(feat)
            continue
        if info.name not in refitted:
            keys, limit = _category_keys(info, raw[info.name])
            refitted[info.name] = iter(category_features(info.name, keys, y, target_kind, limit))
        features.append(next(refitted[info.name]))
    return {**spec, "features": features}


def datetime_series(info: ColumnInfo, values: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(part, float values) for every calendar part that applies to the column's type."""
    t = as_datetime(values)
    return [(part, datetime_part(t, part)) for part in DATETIME_CANDIDATES
            if not (part == "hour" and info.pg_type == "date")]


def numeric_feature(name: str, op: str, x: np.ndarray, encoding: str,
                    scale: bool | None = None, fill: str | None = None) -> dict[str, Any]:
    """A numeric/datetime_part feature: fill value for NULL plus optional standardisation.

    `fill` is 'sentinel' (below the minimum, for trees) or 'median'; `scale`
    standardises. Both default from the encoding."""
    finite = x[~np.isnan(x)]
    fill = fill or ("sentinel" if encoding == "tree" else "median")
    scale = (encoding != "tree") if scale is None else scale
    if len(finite) == 0:
        fill_value = 0.0
    elif fill == "sentinel":
        lo, hi = float(finite.min()), float(finite.max())
        fill_value = lo - max(1.0, 0.1 * (hi - lo)) if len(finite) < len(x) else float(np.median(finite))
    elif fill == "mean":
        fill_value = float(finite.mean())
    else:
        fill_value = float(np.median(finite))
    center, spread = 0.0, 1.0
    if scale and len(finite):
        filled = np.where(np.isnan(x), fill_value, x)
        center = float(filled.mean())
        std = float(filled.std())
        spread = std if std > 1e-12 else 1.0
    feat = {"input": name, "op": op, "fill": fill_value, "center": center, "scale": spread}
    return feat


def category_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    present = keys[~np.equal(keys, None)].astype(str)
    cats, counts = np.unique(present, return_counts=True)
    # most frequent first, ties by name: deterministic regardless of row order
    order = np.lexsort((cats, -counts))
    return cats[order], counts[order]


def ordinal_feature(name: str, keys: np.ndarray, y: np.ndarray | None, target_kind: str,
                    order: str = "auto", limit: int = MAX_ORDINAL_CATEGORIES) -> dict[str, Any]:
    cats, counts = category_counts(keys)
    cats, counts = cats[:limit], counts[:limit]
    unknown = float(len(cats))
    if order == "auto" and y is not None and target_kind in ("regression", "binary") and len(cats):
        yf = np.asarray(y, dtype=np.float64)
        prior = float(yf.mean())
        present = ~np.equal(keys, None)
        k = keys[present].astype(str)
        yk = yf[present]
        sorter = np.argsort(cats)
        pos = np.searchsorted(cats[sorter], k)
        pos = np.clip(pos, 0, len(cats) - 1)
        hit = cats[sorter][pos] == k
        idx = sorter[pos[hit]]
        sums = np.bincount(idx, weights=yk[hit], minlength=len(cats))
        n = np.bincount(idx, minlength=len(cats)).astype(np.float64)
        smoothed = (sums + TARGET_SMOOTHING * prior) / (n + TARGET_SMOOTHING)
        rank = np.lexsort((cats, smoothed))
        cats, smoothed = cats[rank], smoothed[rank]
        # unseen/NULL sit where the prior falls in the ordering
        unknown = float(np.searchsorted(smoothed, prior)) - 0.5
    elif order == "lexical":
        cats = np.sort(cats)
        unknown = -1.0
    return {"input": name, "op": "ordinal", "categories": [str(c) for c in cats], "unknown": unknown}


def one_hot_features(name: str, keys: np.ndarray, limit: int | None) -> list[dict[str, Any]]:
    cats, counts = category_counts(keys)
    if limit is not None:
        # a category seen once or twice gives a coefficient fitted to noise
        keep = counts >= min(3, max(1, int(counts.max()) // 2)) if len(counts) else counts.astype(bool)
        cats = cats[keep][:limit]
    return [{"input": name, "op": "one_hot", "category": str(c)} for c in cats]
