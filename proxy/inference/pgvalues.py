"""Predictions to Postgres wire values, for a whole batch at once.

`encode_values` returns what `DataRowBatch.splice` takes: one int32 length per row
(-1 for NULL) and the concatenated non-NULL payloads, in exactly the bytes Postgres
itself would send for the column's type in the client's format (0 text, 1 binary).
Everything is whole-array numpy/Arrow work except numeric (see pgnumeric) and the
rare float texts outside the band Arrow prints like Postgres (see pgfloat).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .pgfloat import float_texts
from .pgnumeric import numeric_binary, numeric_text
from .strings import payload_of

TEXT, BINARY = 0, 1

_ALIASES = {
    "bool": "boolean", "boolean": "boolean",
    "int2": "smallint", "smallint": "smallint",
    "int": "integer", "int4": "integer", "integer": "integer",
    "int8": "bigint", "bigint": "bigint",
    "float4": "real", "real": "real",
    "float8": "double precision", "float": "double precision",
    "double precision": "double precision",
    "numeric": "numeric", "decimal": "numeric",
    "text": "text", "varchar": "text", "character varying": "text",
    "json": "json", "jsonb": "jsonb",
}
_INT_WIDTH = {"smallint": 2, "integer": 4, "bigint": 8}
_FLOAT_BITS = {"real": 32, "double precision": 64}
_JSONB_VERSION = 1

Encoded = tuple[np.ndarray, bytes]  # sizes of the non-NULL values, their payload


class ValueOutOfRange(ValueError):
    """A prediction does not fit the function's declared type (SQLSTATE 22003)."""

    sqlstate = "22003"


@lru_cache(maxsize=256)
def canonical_type(pg_type: str) -> str:
    """The type family of a declared type name ('int4', 'varchar(20)', ...); cached:
    every batch asks, a single-row one too."""
    name = re.sub(r"\s*\(.*\)\s*$", "", " ".join(pg_type.lower().split()))
    try:
        return _ALIASES[name]
    except KeyError:
        raise ValueError(f"unsupported result type {pg_type!r}") from None


def null_mask(values: np.ndarray) -> np.ndarray:
    """NULL rows of a prediction array: None, and NaN (floats or objects)."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.asarray((values == None) | (values != values), dtype=bool)  # noqa: E711
    return np.zeros(len(values), dtype=bool)


def encode_values(values: np.ndarray, pg_type: str, fmt: int,
                  nulls: np.ndarray | None = None) -> tuple[np.ndarray, bytes]:
    """Per-row lengths (-1 = NULL) and concatenated payload of `values` as `pg_type`
    in format `fmt`. Without `nulls`, None and NaN are NULL; with it, NaN in a float
    column is the value 'NaN'."""
    if fmt not in (TEXT, BINARY):
        raise ValueError(f"unsupported format code {fmt}")
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError("values must be one-dimensional")
    null = null_mask(values) if nulls is None else np.asarray(nulls, dtype=bool)
    present = values[~null]
    sizes, payload = _ENCODERS[canonical_type(pg_type)](present, fmt)
    lengths = np.full(len(values), -1, dtype=np.int32)
    lengths[~null] = sizes
    return lengths, payload


def _fixed(array: np.ndarray) -> Encoded:
    return np.full(len(array), array.dtype.itemsize, dtype=np.int32), array.tobytes()


def _as_float(present: np.ndarray) -> np.ndarray:
    return np.asarray(present, dtype=np.float64)


def _boolean(present: np.ndarray, fmt: int) -> Encoded:
    truth = np.asarray(present).astype(bool)
    if fmt == BINARY:
        return _fixed(truth.astype(np.uint8))
    return _fixed(np.where(truth, ord("t"), ord("f")).astype(np.uint8))


def _integers(width: int) -> Callable[[np.ndarray, int], Encoded]:
    limit = 2 ** (8 * width - 1)

    def encode(present: np.ndarray, fmt: int) -> Encoded:
        if present.dtype.kind in "iub":
            ints = present.astype(np.int64)
            bad = (ints < -limit) | (ints >= limit)
        else:
            # float -> integer rounds half to even, like Postgres' casts
            rounded = np.rint(_as_float(present))
            bad = ~np.isfinite(rounded) | (rounded < -limit) | (rounded >= limit)
            ints = np.where(bad, 0, rounded).astype(np.int64)
        if bad.any():
            raise ValueOutOfRange(f"{8 * width}-bit integer out of range")
        if fmt == BINARY:
            return _fixed(ints.astype(f">i{width}"))
        return payload_of(pc.cast(pa.array(ints), pa.string()))

    return encode


def _floats(bits: int) -> Callable[[np.ndarray, int], Encoded]:
    def encode(present: np.ndarray, fmt: int) -> Encoded:
        floats = _as_float(present)
        if bits == 32:
            floats = _to_float4(floats)
        if fmt == BINARY:
            return _fixed(floats.astype(f">f{bits // 8}"))
        return float_texts(floats, bits)

    return encode


def _to_float4(floats: np.ndarray) -> np.ndarray:
    """float8 -> float4 rounding to nearest, with Postgres' range errors."""
    with np.errstate(over="ignore"):
        singles = floats.astype(np.float32)
    if np.any(np.isinf(singles) & np.isfinite(floats)):
        raise ValueOutOfRange("value out of range: overflow")
    if np.any((singles == 0) & (floats != 0)):
        raise ValueOutOfRange("value out of range: underflow")
    return singles


def _numeric(present: np.ndarray, fmt: int) -> Encoded:
    floats = _as_float(present).tolist()
    if fmt == BINARY:
        parts = [numeric_binary(v) for v in floats]
        return np.fromiter(map(len, parts), np.int32, len(parts)), b"".join(parts)
    return payload_of(pa.array([numeric_text(v) for v in floats], type=pa.string()))


def _text(present: np.ndarray, fmt: int) -> Encoded:
    kind = present.dtype.kind
    if kind == "f":
        return float_texts(present, 64)
    if kind == "b":
        return payload_of(pa.array(np.where(present, "true", "false"), type=pa.string()))
    if kind in "iu":
        return payload_of(pc.cast(pa.array(present.astype(np.int64)), pa.string()))
    try:
        return payload_of(pa.array(present, type=pa.string()))
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # labels of mixed Python types
        return payload_of(pa.array([str(v) for v in present], type=pa.string()))


def _jsonb(present: np.ndarray, fmt: int) -> Encoded:
    sizes, payload = _text(present, fmt)
    if fmt == TEXT:
        return sizes, payload
    # jsonb_send: a version byte, then the text, for each value.
    out_sizes = sizes + 1
    out = np.empty(len(payload) + len(sizes), dtype=np.uint8)
    version_at = np.cumsum(out_sizes) - out_sizes
    is_text = np.ones(len(out), dtype=bool)
    is_text[version_at] = False
    out[version_at] = _JSONB_VERSION
    out[is_text] = np.frombuffer(payload, dtype=np.uint8)
    return out_sizes, out.tobytes()


_ENCODERS: dict[str, Callable[[np.ndarray, int], Encoded]] = {
    "boolean": _boolean,
    **{name: _integers(width) for name, width in _INT_WIDTH.items()},
    **{name: _floats(bits) for name, bits in _FLOAT_BITS.items()},
    "numeric": _numeric,
    "text": _text,
    "json": _text,
    "jsonb": _jsonb,
}
