"""Data for the compiler tests: mixed-type Arrow tables shaped like Postgres results,
the raw numpy columns the predictor receives, and adversarial batches.

Everything is generated from a seed, so a fresh process can rebuild the same
columns (the round-trip test predicts in a separate interpreter).
"""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pyarrow as pa

PLANS = np.array(["basic", "pro", "team", "enterprise"], dtype=object)
SEGMENTS = np.array(["north", "south", "east"], dtype=object)


#: the `store` column's codes and the effect of each (the same for every seed)
STORES = np.arange(4100, 4120, dtype=np.int64)
STORE_EFFECT = np.random.default_rng(404).normal(0.0, 2.0, len(STORES))


def mixed_table(n: int, seed: int, target: str, codes: bool = False) -> pa.Table:
    """A table with a text category (with NULLs), a double with NULLs, a date, a
    boolean, a numeric (Decimal) and an integer, plus one target:
    `binary` (boolean), `multiclass` (text, 3 classes), `regression` (double),
    `positive` (double > 0) or `unit` (double in [0, 1]). With `codes`, also `store`:
    integer codes (20 stores, some NULL), each with its own effect on the target, which
    automl encodes by value and as a category (automl/codes.py)."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(np.append(PLANS, None), n, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    age = rng.normal(40, 12, n)
    age[rng.random(n) < 0.1] = np.nan
    day = rng.integers(0, 2000, n)
    signup = [dt.date(2018, 1, 1) + dt.timedelta(days=int(d)) for d in day]
    paid = rng.random(n) < 0.5
    price = [decimal.Decimal(f"{x:.2f}") if x > 8 else None for x in rng.uniform(0, 100, n)]
    visits = rng.poisson(5, n).astype(np.int64)
    score = ((plan == "basic") * 1.5 - (plan == "enterprise") * 1.0 + np.nan_to_num(age, nan=40.0) / 12
             + (day > 1200) * 0.8 - paid * 0.7 + visits * 0.2 + rng.normal(0, 0.6, n))
    store = rng.integers(0, len(STORES), n)
    if codes:
        score = score + STORE_EFFECT[store]
    cols = {
        "plan": pa.array(list(plan), type=pa.string()),
        "age": pa.array(age, from_pandas=True),
        "signup": pa.array(signup, type=pa.date32()),
        "paid": pa.array(paid),
        "price": pa.array(price, type=pa.decimal128(10, 2)),
        "visits": pa.array(visits),
    }
    if codes:
        cols["store"] = pa.array(STORES[store], mask=rng.random(n) < 0.05)
    if target == "binary":
        cols["label"] = pa.array(score > np.quantile(score, 0.6))
    elif target == "multiclass":
        cut = np.quantile(score, [0.33, 0.66])
        cols["label"] = pa.array(list(SEGMENTS[np.searchsorted(cut, score)]), type=pa.string())
    elif target == "regression":
        cols["label"] = pa.array(score * 10.0 + 3.0)
    elif target == "positive":  # for reg:tweedie and reg:squaredlogerror
        cols["label"] = pa.array(np.exp(score / 3.0))
    elif target == "unit":  # values in [0, 1], for reg:logistic
        cols["label"] = pa.array(1.0 / (1.0 + np.exp(-(score - np.mean(score)))))
    elif target != "none":
        raise ValueError(target)
    return pa.table(cols)


def raw_columns(table: pa.Table, drop: str | None = "label") -> dict[str, np.ndarray]:
    """The numpy form a proxy hands over: float64 with NaN for numbers and booleans,
    datetime64[us] with NaT for dates, object arrays with None for text."""
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        if name == drop:
            continue
        col = table.column(name)
        t = col.type
        if pa.types.is_date(t) or pa.types.is_timestamp(t):
            out[name] = col.to_numpy(zero_copy_only=False).astype("datetime64[us]")
        elif pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            out[name] = np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        else:
            out[name] = np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)
    return out


def adversarial_columns(inputs: list[dict], n: int = 200, seed: int = 7) -> dict[str, np.ndarray]:
    """A batch mixing NULLs (None and NaN), unseen categories, empty and non-ASCII
    text, extreme but finite numbers and far-away dates, for the spec's inputs."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for inp in inputs:
        name, pg = inp["name"], inp["type"]
        if pg == "text":
            pool = np.array(list(PLANS) + list(SEGMENTS) + [None, "", "never-seen", "plän ünïcode", "BASIC", " pro"],
                            dtype=object)
            out[name] = rng.choice(pool, n)
        elif pg in ("date", "timestamp", "timestamp with time zone"):
            pool = np.array(["NaT", "1900-01-01", "1970-01-01", "2019-06-15", "2021-02-28T23:59:59",
                             "2262-04-11"], dtype="datetime64[us]")
            out[name] = rng.choice(pool, n)
        elif pg == "boolean":
            out[name] = rng.choice(np.array([0.0, 1.0, np.nan]), n)
        else:
            pool = np.array([np.nan, 0.0, -0.0, 1.0, -1.0, 1e-300, 40.0, -1e30, 1e30, 3.0e38, -3.0e38,
                             123456789.125, 0.1])
            out[name] = rng.choice(pool, n)
    return out


def as_object_columns(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same batch with every column as an object array and NULLs as None — how a
    driver decoding text-format rows may hand it over."""
    out = {}
    for name, col in columns.items():
        if col.dtype.kind == "M":
            obj = col.astype("datetime64[us]").astype(object)
            obj[np.isnat(col)] = None
        elif col.dtype.kind == "f":
            obj = col.astype(object)
            obj[np.isnan(col)] = None
        else:
            obj = col.astype(object)
        out[name] = obj
    return out


def take(columns: dict[str, np.ndarray], rows) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in columns.items()}
