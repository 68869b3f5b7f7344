"""FeaturePlan (the model's matrix made in C from binary DataRows) against the
general route it replaces: the same batch decoded column by column, typed, and put
through the model's Preprocessor.transform. The two must give the same bits."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.preprocess import Preprocessor
from proxy.inference import rowscan
from proxy.inference.evaluate import argument_columns
from proxy.inference.features import FeaturePlan
from proxy.inference.rewrite.plan import ArgColumn
from proxy.inference.rows import DataRowBatch, RowFormatError

from .test_rows import ref_row

pytestmark = pytest.mark.skipif(
    rowscan.native is None,
    reason="_mlproxy_rows is not built (tests/proxy/test_wire_scan fails where it should be)")

NUMBERS = ["x", "y", "z"]
TEXTS = ["c", "d"]
DECLARED = {"float": "double precision", "int": "boolean", "text": "text"}


class Entry:
    """What argument_columns reads of a registry entry: the model's input names."""

    def __init__(self, names):
        self.arg_names = tuple(names)


def binary_field(kind: str, value):
    if value is None:
        return None
    if kind == "float":
        return struct.pack("!d", value)
    if kind == "int":
        return struct.pack("!i", value)
    return value.encode()


def batch_of(rows: list[list]) -> DataRowBatch:
    return DataRowBatch.from_frames([ref_row(r) for r in rows])


def both_routes(spec: dict, kinds: list[str], values: list[list]):
    """(plan matrix, transform matrix) of rows whose column 0 is an id, column 1 a
    placeholder and columns 2.. the arguments, one per input of `spec`."""
    names = [i["name"] for i in spec["inputs"]]
    args = [ArgColumn(2 + j, kind, DECLARED[kind]) for j, kind in enumerate(kinds)]
    rows = [[b"\x00" * 8, None, *(binary_field(k, v) for k, v in zip(kinds, row))] for row in values]
    batch = batch_of(rows)
    pre = Preprocessor(spec)
    plan = FeaturePlan.of(args, names, pre)
    assert plan is not None
    expected = pre.transform(argument_columns(batch, args, Entry(names), binary=True))
    return plan.matrix(batch), expected


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(np.ascontiguousarray(a).view(np.int64),
                                                 np.ascontiguousarray(b).view(np.int64))


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
category = st.sampled_from(["a", "b", "", "ä", "a ", "10", "true", "b\x00c", "日本"]) | st.text(max_size=4)


@st.composite
def specs(draw):
    """A spec over NUMBERS and TEXTS: numeric features (all scaled or none, as
    automl writes them), ordinal and one-hot features, repeats allowed."""
    scaled = draw(st.booleans())
    features = []
    for name in draw(st.lists(st.sampled_from(NUMBERS), max_size=5)):
        op = {"op": "numeric", "input": name, "fill": draw(finite)}
        if scaled:
            op["center"] = draw(finite)
            op["scale"] = draw(finite.filter(lambda v: v != 0))
        features.append(op)
    for name in draw(st.lists(st.sampled_from(TEXTS), max_size=4)):
        if draw(st.booleans()):
            features.append({"op": "ordinal", "input": name,
                             "categories": draw(st.lists(category, max_size=6)), "unknown": draw(finite)})
        else:
            features.append({"op": "one_hot", "input": name, "category": draw(category)})
    draw(st.randoms()).shuffle(features)
    inputs = [{"name": n, "type": "double precision"} for n in NUMBERS] + \
             [{"name": n, "type": "text"} for n in TEXTS]
    return {"version": 1, "inputs": inputs, "features": features}


number = st.none() | st.floats(width=64) | st.sampled_from([0.0, -0.0, math.nan, 1e308, -1e-308])
text_value = st.none() | category


@settings(max_examples=300, deadline=None)
@given(specs(), st.lists(st.tuples(number, number, number, text_value, text_value), min_size=1, max_size=70))
def test_matrix_equals_transform(spec, values):
    plan_matrix, expected = both_routes(spec, ["float"] * 3 + ["text"] * 2, [list(v) for v in values])
    assert plan_matrix.flags.f_contiguous
    assert same_bits(plan_matrix, expected)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.none() | st.integers(-2**31, 2**31 - 1), finite), min_size=1, max_size=30))
def test_int4_arguments(values):
    """Booleans travel as int4 0/1; any int4 is read as its value."""
    spec = {"version": 1, "inputs": [{"name": "x", "type": "boolean"}, {"name": "y", "type": "double precision"}],
            "features": [{"op": "numeric", "input": "y", "fill": 1.5},
                         {"op": "numeric", "input": "x", "fill": -2.0}]}
    rows = [[v if v is None else v % 2, y] for v, y in values]
    plan_matrix, expected = both_routes(spec, ["int", "float"], rows)
    assert same_bits(plan_matrix, expected)


