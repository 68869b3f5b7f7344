"""Evaluating model calls on batches of rows.

Turns the argument columns of a DataRow batch into the predictor's input (one numpy
array per function argument, typed as the model was trained on them), calls the
predictor once per batch, and encodes the results as Postgres values. Used by the
streaming path (predictions spliced into result rows) and by the general path
(predictions loaded into a temporary table with COPY).
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..observe.stats import STATS
from .pgvalues import encode_values
from .registry import ModelEntry
from .rowdesc import parse_row_description, rewrite_row_description
from . import small_batch
from .features import FeaturePlan
from .rows import DataRowBatch, scan_data_rows, splice_rows

_INTEGER_TYPES = ("smallint", "integer", "bigint")


@dataclass
class BoundModel:
    """A model function ready to evaluate: its catalog entry, predictor and kind."""

    entry: ModelEntry
    predictor: Any
    kind: str  # "predict", "prob" or "explain"
    background: Any = None  # kind "explain" of a linear model: its feature means (1 x features)


def is_remote(bound: BoundModel) -> bool:
    """Is this a remote model (remote.py), whose predictions wait for an endpoint?"""
    return getattr(bound.predictor, "remote", False)


def argument_columns(batch: DataRowBatch, args: Sequence[Any], entry: ModelEntry,
                     binary: bool = False) -> dict[str, np.ndarray]:
    """The predictor's input from the batch's argument columns (in binary format
    if `binary`, else text).

    Integers and booleans are given back their own type, not the float8 they
    travelled as: a categorical feature compares values as text ("3", "true"), and
    the model learned them from integer and boolean columns.
    """
    decoded = batch.columns([a.index for a in args], [a.kind for a in args], binary)
    return typed_arguments(decoded, args, entry)


def typed_arguments(decoded: Sequence[np.ndarray], args: Sequence[Any],
                    entry: ModelEntry) -> dict[str, np.ndarray]:
    """Decoded argument columns typed as the model was trained on them."""
    return {name: typed_argument(arg, values) if needs_typing(arg) else values
            for arg, name, values in zip(args, entry.arg_names, decoded)}


def needs_typing(arg: Any) -> bool:
    """Does this argument column need `typed_argument` (else its decoded float64 or
    str values are what the model takes)?"""
    declared = arg.declared_type
    return arg.kind == "epoch" or declared == "boolean" or declared.startswith(_INTEGER_TYPES)


def typed_argument(arg: Any, values: np.ndarray) -> np.ndarray:
    """An epoch column as datetime64; an integer or boolean one as its own type."""
    if arg.kind == "epoch":
        nat = np.isnan(values)
        micros = np.where(nat, 0, np.round(values * 1e6)).astype(np.int64)
        values = micros.astype("datetime64[us]")
        values[nat] = np.datetime64("NaT")
        return values
    missing = np.isnan(values)
    if arg.declared_type == "boolean":
        typed = values != 0
    else:
        typed = np.where(missing, 0, values).astype(np.int64)
    if missing.any():
        typed = typed.astype(object)
        typed[missing] = None
    return typed


def predict(bound: BoundModel, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Labels/values (kind "predict") or jsonb texts of probabilities (kind "prob")."""
    started = time.perf_counter()
    predictor = bound.predictor
    if bound.kind == "predict":
        values = np.asarray(predictor.predict(columns))
    elif bound.kind == "explain":
        values = explanations_jsonb(bound, predictor.preprocessor.transform(columns))
    else:
        values = probabilities_jsonb(predictor.classes, predictor.predict_proba(columns))
    STATS.predicted(bound.entry, len(values), time.perf_counter() - started)
    return values


def predict_matrix(bound: BoundModel, X: np.ndarray) -> np.ndarray:
    """`predict` for a feature matrix made by a FeaturePlan."""
    started = time.perf_counter()
    predictor = bound.predictor
    if bound.kind == "predict":
        values = np.asarray(predictor.predict_matrix(X))
    elif bound.kind == "explain":
        values = explanations_jsonb(bound, X)
    else:
        values = probabilities_jsonb(predictor.classes, predictor.predict_proba_matrix(X))
    STATS.predicted(bound.entry, len(values), time.perf_counter() - started)
    return values


