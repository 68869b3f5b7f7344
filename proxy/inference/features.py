"""A model's feature matrix made straight from binary DataRows, in C.

The general route from a batch to the predictor decodes every argument column
into its own array (object arrays of str for text), types it, and lets the model's
Preprocessor build the matrix from those: per 1M rows about 0.4 CPU-seconds of
numpy and Arrow calls, with the GIL taken back between each. When the arguments
come in binary format (the extended protocol: the proxy chooses their result
format) and the model's preprocessing has a plain form (`Preprocessor.feature_ops`:
filled and scaled numbers, text categories), `FeaturePlan.matrix` writes the
matrix in a few calls of `_mlproxy_rows` instead, each one loop without the GIL:
numbers are read from their float8/int4 words, filled and scaled in place; each text
argument's fields are looked up among its categories once per row, which sets
every feature made from it (an integer code's float8 fields by their text, "7001.0"). The bits are those of `transform` (the tests
compare the two on the same rows); anything else keeps the general route.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .rows import BINARY_WORDS, PARSE_ERRORS, DataRowBatch, RowFormatError
from .rowscan import TextNotUtf8, native

# argument kinds read from their binary words, with the word's width (an epoch is
# read too, but the model wants its datetime parts: the general route)
_WIDTHS = {kind: width for kind, (width, _) in BINARY_WORDS.items() if kind != "epoch"}
# MatrixPlan.predict_rows: the rows need the general route
_TAKE_GENERAL = -1000


#: the keys a number table can hold: the text of an integral float64 below 1e16, as
#: Python prints it (what the C lookup writes for a float8 field: "%.0f" and ".0")
_NUMBER_KEY = re.compile(r"-?(0|[1-9][0-9]{0,15})\.0")


@dataclass(frozen=True)
class _Keys:
    """One argument's categories: sorted UTF-8 bytes, and per feature made from
    it, the value of each category (the default last, for NULL and the unseen)."""

    column: int  # in the DataRows
    keys: bytes
    bounds: np.ndarray  # int64, len(categories) + 1
    targets: np.ndarray  # int64, the matrix column of each feature
    values: np.ndarray  # float64, (features, len(categories) + 1)
    #: 0: a text argument, looked up as it is; 8: a number (float8) of a numeric
    #: input, looked up by its float64 text (an integer code, automl/codes.py)
    width: int = 0


class FeaturePlan:
    """How to fill one model's feature matrix from the argument columns of a batch;
    made once per statement and model (see `of`), kept in C (`MatrixPlan`)."""

    def __init__(self, n_features: int, numeric: Sequence[tuple[int, int, int, Any]],
                 scaled: bool, keys: Sequence[_Keys]) -> None:
        self.n_features = n_features
        # (source column, word width, matrix column, FeatureOp) per numeric feature
        self._sources = np.array([c for c, _, _, _ in numeric], dtype=np.int64)
        self._widths = np.array([w for _, w, _, _ in numeric], dtype=np.int64)
        self._native = native.MatrixPlan(
            n_features, self._sources, self._widths, np.array([t for _, _, t, _ in numeric], dtype=np.int64),
            np.array([op.fill for *_, op in numeric], dtype=np.float64),
            np.array([op.center for *_, op in numeric], dtype=np.float64),
            np.array([op.scale for *_, op in numeric], dtype=np.float64), scaled,
            tuple((k.column, k.keys, k.bounds, k.targets, k.values, k.width) for k in keys))
        #: DataRow column of each key table that reads float8 numbers (for errors)
        self._number_columns = [k.column if k.width else -1 for k in keys]

    @classmethod
    def of(cls, args: Sequence[Any], arg_names: Sequence[str], preprocessor: Any) -> FeaturePlan | None:
        """The plan for a call whose binary arguments (rewrite.plan.ArgColumn: DataRow
        column and kind) feed the inputs `arg_names` of a model's `preprocessor`
        (compiler.preprocess.Preprocessor), or None when the general route must be
        taken: no C extension, a feature without a plain form, or an argument the
        plan cannot read as the model needs it (a date, a boolean used as a category,
        or a number used as one whose categories are not all integers below 1e16)."""
        ops = preprocessor.feature_ops() if native is not None and preprocessor is not None else None
        if ops is None or len(ops) != preprocessor.n_features:
            return None
        from compiler.preprocess import NUMERIC_TYPES  # imported lazily, as the proxy imports compiler

        by_name = dict(zip(arg_names, args))
        numeric_inputs = {i.name for i in preprocessor.inputs if i.pg_type in NUMERIC_TYPES}
        numeric: list[tuple[int, int, int, Any]] = []
        by_input: dict[str, list[Any]] = {}
        for op in ops:
            arg = by_name.get(op.input)
            if arg is None:
                return None
            if op.kind == "numeric" and arg.kind in _WIDTHS:
                numeric.append((arg.index, _WIDTHS[arg.kind], op.column, op))
            elif op.kind == "key" and (arg.kind == "text" or (arg.kind == "float" and _number_keys(op, numeric_inputs))):
                by_input.setdefault(op.input, []).append(op)
            else:
                return None
        scaled = {op.scaled for *_, op in numeric}
        if len(scaled) > 1:
            return None  # transform scales all of them or none
        keys = [_key_table(by_name[name].index, key_ops, 8 if by_name[name].kind == "float" else 0)
                for name, key_ops in by_input.items()]
        return cls(preprocessor.n_features, numeric, scaled.pop() if scaled else False, keys)

    def matrix(self, batch: DataRowBatch) -> np.ndarray:
        """The float64 feature matrix (rows, features), feature-major, of `batch`'s
        rows. Raises RowFormatError for a binary field of the wrong size."""
        n = batch.n_rows
        X = np.empty((n, self.n_features), dtype=np.float64, order="F")
        if n:
            self._check(self._native.fill(batch.buffer, batch.field_pos, batch.field_len, n, X.T))
        return X

    def rows_matrix(self, rows: bytes, count: int) -> np.ndarray:
        """`matrix` of the `count` DataRows that make up `rows` (a small batch: the C
        plan parses them itself, no DataRowBatch is made). Raises RowFormatError for
        malformed rows too."""
        X = np.empty((count, self.n_features), dtype=np.float64, order="F")
        self._check(self._native.fill_rows(rows, count, X.T))
        return X

    def predict_rows(self, rows: bytes, count: int, entry: tuple[int, int, bool]) -> np.ndarray | None:
        """The model's margins for the `count` DataRows that make up `rows`, the
        matrix made and the compiled library called in one C call (`entry`:
        Predictor.library_entry); None when the general route must be taken (a
        feature that is not finite, whose error or NaN handling is the predictor's).
        Raises as rows_matrix does."""
        address, outputs, round32 = entry
        out = np.empty((count, outputs), dtype=np.float64)
        code = self._native.predict_rows(rows, count, address, round32, outputs, out)
        if code == _TAKE_GENERAL:
            return None
        self._check(code)
        return out

    def _check(self, code: int) -> None:
        tables = len(self._number_columns)
        if code >= len(self._sources) + tables:  # a number table's field of the wrong size
            column = self._number_columns[code - len(self._sources) - tables]
            raise RowFormatError(f"column {column}: a binary f8 field is not 8 bytes")
        if code >= len(self._sources):  # a text argument's field that is not UTF-8
            raise TextNotUtf8()
        if code >= 0:  # the position of a numeric feature's column with a wrong field
            column, width = int(self._sources[code]), int(self._widths[code])
            word = "f8" if width == 8 else "i4"
            raise RowFormatError(f"column {column}: a binary {word} field is not {width} bytes")
        if code < -1:
            raise RowFormatError(PARSE_ERRORS[-1 - code])


def _number_keys(op: Any, numeric: set[str]) -> bool:
    """Can the C lookup key a float8 argument as `op`'s input does: an input of a
    numeric SQL type (`numeric`: its key is the float64's text) whose categories are
    all integral below 1e16?"""
    return op.input in numeric and all(_NUMBER_KEY.fullmatch(key) for key in op.values)


def _key_table(column: int, ops: Sequence[Any], width: int = 0) -> _Keys:
    """The categories of every feature made from one argument, in one table."""
    encoded: dict[bytes, str] = {}
    for op in ops:
        for key in op.values:
            try:
                encoded[key.encode()] = key
            except UnicodeEncodeError:  # no field of UTF-8 text can be this key
                pass
    ordered = sorted(encoded)  # byte order: what the C lookup's memcmp compares
    bounds = np.zeros(len(ordered) + 1, dtype=np.int64)
    np.cumsum([len(key) for key in ordered], out=bounds[1:])
    values = np.array([[op.values.get(encoded[key], op.default) for key in ordered] + [op.default]
                       for op in ops], dtype=np.float64)
    return _Keys(column, b"".join(ordered), bounds, np.array([op.column for op in ops], dtype=np.int64), values,
                 width)
