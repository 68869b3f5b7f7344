"""The preprocessing spec (docs/model-contract.md) applied with vectorized numpy.

`Preprocessor` is compiled once per model from the JSON spec: features are grouped by
op so a batch costs a handful of whole-array numpy operations however many features
there are (numeric and datetime features share one fill/centre/scale pass, each
categorical input is looked up once with `searchsorted`). There is no per-row Python;
the only per-element work is numpy's own C loops (`astype(str)` for category keys).

This is an independent implementation of the spec; automl has its own, and the two
meet only in the equivalence tests.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ArgumentMismatch, InvalidInputValue

_FEW_VALUES = 256  # check_finite sums up to this many values as Python floats

SPEC_VERSION = 1
DATETIME_PARTS = ("year", "month", "day", "dayofweek", "dayofyear", "hour", "epoch_days")
_US_PER_DAY = 86_400_000_000
_US_PER_HOUR = 3_600_000_000

#: numpy dtype kinds accepted per role (b=bool, i/u=int, f=float, O=object, U=str, M=datetime)
#: SQL types whose values are keyed as float64 (a category code kept as an integer)
NUMERIC_TYPES = frozenset(("smallint", "integer", "bigint", "real", "double precision", "numeric"))
_NUMERIC_KINDS = "biufO"
_KEY_KINDS = "biufOU"
_DATETIME_KINDS = "MO"
_ANY_KIND = "biufcmMOSUV"
_ROLE_KINDS = {"numeric": _NUMERIC_KINDS, "key": _KEY_KINDS, "datetime": _DATETIME_KINDS}
_F64 = np.dtype(np.float64)
#: at most this many rows are gathered with concatenate (fewer numpy calls)
_SMALL_BATCH = 64
#: at most this many rows get their category keys value by value (see _few_keys)
_FEW_KEYS = 16
#: from this many rows on, text keys are hashed to their distinct values first
_CODED_KEYS = 512


class SpecError(ValueError):
    """The spec itself is malformed; artifact/dump turn this into their own error."""


@dataclass(frozen=True)
class Input:
    name: str
    pg_type: str
    #: "numeric", "key" (ordinal/one_hot), "datetime", or "unused" (feeds no feature)
    role: str


@dataclass(frozen=True)
class FeatureOp:
    """How `Preprocessor.transform` makes one column of the matrix, as plain data, for
    code that builds the matrix from its own decoding of the inputs (the proxy reads
    the inputs straight out of result rows) and must give the same bits.

    kind "numeric": the input's value as float64, NULL and NaN replaced by `fill`
    (NaN itself for a feature whose spec says "missing": the trees' missing value),
    then, when `scaled`, `(value - center) / scale` (two float64 operations).
    kind "key": `values[key]`, or `default` for NULL and for keys not in `values`,
    where a text input's key is the text itself.
    """

    column: int
    input: str
    kind: str
    fill: float = 0.0
    center: float = 0.0
    scale: float = 1.0
    scaled: bool = False
    values: Mapping[str, float] | None = None
    default: float = 0.0


class Preprocessor:
    """Raw input columns -> the float64 matrix the estimator was fitted on."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        inputs, features = _check_spec(spec)
        self.n_features = len(features)
        roles = _roles(inputs, features)
        self.inputs = tuple(Input(i["name"], str(i.get("type", "")), roles[i["name"]]) for i in inputs)
        self._by_name = {i.name: i for i in self.inputs}
        self._checks = tuple((i, _ROLE_KINDS.get(i.role, _ANY_KIND)) for i in self.inputs)
        self.feature_inputs = tuple(f["input"] for f in features)

        # numeric + datetime_part: one matrix, one fill/centre/scale pass
        scaled = [(j, f) for j, f in enumerate(features) if f["op"] in ("numeric", "datetime_part")]
        self._scaled_cols = np.array([j for j, _ in scaled], dtype=np.intp)
        self._scaled_src = [(f["input"], f.get("part")) for _, f in scaled]
        plain = all(part is None for _, part in self._scaled_src)
        self._scaled_names = [name for name, _ in self._scaled_src] if plain else None
        # "missing": NULL stays NaN, the trees' own missing value (imported models)
        self._fill = np.array([math.nan if f.get("missing") else float(f.get("fill", 0.0)) for _, f in scaled])
        self._keeps_nan = bool(np.isnan(self._fill).any())
        self._center = np.array([float(f.get("center", 0.0)) for _, f in scaled])
        self._scale = np.array([float(f.get("scale", 1.0)) for _, f in scaled])
        self._unscaled = bool(np.all(self._center == 0.0) and np.all(self._scale == 1.0))
        self._only_scaled = len(scaled) == len(features)  # then _scaled_cols is 0..k-1
        # ordinal: per feature a sorted key table; one_hot: per input one table of its categories
        self._ordinal = [(j, f["input"], _KeyTable(f["categories"]), float(f["unknown"]))
                         for j, f in enumerate(features) if f["op"] == "ordinal"]
        onehot: dict[str, list[tuple[int, str]]] = {}
        for j, f in enumerate(features):
            if f["op"] == "one_hot":
                onehot.setdefault(f["input"], []).append((j, str(f["category"])))
        self._onehot = []
        for name, cols in onehot.items():
            distinct = list(dict.fromkeys(c for _, c in cols))  # a category may repeat
            self._onehot.append((name, np.array([j for j, _ in cols], dtype=np.intp),
                                 np.array([distinct.index(c) for _, c in cols], dtype=np.intp), _KeyTable(distinct)))

    def feature_ops(self) -> tuple[FeatureOp, ...] | None:
        """`transform` as one FeatureOp per matrix column, in column order; None when
        a feature has no such plain form (datetime parts)."""
        if self._scaled_names is None:
            return None
        ops: list[FeatureOp | None] = [None] * self.n_features
        for col, name, fill, center, scale in zip(self._scaled_cols.tolist(), self._scaled_names,
                                                  self._fill.tolist(), self._center.tolist(),
                                                  self._scale.tolist()):
            ops[col] = FeatureOp(col, name, "numeric", fill=fill, center=center, scale=scale,
                                 scaled=not self._unscaled)
        for col, name, table, unknown in self._ordinal:
            ops[col] = FeatureOp(col, name, "key", values={key: float(index) for key, index in table.first.items()},
                                 default=unknown)
        for name, cols, which, table in self._onehot:
            categories = list(table.first)  # in `which` order: the table was built from them
            for col, index in zip(cols.tolist(), which.tolist()):
                ops[col] = FeatureOp(col, name, "key", values={categories[index]: 1.0}, default=0.0)
        return tuple(op for op in ops if op is not None)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    def check_columns(self, columns: Mapping[str, Any]) -> int:
        """Validate names, shapes and dtypes of a batch; return its row count."""
        return self._validated(columns)[1]

    def _validated(self, columns: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int]:
        """(arrays by input name, row count), after checking names, shapes, dtypes and
        lengths. Done before anything else so a bad batch fails with a message naming
        the column, never inside numpy or native code. Kept lean: it runs per call."""
        arrays: dict[str, np.ndarray] = {}
        n = -1
        for inp, kinds in self._checks:
            try:
                arr = columns[inp.name]
            except KeyError:
                raise ArgumentMismatch(
                    f"column {inp.name!r} ({inp.pg_type or 'any type'}) is missing from the batch",
                    column=inp.name) from None
            if type(arr) is not np.ndarray:
                arr = np.asarray(arr)
            if arr.ndim != 1:
                raise ArgumentMismatch(
                    f"column {inp.name!r} must be a one-dimensional array, got shape {arr.shape}",
                    column=inp.name)
            if arr.dtype.kind not in kinds:
                raise ArgumentMismatch(
                    f"column {inp.name!r} must be {_expectation(inp)}, got an array of dtype {arr.dtype}",
                    column=inp.name)
            if n < 0:
                n = len(arr)
            elif len(arr) != n:
                raise InvalidInputValue(
                    f"column {inp.name!r} has {len(arr)} rows but column {self.inputs[0].name!r} has {n}",
                    column=inp.name)
            arrays[inp.name] = arr
        if len(columns) != len(arrays):
            extra = [name for name in columns if name not in self._by_name]
            raise ArgumentMismatch(
                f"model takes {len(self.inputs)} argument(s) ({', '.join(self.input_names)}); "
                f"got unexpected column(s) {', '.join(repr(e) for e in extra)}",
                column=str(extra[0]))
        return arrays, max(n, 0)

    def transform(self, columns: Mapping[str, Any]) -> np.ndarray:
        """The estimator matrix, float64 of shape (rows, n_features), in feature-major
        (Fortran) order: every column is written in one contiguous pass (a row-major
        matrix of 1e6 rows x 20 features took 3-12x longer to fill, one strided pass
        per column), and the native driver and numpy's products read either order."""
        arrays, n = self._validated(columns)
        if self._only_scaled:
            out = self._scaled(arrays, n)  # every feature numeric/datetime, in matrix order
            return out if out is not None else np.empty((0, self.n_features))
        out = np.empty((n, self.n_features), dtype=np.float64, order="F")
        if n == 0:
            return out
        if len(self._scaled_cols):
            out[:, self._scaled_cols] = self._scaled(arrays, n)
        # a few rows (a single-row lookup): keys per value in Python, no array set-up;
        # many rows of text: keys per distinct value
        as_keys = _few_keys if n <= _FEW_KEYS else _many_keys
        keys: dict[str, Any] = {}
        for j, name, table, unknown in self._ordinal:
            if name not in keys:
                keys[name] = as_keys(self._key_values(name, arrays))
            idx = table.lookup(*keys[name])
            out[:, j] = np.where(idx >= 0, idx, unknown)
        for name, cols, which, table in self._onehot:
            if name not in keys:
                keys[name] = as_keys(self._key_values(name, arrays))
            idx = table.lookup(*keys[name])
            out[:, cols] = idx[:, None] == which
        return out

    def _scaled(self, arrays: dict[str, np.ndarray], n: int) -> np.ndarray | None:
        """The numeric and datetime-part features, filled and scaled, (n, k) in
        feature-major order."""
        if n == 0:
            return None
        if self._scaled_names is not None:  # numeric inputs only: the common case
            parts = [arrays[name] for name in self._scaled_names]
            if not all(a.dtype == _F64 for a in parts):
                parts = [self._float(name, arrays) for name in self._scaled_names]
        else:
            parts = self._scaled_parts(arrays)
        k = len(parts)
        if k == 0:
            return np.empty((n, 0))
        if n == 1:
            # one row: a list of k scalars costs ~1/3 of concatenating k arrays
            raw = np.array([part[0] for part in parts], dtype=np.float64).reshape(1, k)
        elif n <= _SMALL_BATCH:
            # few rows: one concatenate beats k column writes
            raw = np.concatenate(parts).reshape(k, n).T
        else:
            raw = np.empty((n, k), dtype=np.float64, order="F")
            for col, values in enumerate(parts):
                raw[:, col] = values
        np.copyto(raw, self._fill, where=np.isnan(raw))
        if not self._unscaled:
            with np.errstate(over="ignore", invalid="ignore"):  # check_finite reports these
                raw -= self._center
                raw /= self._scale
        return raw

    def _key_values(self, name: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """The values whose keys an ordinal/one_hot feature looks up: an input of a
        numeric SQL type as float64 (its key is the float's text, 3 -> "3.0", whether
        it came as int64, float64 or objects), any other as given."""
        if self._by_name[name].pg_type in NUMERIC_TYPES:
            return self._float(name, arrays)
        return arrays[name]

    def _float(self, name: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return _as_float(name, arrays[name], self._by_name[name])

    def _scaled_parts(self, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One float64 column per numeric/datetime feature (each input converted once)."""
        parts: list[np.ndarray] = []
        floats: dict[str, np.ndarray] = {}
        stamps: dict[str, np.ndarray] = {}
        for name, part in self._scaled_src:
            if part is None:
                if name not in floats:
                    floats[name] = self._float(name, arrays)
                parts.append(floats[name])
            else:
                if name not in stamps:
                    stamps[name] = _as_datetime_us(name, arrays[name], self._by_name[name])
                parts.append(datetime_part(stamps[name], part))
        return parts

    def check_finite(self, matrix: np.ndarray) -> None:
        """Refuse Infinity (and overflow from scaling) the way scikit-learn does, but
        with a message naming the input column and the row."""
        # One reduction: the sum is finite when every value is (a sum that overflows
        # merely sends us to the exact check below). A few rows' values are summed as
        # Python floats: numpy's reduction machinery costs more than it saves there
        # (a single-row query pays it in cold caches).
        if matrix.size <= _FEW_VALUES:
            if math.isfinite(sum(matrix.ravel(order="K").tolist())):
                return
        elif math.isfinite(matrix.sum()):  # math: 1 us less than np.isfinite on a scalar
            return
        bad = np.isinf(matrix) if self._keeps_nan else ~np.isfinite(matrix)
        if not bad.any():
            return
        row, col = (int(v) for v in np.argwhere(bad)[0])
        name = self.feature_inputs[col]
        raise InvalidInputValue(
            f"column {name!r} has a value the model cannot take at row {row + 1} "
            f"(Infinity, or too large once scaled); the model accepts finite numbers or NULL",
            column=name)


def _expectation(inp: Input) -> str:
    what = {"numeric": "numbers or booleans", "key": "text, numbers or booleans",
            "datetime": "dates or timestamps"}[inp.role]
    return f"{inp.pg_type} ({what})" if inp.pg_type else what


class _KeyTable:
    """Category strings -> index in the spec's list, via a sorted copy and searchsorted.
    Duplicates resolve to their first position, as a Python dict built in order would."""

    def __init__(self, categories: Sequence[str]) -> None:
        cats = np.array([str(c) for c in categories], dtype=str)
        self._order = np.argsort(cats, kind="stable")
        self._sorted = cats[self._order]
        self.first: dict[str, int] = {}  # each key's first position in `categories`
        for i, c in enumerate(categories):
            self.first.setdefault(str(c), i)

    def lookup(self, keys: np.ndarray | list[str | None], null: np.ndarray | None) -> np.ndarray:
        """Index per key; -1 for NULL or unseen. `keys` is what `_as_keys` gives, or
        the list `_few_keys` gives (None for NULL) with `null` None."""
        if isinstance(keys, _Coded):
            found = self.lookup(keys.keys, np.zeros(len(keys.keys), dtype=bool))
            return np.append(found, -1)[keys.codes]
        if null is None:
            first = self.first
            return np.array([-1 if k is None else first.get(k, -1) for k in keys], dtype=np.intp)
        out = np.full(len(keys), -1, dtype=np.intp)
        if len(self._sorted) == 0:
            return out
        pos = np.searchsorted(self._sorted, keys)
        np.minimum(pos, len(self._sorted) - 1, out=pos)
        hit = (self._sorted[pos] == keys) & ~null
        out[hit] = self._order[pos[hit]]
        return out


def _null_mask(arr: np.ndarray) -> np.ndarray:
    """None in object arrays; NaN anywhere (x != x is the vectorized NaN test that also
    works on object arrays); NaT in datetimes."""
    if arr.dtype.kind == "O":
        return np.equal(arr, None) | np.not_equal(arr, arr)
    if arr.dtype.kind == "f":
        return np.isnan(arr)
    if arr.dtype.kind == "M":
        return np.isnat(arr)
    return np.zeros(arr.shape, dtype=bool)


def _as_float(name: str, values: Any, inp: Input) -> np.ndarray:
    """Numbers, booleans and Decimals -> float64, NULL -> NaN."""
    arr = np.asarray(values)
    if arr.dtype == np.float64:
        return arr
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64)
    null = _null_mask(arr)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.where(null, np.nan, arr).astype(np.float64)
    except (TypeError, ValueError) as exc:
        bad = _first_unconvertible(arr, null)
        raise ArgumentMismatch(
            f"column {name!r} must be {_expectation(inp)}; got {bad!r}", column=name) from exc


def _first_unconvertible(arr: np.ndarray, null: np.ndarray) -> Any:
    # error path only: find the value to quote in the message
    for value, is_null in zip(arr, null):
        if is_null:
            continue
        try:
            float(value)
        except (TypeError, ValueError):
            return value
    return None


def _as_keys(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Values -> (str keys, NULL mask) with the contract's comparison rule: str(value),
    booleans as "true"/"false", floats as Python prints them (an input of a numeric
    SQL type comes here as float64: `Preprocessor._key_values`)."""
    arr = np.asarray(values)
    null = _null_mask(arr)
    kind = arr.dtype.kind
    if kind == "b":
        return np.where(arr, "true", "false"), null
    if kind == "U":
        return arr, null
    if kind == "f":
        # numpy's float64 -> str is the shortest round-trip repr, as Python's str()
        return arr.astype(np.float64).astype(str), null
    if kind in "iu":
        return arr.astype(str), null
    keys = np.where(null, "", arr).astype(str)
    # Python bools inside object arrays: str() gives "True"; the contract says "true".
    # A key "True" from a real string stays, since "True" == True is False.
    for word, flag in (("True", True), ("False", False)):
        is_word = keys == word
        if is_word.any():
            keys[is_word & np.equal(arr, flag).astype(bool)] = word.lower()
    return keys, null


@dataclass(frozen=True)
class _Coded:
    """Keys of a text column as its distinct values (`keys`, no NULL among them)
    and, per row, the position of its value there (`codes`; len(keys) for NULL)."""

    keys: np.ndarray
    codes: np.ndarray


def _coded_keys(arr: np.ndarray) -> tuple[_Coded, None] | None:
    """Keys of a big object array of str (and None/NaN for NULL) through Arrow's
    hash table: the str -> key rule and the lookup then run once per distinct value
    (categories are few) instead of once per row. None when the values are not all
    text (then `_as_keys` applies the rule to every value)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        strings = pa.array(arr, from_pandas=True)  # None and NaN are null
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all text
        return None
    if strings.type != pa.string():  # e.g. bytes, whose key is their repr
        return None
    encoded = strings.dictionary_encode()
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False).astype(str)
    codes = pc.fill_null(encoded.indices, len(distinct)).to_numpy()
    return _Coded(distinct, codes), None


def _many_keys(values: Any) -> tuple[Any, np.ndarray | None]:
    arr = np.asarray(values)
    coded = _coded_keys(arr) if arr.dtype.kind == "O" and len(arr) >= _CODED_KEYS else None
    return coded if coded is not None else _as_keys(arr)


def _few_keys(values: Any) -> tuple[list[str | None], None]:
    """`_as_keys` for a few rows, value by value: (keys with None for NULL, None).
    The same rule: str(value), booleans as "true"/"false", NULL for None and NaN
    (`tolist` gives Python scalars, whose str is what numpy's astype(str) prints)."""
    keys: list[str | None] = []
    for value in np.asarray(values).tolist():
        if value is None or value != value:
            keys.append(None)
        elif isinstance(value, bool):
            keys.append("true" if value else "false")
        else:
            keys.append(str(value))
    return keys, None


def _as_datetime_us(name: str, values: Any, inp: Input) -> np.ndarray:
    """datetime64 or date/datetime objects (aware ones taken in UTC) -> datetime64[us]."""
    arr = np.asarray(values)
    try:
        with warnings.catch_warnings():
            # numpy converts aware datetimes to UTC and warns that it did
            warnings.simplefilter("ignore")
            if arr.dtype.kind == "O":
                arr = np.where(_null_mask(arr), None, arr)
            return arr.astype("datetime64[us]")
    except (TypeError, ValueError, OverflowError) as exc:
        raise ArgumentMismatch(f"column {name!r} must be {_expectation(inp)}: {exc}", column=name) from exc


def datetime_part(t: np.ndarray, part: str) -> np.ndarray:
    """One calendar part of datetime64[us] values as float64; NaT -> NaN."""
    us = t.view(np.int64)
    days = us // _US_PER_DAY
    if part == "epoch_days":
        val = us / _US_PER_DAY
    elif part == "dayofweek":
        val = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    elif part == "hour":
        val = (us - days * _US_PER_DAY) // _US_PER_HOUR
    else:
        d = t.astype("datetime64[D]")
        year = d.astype("datetime64[Y]")
        if part == "year":
            val = year.view(np.int64) + 1970
        elif part == "month":
            val = d.astype("datetime64[M]").view(np.int64) % 12 + 1
        elif part == "day":
            val = (d - d.astype("datetime64[M]")).view(np.int64) + 1
        else:  # dayofyear
            val = (d - year.astype("datetime64[D]")).view(np.int64) + 1
    out = np.asarray(val, dtype=np.float64)
    out[np.isnat(t)] = np.nan
    return out


def _check_spec(spec: Any) -> tuple[list[dict], list[dict]]:
    """Structural validation: anything loaded from an artifact goes through here."""
    if not isinstance(spec, Mapping):
        raise SpecError("preprocessing spec must be a JSON object")
    if spec.get("version", SPEC_VERSION) != SPEC_VERSION:
        raise SpecError(f"preprocessing spec version {spec.get('version')!r} is not supported")
    inputs, features = spec.get("inputs"), spec.get("features")
    if not isinstance(inputs, list) or not isinstance(features, list):
        raise SpecError("preprocessing spec needs 'inputs' and 'features' lists")
    names = []
    for inp in inputs:
        if not isinstance(inp, Mapping) or not isinstance(inp.get("name"), str):
            raise SpecError(f"bad input entry {inp!r}")
        names.append(inp["name"])
    if len(set(names)) != len(names):
        raise SpecError("input names must be unique")
    for j, f in enumerate(features):
        if not isinstance(f, Mapping) or f.get("input") not in names:
            raise SpecError(f"feature {j} does not name one of the inputs: {f!r}")
        op = f.get("op")
        if op in ("numeric", "datetime_part"):
            if "missing" in f and (f["missing"] is not True or op != "numeric" or "fill" in f):
                raise SpecError(f"feature {j}: 'missing' is true on a numeric feature without 'fill'")
            for key in ("fill", "center", "scale"):
                value = f.get(key, 1.0 if key == "scale" else 0.0)
                if not _finite_number(value):
                    raise SpecError(f"feature {j}: {key} must be a finite number, got {value!r}")
            if float(f.get("scale", 1.0)) == 0.0:
                raise SpecError(f"feature {j}: scale must not be 0")
            if op == "datetime_part" and f.get("part") not in DATETIME_PARTS:
                raise SpecError(f"feature {j}: unknown datetime part {f.get('part')!r}")
        elif op == "ordinal":
            if not isinstance(f.get("categories"), list) or not _finite_number(f.get("unknown")):
                raise SpecError(f"feature {j}: ordinal needs 'categories' and a finite 'unknown'")
        elif op == "one_hot":
            if "category" not in f:
                raise SpecError(f"feature {j}: one_hot needs 'category'")
        else:
            raise SpecError(f"feature {j}: unknown op {op!r}")
    return inputs, features


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _roles(inputs: list[dict], features: list[dict]) -> dict[str, str]:
    roles = {i["name"]: "unused" for i in inputs}
    for f in features:
        role = {"numeric": "numeric", "datetime_part": "datetime"}.get(f["op"], "key")
        previous = roles[f["input"]]
        if previous not in ("unused", role):
            # one input read two ways (e.g. numeric and one_hot): only check it is 1-D
            role = "any"
        roles[f["input"]] = role
    return roles