def probabilities_jsonb(classes: Any, proba: Any) -> np.ndarray:
    """`<function>_probabilities`' jsonb texts, as Redshift gives them:
    {"labels": [...], "probabilities": [...]}, both sorted by probability, highest
    first (equal probabilities keep the labels' order). Keys in jsonb's own output
    order (shorter keys first) and numbers without exponents, as Postgres prints the
    value (1e-05 is 0.00001 there)."""
    proba = np.asarray(proba, dtype=np.float64)
    label_json = [json.dumps(_plain(label)) for label in classes]
    # a stable sort of the negated probabilities: ties stay in label order
    order = np.argsort(-proba, axis=1, kind="stable")
    out = np.empty(len(proba), dtype=object)
    # jsonb assembly is per row (probability calls are the rare kind)
    for i in range(len(proba)):
        row = order[i]
        out[i] = ('{"labels": [' + ", ".join(label_json[j] for j in row) + '], "probabilities": ['
                  + ", ".join(_json_number(proba[i, j]) for j in row) + "]}")
    return out


def explanations_jsonb(bound: BoundModel, X: np.ndarray) -> np.ndarray:
    """`<function>_explain`'s jsonb texts for a preprocessed matrix: per row, each
    input column's Shapley value (its one-hot indicators and date parts summed) and
    "expected_value", in the model's margin space (log-odds for boosted classifiers),
    so that the values plus expected_value are the row's margin. One batched
    compiler.contributions call (exact TreeSHAP, or the linear closed form against
    the training-time feature means); no Python per row but the text assembly.
    Binary classifiers explain the positive class (as EXPLAIN_MODEL's label0),
    multiclass ones the row's predicted class."""
    from compiler.errors import UnsupportedModel
    from compiler.explain import by_input, contributions

    predictor = bound.predictor
    artifact = predictor.artifact
    out = np.empty(len(X), dtype=object)
    if artifact.kind not in ("tree", "linear"):
        raise UnsupportedModel(f"{bound.entry.function_name}_explain is defined for tree and linear models; "
                               f'model "{bound.entry.model_name}" is a {artifact.kind} model')
    if artifact.kind == "linear" and bound.background is None:
        raise UnsupportedModel(f'model "{bound.entry.model_name}" was trained without the feature means its '
                               "per-row Shapley values need", hint="CREATE MODEL it again.")
    if not len(X):
        return out
    X = np.asarray(X, dtype=np.float64)
    predictor.preprocessor.check_finite(X)
    phi = contributions(artifact, X, background=bound.background)
    names, per_input = by_input(phi, artifact.manifest["preprocessing"])
    rows = np.arange(len(X))
    if phi.shape[1] == 1:
        k = np.zeros(len(X), dtype=np.int64)
    elif artifact.manifest["problem_type"] == "BINARY_CLASSIFICATION" and phi.shape[1] == 2:
        k = np.ones(len(X), dtype=np.int64)
    else:  # the predicted class: the highest margin
        k = phi.sum(axis=2).argmax(axis=1)
    values = per_input[rows, k, :]  # (rows, inputs)
    expected = phi[rows, k, -1]
    keys = [*names, "expected_value"]
    # jsonb's own key order (shorter keys first, then bytewise), as Postgres prints it
    order = sorted(range(len(keys)), key=lambda i: (len(keys[i].encode()), keys[i].encode()))
    table = np.concatenate([values, expected[:, None]], axis=1)[:, order]
    heads = [json.dumps(keys[i]) + ": " for i in order]
    for i in range(len(X)):
        out[i] = "{" + ", ".join(h + _json_number(v) for h, v in zip(heads, table[i])) + "}"
    return out


def _json_number(value: float) -> str:
    """The shortest text that reads back as `value`, positional, as jsonb prints it."""
    return np.format_float_positional(float(value), unique=True, trim="0")


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# A prepared statement's RowDescription comes back on every Describe of its portals
# (most drivers send one with each execution): cut it once.
_cut_description = lru_cache(maxsize=512)(rewrite_row_description)


