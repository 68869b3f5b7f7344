"""Apply a fitted preprocessing spec (docs/model-contract.md) with numpy.

This is the automl side's implementation of the JSON spec: training builds every
matrix through it, so what the estimator was fitted on is, by construction, what the
spec describes. compiler/ implements the same spec independently; the two meet in the
`TrainedModel.reference_predict` equivalence tests.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

import numpy as np

_US_PER_DAY = 86_400_000_000
#: SQL types whose values are keyed as float64 (a category code kept as an integer)
NUMERIC_TYPES = frozenset(("smallint", "integer", "bigint", "real", "double precision", "numeric"))


def transform(spec: Mapping[str, Any], columns: Mapping[str, Any]) -> np.ndarray:
    """Raw input columns -> the float64 matrix described by `spec["features"]`."""
    features = spec["features"]
    n = _row_count(spec, columns)
    out = np.empty((n, len(features)), dtype=np.float64)
    cache: dict[tuple[str, str], Any] = {}
    numeric = {i["name"] for i in spec.get("inputs", []) if i.get("type") in NUMERIC_TYPES}
    for j, feat in enumerate(features):
        name = feat["input"]
        op = feat["op"]
        raw = columns[name]
        if op in ("ordinal", "one_hot"):
            # a number's key is its float64 text, however the column came (3 -> "3.0")
            keys = _cached(cache, name, "key", lambda: as_keys(as_float(raw) if name in numeric else raw))
        if op == "numeric":
            x = _cached(cache, name, "num", lambda: as_float(raw))
            out[:, j] = _fill_scale(x, feat)
        elif op == "ordinal":
            out[:, j] = _ordinal(keys, feat["categories"], float(feat["unknown"]))
        elif op == "one_hot":
            out[:, j] = (keys == feat["category"]).astype(np.float64)
        elif op == "datetime_part":
            t = _cached(cache, name, "dt", lambda: as_datetime(raw))
            out[:, j] = _fill_scale(datetime_part(t, feat["part"]), feat)
        else:
            raise ValueError(f"unknown preprocessing op {op!r}")
    return out


def _row_count(spec: Mapping[str, Any], columns: Mapping[str, Any]) -> int:
    for inp in spec.get("inputs", []):
        if inp["name"] in columns:
            return len(columns[inp["name"]])
    for col in columns.values():
        return len(col)
    return 0


def _cached(cache: dict, name: str, kind: str, make) -> Any:
    key = (name, kind)
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _fill_scale(x: np.ndarray, feat: Mapping[str, Any]) -> np.ndarray:
    x = np.where(np.isnan(x), float(feat.get("fill", 0.0)), x)
    return (x - float(feat.get("center", 0.0))) / float(feat.get("scale", 1.0))


def is_null(values: Any) -> np.ndarray:
    """NULL mask: None in object arrays, NaN in float arrays, NaT in datetimes."""
    arr = np.asarray(values)
    if arr.dtype == object:
        mask = np.equal(arr, None)
        floats = np.frompyfunc(lambda v: isinstance(v, float) and v != v, 1, 1)(arr)
        return (mask | floats.astype(bool)).astype(bool)
    if arr.dtype.kind == "f":
        return np.isnan(arr)
    if arr.dtype.kind in "mM":
        return np.isnat(arr)
    return np.zeros(arr.shape, dtype=bool)


def as_float(values: Any) -> np.ndarray:
    """Numbers/booleans/decimals -> float64 with NaN for NULL."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64)
    null = is_null(arr)
    out = np.full(arr.shape, np.nan)
    out[~null] = arr[~null].astype(np.float64)
    return out


def _key(v: Any) -> Any:
    if v is None or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    return str(v)


_key_ufunc = np.frompyfunc(_key, 1, 1)


def as_keys(values: Any) -> np.ndarray:
    """Values -> object array of comparison strings (contract: str(value); an input of
    a numeric SQL type comes here as float64, so 3 is "3.0": see `transform`); NULL ->
    None."""
    arr = np.asarray(values)
    if arr.dtype.kind == "b":
        return np.where(arr, "true", "false").astype(object)
    if not arr.size:
        return arr.astype(object)
    with np.errstate(invalid="ignore"):  # NaN's comparison with itself, in _key
        return _key_ufunc(arr.astype(object))


def _ordinal(keys: np.ndarray, categories: list[str], unknown: float) -> np.ndarray:
    out = np.full(keys.shape, unknown, dtype=np.float64)
    if not categories:
        return out
    cats = np.asarray(categories, dtype=object)
    order = np.argsort(cats.astype(str), kind="stable")
    sorted_cats = cats[order].astype(str)
    present = ~np.equal(keys, None)
    k = keys[present].astype(str)
    pos = np.clip(np.searchsorted(sorted_cats, k), 0, len(sorted_cats) - 1)
    hit = sorted_cats[pos] == k
    vals = np.where(hit, order[pos].astype(np.float64), unknown)
    out[present] = vals
    return out


def _to_naive_utc(v: Any) -> Any:
    if isinstance(v, _dt.datetime) and v.tzinfo is not None:
        return v.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return v


_naive_ufunc = np.frompyfunc(_to_naive_utc, 1, 1)


def as_datetime(values: Any) -> np.ndarray:
    """Dates/timestamps (datetime64 or Python objects; aware ones taken in UTC) -> datetime64[us]."""
    arr = np.asarray(values)
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[us]")
    if arr.dtype == object:
        arr = _naive_ufunc(arr)
        arr = np.where(is_null(arr), None, arr)
    return np.asarray(arr, dtype="datetime64[us]")


DATETIME_PARTS = ("year", "month", "day", "dayofweek", "dayofyear", "hour", "epoch_days")


def datetime_part(t: np.ndarray, part: str) -> np.ndarray:
    """One calendar part of datetime64 values as float64 (NaT -> NaN)."""
    nat = np.isnat(t)
    us = t.astype("datetime64[us]").astype(np.int64)
    days = np.floor_divide(us, _US_PER_DAY)
    if part == "epoch_days":
        val = us / _US_PER_DAY
    elif part == "dayofweek":
        val = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    elif part == "hour":
        val = (us - days * _US_PER_DAY) // 3_600_000_000
    else:
        d = t.astype("datetime64[D]")
        year = d.astype("datetime64[Y]")
        if part == "year":
            val = year.astype(np.int64) + 1970
        elif part == "month":
            val = d.astype("datetime64[M]").astype(np.int64) % 12 + 1
        elif part == "day":
            val = (d - d.astype("datetime64[M]")).astype(np.int64) + 1
        elif part == "dayofyear":
            val = (d - year).astype(np.int64) + 1
        else:
            raise ValueError(f"unknown datetime part {part!r}")
    out = np.asarray(val, dtype=np.float64)
    out[nat] = np.nan
    return out
