"""Column roles: what each input column is and how (whether) it is used.

Arrow types from Postgres map to four kinds (numeric, boolean, text, datetime); each
column then gets a role: `numeric`, `boolean`, `categorical`, `datetime`, or `dropped`
(constant, all NULL, or ID-like); with the target known, automl/codes.py makes an
integer column that behaves as a code (an id, a state code) a `code`. Columns are also converted here to the same raw
numpy form the compiled predictor receives (float64 with NaN, object with None,
datetime64 with NaT), so training goes through exactly the inference-time path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import UnsupportedColumnType

#: A text column whose distinct values exceed this share of its non-NULL rows is an
#: identifier (name, e-mail, order number), not a category: it cannot generalise.
ID_DISTINCT_SHARE = 0.9
#: ID detection needs enough rows to be meaningful.
ID_MIN_ROWS = 30
#: unique integers spanning at most this multiple of their count look like a serial key
ID_SPAN_FACTOR = 2.0


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    pg_type: str     # Postgres type name, for the preprocessing spec's `inputs`
    kind: str        # numeric | boolean | text | datetime
    role: str        # numeric | boolean | categorical | datetime | dropped | code (automl/codes.py)
    reason: str      # why this role (shown in the training report)
    distinct: int
    null_share: float

    @property
    def used(self) -> bool:
        return self.role != "dropped"


def pg_type_name(t: pa.DataType) -> str:
    """Postgres type name for an Arrow type (raises UnsupportedColumnType)."""
    if pa.types.is_dictionary(t):
        return pg_type_name(t.value_type)
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return "smallint"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "integer"
    if pa.types.is_integer(t):
        return "bigint"
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "real"
    if pa.types.is_float64(t):
        return "double precision"
    if pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return "text"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp with time zone" if t.tz else "timestamp"
    raise UnsupportedColumnType(f"unsupported type {t}")


_KINDS = {
    "boolean": "boolean", "text": "text", "date": "datetime", "timestamp": "datetime",
    "timestamp with time zone": "datetime",
}


def kind_of(t: pa.DataType) -> str:
    """numeric | boolean | text | datetime (raises UnsupportedColumnType)."""
    return _KINDS.get(pg_type_name(t), "numeric")


def check_supported(name: str, t: pa.DataType) -> None:
    try:
        pg_type_name(t)
    except UnsupportedColumnType:
        raise UnsupportedColumnType(
            f"column {name!r} has type {t}, which CREATE MODEL cannot use",
            hint="cast it to text, a number, boolean, date or timestamp in the FROM query, or leave it out") from None


def to_raw(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Arrow column -> the numpy form the predictor receives for that SQL type."""
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type) if isinstance(col, pa.Array) else pa.chunked_array(
            [c.dictionary_decode() for c in col.chunks], type=t.value_type)
        t = col.type
    if pa.types.is_null(t):
        return np.full(len(col), None, dtype=object)
    kind = kind_of(t)
    if kind in ("numeric", "boolean"):
        x = np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        # float8 'Infinity' carries no usable magnitude: train on it as missing
        inf = np.isinf(x)
        return np.where(inf, np.nan, x) if inf.any() else x
    if kind == "datetime":
        if pa.types.is_date(t):
            col = pc.cast(col, pa.date32())
            return col.to_numpy(zero_copy_only=False).astype("datetime64[us]")
        return col.to_numpy(zero_copy_only=False).astype("datetime64[us]")
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)


def describe(name: str, t: pa.DataType, raw: np.ndarray) -> ColumnInfo:
    """Decide a column's role from its type and its (training) values."""
    from .spec import is_null

    pg = pg_type_name(t)
    kind = kind_of(t)
    null = is_null(raw)
    n = len(raw)
    present = raw[~null]
    distinct = len(np.unique(present.astype(str) if kind == "text" else present)) if len(present) else 0
    null_share = float(null.mean()) if n else 1.0

    def info(role: str, reason: str) -> ColumnInfo:
        return ColumnInfo(name, pg, kind, role, reason, distinct, null_share)

    if distinct == 0:
        return info("dropped", "all values are NULL")
    if distinct == 1:
        return info("dropped", "constant (a single distinct value)")
    if kind == "text":
        if len(present) >= ID_MIN_ROWS and distinct > ID_DISTINCT_SHARE * len(present):
            return info("dropped", f"ID-like: {distinct} distinct values in {len(present)} rows")
        return info("categorical", f"text with {distinct} distinct values")
    if kind == "boolean":
        return info("boolean", "boolean, encoded 0/1")
    if kind == "datetime":
        return info("datetime", "date/time, expanded into calendar parts")
    if pa.types.is_integer(t) and len(present) >= ID_MIN_ROWS and distinct == len(present):
        # unique integers packed densely (a sample of 1..N, as training rows of a
        # serial key are): a row number, not a measurement
        span = float(np.max(present) - np.min(present)) + 1.0
        if span <= ID_SPAN_FACTOR * distinct:
            return info("dropped", "ID-like: unique integers forming a dense sequence")
    if pa.types.is_integer(t) and distinct <= 10:
        return info("numeric", f"integer with {distinct} distinct values (ordered categories, used by value)")
    return info("numeric", "numeric")
