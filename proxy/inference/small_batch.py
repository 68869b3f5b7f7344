"""Small batches of DataRows (a single-row lookup, a short page), per row in Python.

The vectorized codec (rows.py, pgvalues.py) has a fixed cost of a few hundred
microseconds per batch (array set-up in numpy and Arrow), which is what a
single-row `... WHERE id = $1` query would pay. Below `SMALL_BATCH` rows, plain
Python over the few rows is an order of magnitude cheaper; the results are the
same bytes (the tests compare both paths).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from ..protocol import read_values
from .pgfloat import pg_float_text
from .pgvalues import ValueOutOfRange, canonical_type, encode_values
from .rows import BINARY_WORDS
from .rowscan import RowFormatError, TextNotUtf8

SMALL_BATCH = 32
_I32 = struct.Struct("!i")
_I16 = struct.Struct("!h")


def split_rows(rows: bytes) -> list[list[bytes | None]]:
    """Fields of each complete DataRow in `rows` (None for NULL)."""
    out = []
    pos, n = 0, len(rows)
    while pos < n:
        end = pos + 1 + int.from_bytes(rows[pos + 1:pos + 5], "big")
        out.append(read_values(rows, pos + 7, _I16.unpack_from(rows, pos + 5)[0])[0])
        pos = end
    return out


def column(rows: list[list[bytes | None]], index: int, kind: str, binary: bool = False) -> np.ndarray:
    """One argument column, as DataRowBatch.column (or binary_column) gives it."""
    if kind == "text":
        return _texts([r[index] for r in rows])
    return np.ascontiguousarray(columns(rows, [index], [kind], binary)[0])


def columns(rows: list[list[bytes | None]], indices: Sequence[int], kinds: Sequence[str],
            binary: bool = False) -> list[np.ndarray]:
    """Several argument columns, as `column` gives each (see ArgumentReader)."""
    return ArgumentReader(indices, kinds, binary)(rows)


class ArgumentReader:
    """Reads the argument columns of a call from split rows, as DataRowBatch.columns
    would: which columns go through which decoder is worked out once (a prepared
    statement's rewriter keeps its reader for every execution). The numeric ones
    come out of one array per word width (a column each is a view of it)."""

    __slots__ = ("binary", "_count", "_text", "_words", "_numeric")

    def __init__(self, indices: Sequence[int], kinds: Sequence[str], binary: bool = False) -> None:
        self.binary, self._count = binary, len(indices)
        self._text = [(j, i) for j, (i, kind) in enumerate(zip(indices, kinds)) if kind == "text"]
        numeric = [(j, i, kind) for j, (i, kind) in enumerate(zip(indices, kinds)) if kind != "text"]
        self._numeric = [(j, i) for j, i, _ in numeric]
        # binary: (width, numpy word, positions, getter of the fields) per word width
        self._words = [(width, word, [j for j, _, k in numeric if BINARY_WORDS[k][1] == word],
                        _getter([i for _, i, k in numeric if BINARY_WORDS[k][1] == word]))
                       for width, word in dict.fromkeys(BINARY_WORDS[k] for _, _, k in numeric)]

    def __call__(self, rows: list[list[bytes | None]]) -> list[np.ndarray]:
        out: list[Any] = [None] * self._count
        if self.binary:
            for width, word, positions, fields_of in self._words:
                for j, values in zip(positions, _binary_words(rows, fields_of, len(positions), width, word)):
                    out[j] = values
        elif self._numeric:
            table = [[np.nan if r[i] is None else float(r[i]) for _, i in self._numeric] for r in rows]
            matrix = np.array(table, dtype=np.float64).reshape(len(rows), len(self._numeric))
            for k, (j, _) in enumerate(self._numeric):
                out[j] = matrix[:, k]
        for j, i in self._text:
            out[j] = _texts([r[i] for r in rows])
        return out


def _texts(fields: list[bytes | None]) -> np.ndarray:
    """An object array of the fields' texts (None for NULL); numpy takes a str as
    one value, so the array is one-dimensional."""
    try:
        return np.array([None if f is None else f.decode() for f in fields], dtype=object)
    except UnicodeDecodeError:
        raise TextNotUtf8() from None


def _binary_words(rows: list[list[bytes | None]], fields_of: Callable[[list], tuple],
                  count: int, width: int, word: str) -> np.ndarray:
    """float64 columns (NaN for NULL) of binary words of one width (`fields_of`
    picks `count` of them out of a row), one row of the result per column: the
    fields joined and read by one numpy call (a Python unpack per value cost
    several times more)."""
    if len(rows) == 1:
        fields = fields_of(rows[0])
    else:
        fields = [f for r in rows for f in fields_of(r)]
    null = None
    if None in fields:
        null = np.array([f is None for f in fields]).reshape(len(rows), count).T
        fields = [bytes(width) if f is None else f for f in fields]
    if fields and set(map(len, fields)) != {width}:
        raise RowFormatError(f"a binary {word[1:]} argument field is not {width} bytes")
    matrix = np.frombuffer(b"".join(fields), word).astype(np.float64).reshape(len(rows), count).T
    if null is not None:
        matrix[null] = np.nan
    return matrix


def _getter(indices: list[int]) -> Callable[[list], tuple]:
    """The fields at `indices` of a row, as a tuple."""
    if len(indices) == 1:
        index = indices[0]
        return lambda row: (row[index],)
    return itemgetter(*indices)


_SIMPLE_TEXT = ("boolean", "smallint", "integer", "bigint", "text", "json", "jsonb")
_INT_BITS = {"smallint": 16, "integer": 32, "bigint": 64}
_INT_WORDS = {"smallint": struct.Struct("!h"), "integer": struct.Struct("!i"), "bigint": struct.Struct("!q")}
_F8 = struct.Struct("!d")


def encode(values: np.ndarray, pg_type: str, fmt: int) -> list[bytes | None]:
    """Each value as Postgres sends it; per row for the plain cases (float8, the
    integers, text and json(b) in either format, booleans in text, or in binary when
    they are numbers), through the vectorized encoder (same bytes) for everything
    else."""
    kind = canonical_type(pg_type)
    out: list[bytes | None] = []
    if kind == "double precision" and values.dtype.kind == "f":
        for value in values.tolist():
            if value != value:
                out.append(None)
            else:
                out.append(_F8.pack(value) if fmt else pg_float_text(value).encode())
        return out
    # binary text is its text; a binary boolean is the truth of a number (the
    # vectorized encoder's astype(bool))
    if kind in _SIMPLE_TEXT and (fmt == 0 or kind != "boolean" or values.dtype.kind in "biuf"):
        for value in values.tolist():
            if value is None or (isinstance(value, float) and value != value):
                out.append(None)
            elif kind == "boolean":
                out.append((b"\x01" if value else b"\x00") if fmt else (b"t" if value else b"f"))
            elif kind == "text" or kind == "json":
                out.append(str(value).encode())
            elif kind == "jsonb":  # jsonb_send: a version byte, then the text
                out.append(b"\x01" + str(value).encode() if fmt else str(value).encode())
            elif fmt:
                out.append(_INT_WORDS[kind].pack(_integer(value, _INT_BITS[kind])))
            else:
                out.append(str(_integer(value, _INT_BITS[kind])).encode())
        return out
    lengths, payload = encode_values(values, pg_type, fmt)
    pos = 0
    for size in lengths.tolist():
        if size < 0:
            out.append(None)
        else:
            out.append(payload[pos:pos + size])
            pos += size
    return out


def encode_packed(values: np.ndarray, pg_type: str, fmt: int) -> tuple[np.ndarray, bytes]:
    """`encode`'s values in encode_values' form: the lengths (-1 for NULL) and the
    payloads joined (what DataRowBatch.splice takes)."""
    parts = encode(values, pg_type, fmt)
    lengths = np.array([-1 if v is None else len(v) for v in parts], dtype=np.int32)
    return lengths, b"".join([v for v in parts if v is not None])


def _integer(value: float | int, bits: int) -> int:
    """A prediction as an integer of `bits` bits (floats round half to even, as
    Postgres' casts and the vectorized encoder do), or Postgres' range error."""
    if isinstance(value, float):
        if value in (float("inf"), float("-inf")):
            raise ValueOutOfRange(f"{bits}-bit integer out of range")
        value = round(value)
    value = int(value)
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise ValueOutOfRange(f"{bits}-bit integer out of range")
    return value


def join_rows(rows: list[list[bytes | None]], replaced: dict[int, list[bytes | None]],
              keep: int) -> bytes:
    """DataRow messages of the first `keep` fields, with `replaced` columns swapped in."""
    out = []
    for i, fields in enumerate(rows):
        parts = [_I16.pack(keep)]
        for c in range(keep):
            value = replaced[c][i] if c in replaced else fields[c]
            parts.append(b"\xff\xff\xff\xff" if value is None else _I32.pack(len(value)) + value)
        body = b"".join(parts)
        out.append(b"D" + _I32.pack(len(body) + 4) + body)
    return b"".join(out)