class StreamingRewriter:
    """Rewrites the result of a streaming plan: RowDescription without the appended
    argument columns, DataRows with predictions (see tracker.RowRewriter).

    `binary_args`: the appended argument columns come in binary format (the
    extended protocol lets the proxy choose: float8 and int4 words cost Postgres and
    the proxy far less than their texts); the simple protocol sends text."""

    def __init__(self, plan: Any, models: Mapping[tuple[int, str], BoundModel],
                 formats: Sequence[int] | None = None, binary_args: bool = False) -> None:
        self.plan = plan
        self.models = models
        self.formats = list(formats) if formats else None  # client's codes per user column
        self.binary_args = binary_args
        self._small_plan: Any = None  # the plan _small_calls were made for
        self._small_calls: list[_SmallCall] = []
        self._feature_plan: Any = None  # the plan _features were made for
        self._features: list[FeaturePlan | None] = []  # per call (binary arguments only)
        self._by_column: list[tuple[Any, FeaturePlan | None]] = []
        self._entries: list[tuple[int, int, bool] | None] = []  # (see _library_entry)
        self._columns = np.zeros(0, dtype=np.int64)  # their placeholder columns
        # for the log line of each finished statement (call_log.py)
        self.model_names = tuple(sorted({b.entry.model_name for b in models.values()}))
        # a remote model's batches wait for its endpoint: always through
        # workers.submit (tracker.holding_bytes), which awaits a few rows' answer on
        # the loop and gives more to threads; never a plain call on the loop
        self.remote = any(is_remote(b) for b in models.values())

    def row_description(self, raw: bytes) -> bytes:
        if self.plan.has_star:
            self.plan = self.plan.resolve(len(parse_row_description(raw)))
        return _cut_description(bytes(raw), self.plan.user_columns)

    def _format(self, column: int) -> int:
        if not self.formats:
            return 0
        return self.formats[0] if len(self.formats) == 1 else self.formats[column]

    def data_rows(self, rows: bytes, count: int, starts: Any = None) -> bytes:
        features = self._feature_plans()
        if count <= small_batch.SMALL_BATCH:
            if features is None or None in features:
                return self._small(rows)
            return self._few_rows(rows, count)
        if starts is None:
            starts, _ = scan_data_rows(rows)
        batch = DataRowBatch.from_buffer(rows, starts)
        plan = self.plan
        if plan.has_star:
            plan = self.plan = plan.resolve(batch.n_columns)
            features = self._feature_plans()
        placeholders = {}
        for call, matrix_plan in zip(plan.calls, features):
            bound = self.models[(call.function.model_id, call.function.kind)]
            if matrix_plan is not None:
                values = predict_matrix(bound, matrix_plan.matrix(batch))
            else:
                values = predict(bound, argument_columns(batch, call.args, bound.entry, self.binary_args))
            placeholders[call.column] = encode_values(values, call.function.return_type, self._format(call.column))
        return batch.splice(placeholders, plan.user_columns)

    def _few_rows(self, rows: bytes, count: int) -> bytes:
        """The C route for a few rows (a single-row lookup): each feature matrix straight
        from the rows, values encoded one by one, and the rows spliced, with no parsed
        batch and no array set-up (their fixed costs are most of a one-row query's)."""
        lengths, payloads = [], []
        for (call, matrix_plan), entry in zip(self._by_column, self._entries):
            bound = self.models[(call.function.model_id, call.function.kind)]
            values = None
            if entry is not None:  # the matrix and the library in one C call
                started = time.perf_counter()
                margins = matrix_plan.predict_rows(rows, count, entry)
                if margins is not None:
                    values = bound.predictor.predictions_from_margins(margins)
                    STATS.predicted(bound.entry, count, time.perf_counter() - started)
            if values is None:
                values = predict_matrix(bound, matrix_plan.rows_matrix(rows, count))
            length, payload = small_batch.encode_packed(values, call.function.return_type, self._format(call.column))
            lengths.append(length)
            payloads.append(payload)
        return splice_rows(rows, count, self.plan.user_columns, self._columns, lengths, payloads)

    def _feature_plans(self) -> list[FeaturePlan | None] | None:
        """Per call of the (resolved) plan, the C route to its feature matrix when its
        arguments come in binary format and the model allows it (see features.py);
        None while the plan's `*` is unresolved."""
        plan = self.plan
        if plan.has_star:
            return None
        if self._feature_plan is not plan:
            self._features = [self._feature_plan_of(call) for call in plan.calls]
            # the calls by placeholder column, the order splice takes them in
            self._by_column = sorted(zip(plan.calls, self._features), key=lambda pair: pair[0].column)
            self._columns = np.array([call.column for call, _ in self._by_column], dtype=np.int64)
            self._entries = [self._library_entry(call) for call, _ in self._by_column]
            self._feature_plan = plan
        return self._features

    def _library_entry(self, call: Any) -> tuple[int, int, bool] | None:
        """Predictor.library_entry of a predicting call (its features from the rows in
        C): _few_rows then calls the library from C, with no arrays of its own."""
        bound = self.models[(call.function.model_id, call.function.kind)]
        entry = getattr(bound.predictor, "library_entry", None)
        return entry() if entry is not None and bound.kind == "predict" else None

    def _feature_plan_of(self, call: Any) -> FeaturePlan | None:
        if not self.binary_args:
            return None
        bound = self.models[(call.function.model_id, call.function.kind)]
        return FeaturePlan.of(call.args, bound.entry.arg_names, getattr(bound.predictor, "preprocessor", None))

    def _small(self, rows: bytes) -> bytes:
        """The same rewrite for a few rows, per row in Python (no fixed array costs)."""
        split = small_batch.split_rows(rows)
        plan = self.plan
        if plan.has_star and split:
            plan = self.plan = plan.resolve(len(split[0]))
        if self._small_plan is not plan:
            self._small_calls = [_SmallCall.of(call, self.binary_args, self._format(call.column))
                                 for call in plan.calls]
            self._small_plan = plan
        replaced = {}
        for call in self._small_calls:
            bound = self.models[call.key]
            decoded = call.read(split)
            for j, arg in call.typed:
                decoded[j] = typed_argument(arg, decoded[j])
            values = predict(bound, dict(zip(bound.entry.arg_names, decoded)))
            replaced[call.column] = small_batch.encode(values, call.return_type, call.format)
        return small_batch.join_rows(split, replaced, plan.user_columns)