def test_many_categories_and_rows():
    """A high-cardinality ordinal input and a batch of the size the session sends."""
    rng = np.random.default_rng(1)
    categories = [f"cat{i:05d}" for i in range(5000)]
    spec = {"version": 1, "inputs": [{"name": "c", "type": "text"}, {"name": "x", "type": "double precision"}],
            "features": [{"op": "ordinal", "input": "c", "categories": categories, "unknown": -1.0},
                         {"op": "one_hot", "input": "c", "category": "cat00007"},
                         {"op": "numeric", "input": "x", "fill": 0.0, "center": 1.0, "scale": 3.0}]}
    picks = rng.integers(0, 5200, 20000)
    rows = [[None if p % 97 == 0 else f"cat{p:05d}", float(p) / 7] for p in picks]
    plan_matrix, expected = both_routes(spec, ["text", "float"], rows)
    assert same_bits(plan_matrix, expected)
    assert (plan_matrix[:, 0] == -1).sum() == sum(1 for r in rows if r[0] is None or int(r[0][3:]) >= 5000)


def _plan(spec, kinds):
    names = [i["name"] for i in spec["inputs"]]
    return FeaturePlan.of([ArgColumn(2 + j, k, DECLARED.get(k, "date")) for j, k in enumerate(kinds)],
                          names, Preprocessor(spec))


def test_general_route_where_the_plan_cannot_read_the_argument():
    numeric = {"version": 1, "inputs": [{"name": "x", "type": "integer"}],
               "features": [{"op": "numeric", "input": "x", "fill": 0.0}]}
    keyed = {"version": 1, "inputs": [{"name": "x", "type": "integer"}],
             "features": [{"op": "one_hot", "input": "x", "category": "3"}]}
    dated = {"version": 1, "inputs": [{"name": "t", "type": "date"}],
             "features": [{"op": "datetime_part", "input": "t", "part": "year", "fill": 2000.0}]}
    assert _plan(numeric, ["float"]) is not None
    assert _plan(numeric, ["text"]) is None  # a number given as text
    assert _plan(keyed, ["float"]) is None  # a number used as a category: its key is its text
    assert _plan(dated, ["epoch"]) is None  # datetime parts have no plain form
    assert FeaturePlan.of([], ["x"], Preprocessor(numeric)) is None  # an input without an argument


def test_unused_input_and_no_features():
    spec = {"version": 1, "inputs": [{"name": "x", "type": "double precision"}, {"name": "y", "type": "text"}],
            "features": [{"op": "numeric", "input": "x", "fill": 4.0}]}
    plan_matrix, expected = both_routes(spec, ["float", "text"], [[None, "q"], [2.5, None]])
    assert same_bits(plan_matrix, expected) and plan_matrix.tolist() == [[4.0], [2.5]]


def test_wrong_binary_width_is_a_row_format_error():
    spec = {"version": 1, "inputs": [{"name": "x", "type": "double precision"}],
            "features": [{"op": "numeric", "input": "x", "fill": 0.0}]}
    plan = _plan(spec, ["float"])
    batch = batch_of([[b"\x00" * 8, None, struct.pack("!d", 1.0)], [b"\x00" * 8, None, b"\x00" * 4]])
    with pytest.raises(RowFormatError, match="column 2: a binary f8 field is not 8 bytes"):
        plan.matrix(batch)
    assert plan.matrix(batch_of([])).shape == (0, 1)


def test_native_functions_refuse_bad_arguments():
    batch = batch_of([[b"ab", b"c"]])
    native = rowscan.native
    X = np.empty((1, 1))
    one = np.zeros(1, dtype=np.int64)
    ok = (batch.buffer, batch.field_pos, batch.field_len, 1, X, one, np.array([8]), one,
          np.zeros(1), np.zeros(1), np.ones(1), False)
    with pytest.raises(ValueError):  # source column out of range
        native.numeric(*ok[:5], np.array([5]), *ok[6:])
    with pytest.raises(ValueError):  # a width other than 4 or 8
        native.numeric(*ok[:6], np.array([2]), *ok[7:])
    with pytest.raises(ValueError):  # target column out of range
        native.numeric(*ok[:7], np.array([3]), *ok[8:])
    blob, bounds, targets, values = b"abc", np.array([0, 2, 3]), np.array([0]), np.array([5.0, 6.0, -1.0])
    native.keys(batch.buffer, batch.field_pos, batch.field_len, 1, 0, blob, bounds, X, targets, values)
    assert X.tolist() == [[5.0]]  # "ab" is key 0
    native.keys(batch.buffer, batch.field_pos, batch.field_len, 1, 1, blob, bounds, X, targets, values)
    assert X.tolist() == [[6.0]]  # "c" is key 1
    other = batch_of([[b"a", None]])
    for column in (0, 1):  # "a" is no key, nor is NULL: the default, last
        native.keys(other.buffer, other.field_pos, other.field_len, 1, column, blob, bounds, X, targets, values)
        assert X.tolist() == [[-1.0]]
    with pytest.raises(ValueError):  # bounds out of order
        native.keys(batch.buffer, batch.field_pos, batch.field_len, 1, 0, blob, np.array([0, 3, 2]), X, targets, values)
    with pytest.raises(ValueError):  # column out of range
        native.keys(batch.buffer, batch.field_pos, batch.field_len, 1, 2, blob, bounds, X, targets, values)
    with pytest.raises(ValueError):  # target column out of range
        native.keys(batch.buffer, batch.field_pos, batch.field_len, 1, 0, blob, bounds, X, np.array([1]), values)
    with pytest.raises(ValueError):  # fewer values than features x (keys + 1)
        native.keys(batch.buffer, batch.field_pos, batch.field_len, 1, 0, blob, bounds, X, targets, values[:2])