@dataclass(frozen=True, slots=True)
class _SmallCall:
    """What the per-row path needs of one streaming call, worked out once per plan
    (a prepared statement's rewriter serves every execution)."""

    key: tuple[int, str]  # of the BoundModel
    column: int
    read: small_batch.ArgumentReader
    typed: tuple[tuple[int, Any], ...]  # (position, argument) of those needing typed_argument
    return_type: str
    format: int  # the client's result format of the prediction column

    @classmethod
    def of(cls, call: Any, binary: bool, fmt: int) -> _SmallCall:
        return cls((call.function.model_id, call.function.kind), call.column,
                   small_batch.ArgumentReader([a.index for a in call.args], [a.kind for a in call.args],
                                              binary),
                   tuple((j, a) for j, a in enumerate(call.args) if needs_typing(a)),
                   call.function.return_type, fmt)


def copy_rows(batch: DataRowBatch, args: Sequence[Any], predictions: np.ndarray,
              return_type: str) -> bytes:
    """COPY text-format rows (arguments as received, then the prediction) for one
    batch of an input query's rows: vectorized with Arrow, escaping included."""
    columns = [_copy_escape(batch.text_column(arg.index)) for arg in args]
    lengths, payload = encode_values(predictions, return_type, 0)
    offsets = np.concatenate([[0], np.cumsum(np.maximum(lengths, 0))]).astype(np.int32)
    validity = pa.py_buffer(np.packbits(lengths >= 0, bitorder="little"))
    strings = pa.Array.from_buffers(pa.string(), len(lengths),
                                    [validity, pa.py_buffer(offsets.tobytes()), pa.py_buffer(payload)])
    columns.append(_copy_escape(strings))
    if not len(predictions):
        return b""
    joined = pc.binary_join_element_wise(*columns, "\t")
    body = pc.binary_join(pa.ListArray.from_arrays([0, len(joined)], joined), "\n")
    return body[0].as_py().encode() + b"\n"


def _copy_escape(strings: pa.Array) -> pa.Array:
    """COPY text format: backslash, tab, newline, carriage return escaped; NULL as \\N."""
    for plain, escaped in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
        strings = pc.replace_substring(strings, plain, escaped)
    return pc.fill_null(strings, "\\N")


def copy_data_messages(data: bytes, chunk: int = 1 << 20) -> list[bytes]:
    """CopyData messages carrying `data`."""
    out = []
    for start in range(0, len(data), chunk):
        piece = data[start:start + chunk]
        out.append(b"d" + struct.pack("!I", len(piece) + 4) + piece)
    return out
