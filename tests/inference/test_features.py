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
from proxy.inference.rowscan import TextNotUtf8

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


def both_routes(spec: dict, kinds: list[str], values: list[list], declared: list[str] | None = None):
    """(plan matrix, transform matrix) of rows whose column 0 is an id, column 1 a
    placeholder and columns 2.. the arguments, one per input of `spec` (declared as
    `declared`, else as DECLARED says for their kind)."""
    names = [i["name"] for i in spec["inputs"]]
    declared = declared or [DECLARED[kind] for kind in kinds]
    args = [ArgColumn(2 + j, kind, declared[j]) for j, kind in enumerate(kinds)]
    rows = [[b"\x00" * 8, None, *(binary_field(k, v) for k, v in zip(kinds, row))] for row in values]
    batch = batch_of(rows)
    pre = Preprocessor(spec)
    plan = FeaturePlan.of(args, names, pre)
    assert plan is not None
    expected = pre.transform(argument_columns(batch, args, Entry(names), binary=True))
    matrix = plan.matrix(batch)
    # the small-batch route parses the rows itself: the same bits
    assert same_bits(plan.rows_matrix(bytes(batch.buffer), batch.n_rows), matrix)
    return matrix, expected


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


code = st.integers(-10**6, 10**6) | st.sampled_from([0, -1, 2**31 - 1, -2**31, 10**16 - 2, -(10**15)])


@settings(max_examples=200, deadline=None)
@given(st.lists(code, max_size=8), st.booleans(),
       st.lists(st.tuples(st.none() | code.map(float) | st.sampled_from([math.nan, 1e16, -1e17, math.inf, -0.0,
                                                                        2.5, -0.5, 1e300]),
                          finite), min_size=1, max_size=40))
def test_integer_codes_are_looked_up_by_their_float_text(categories, one_hot, values):
    """An integer input used by value and as a category (automl/codes.py) travels as
    float8; the C plan looks its fields up by the float's text ("7001.0") and gives
    the general route's bits, NULL, NaN, huge values and fractions included."""
    keys = [str(float(c)) for c in categories]
    features = [{"op": "numeric", "input": "n", "fill": -3.0},
                {"op": "ordinal", "input": "n", "categories": keys, "unknown": 1.5},
                {"op": "numeric", "input": "y", "fill": 0.0}]
    if one_hot and keys:
        features.append({"op": "one_hot", "input": "n", "category": keys[-1]})
    spec = {"version": 1, "inputs": [{"name": "n", "type": "integer"}, {"name": "y", "type": "double precision"}],
            "features": features}
    rows = [[v, y] for v, y in values]
    plan_matrix, expected = both_routes(spec, ["float", "float"], rows, ["integer", "double precision"])
    # every keyed column (and y) bit for bit; column 0, n by value, is the float8 as read,
    # which differs from the general route's int64 cast only for a fraction, -0 or a
    # value past int64 (the transport's cast to integer never sends them)
    assert same_bits(plan_matrix[:, 1:], expected[:, 1:])
    whole = np.array([v is None or v != v or (abs(v) < 2**62 and same_bits(np.array([v]), np.array([float(int(v))])))
                      for v, _ in values])
    assert same_bits(plan_matrix[whole, :1], expected[whole, :1])


def test_integer_codes_the_plan_cannot_key():
    """Categories outside the band the C lookup prints (1e16 and more, or not an
    integer's text), or a boolean input: the general route."""
    def spec(input_type, categories):
        return {"version": 1, "inputs": [{"name": "n", "type": input_type}],
                "features": [{"op": "ordinal", "input": "n", "categories": categories, "unknown": -1.0}]}
    assert _plan(spec("integer", ["7001.0", "-3.0"]), ["float"]) is not None
    assert _plan(spec("bigint", ["1e+16"]), ["float"]) is None
    assert _plan(spec("integer", ["7001"]), ["float"]) is None
    assert _plan(spec("double precision", ["2.5"]), ["float"]) is None
    assert _plan(spec("boolean", ["true"]), ["int"]) is None
    plan = _plan(spec("integer", ["7001.0"]), ["float"])
    batch = batch_of([[b"\x00" * 8, None, struct.pack("!d", 7001.0)], [b"\x00" * 8, None, b"\x00" * 4]])
    with pytest.raises(RowFormatError, match="column 2: a binary f8 field is not 8 bytes"):
        plan.matrix(batch)
    assert plan.matrix(batch_of([[b"\x00" * 8, None, struct.pack("!d", 7001.0)]])).tolist() == [[0.0]]


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


def test_native_plan_refuses_bad_arguments():
    MatrixPlan = rowscan.native.MatrixPlan
    one = np.zeros(1, dtype=np.int64)
    numeric = (one, np.array([8]), one, np.zeros(1), np.zeros(1), np.ones(1), False)
    MatrixPlan(1, *numeric, ())
    with pytest.raises(ValueError):  # a width other than 4 or 8
        MatrixPlan(1, one, np.array([2]), *numeric[2:], ())
    with pytest.raises(ValueError):  # target column out of range
        MatrixPlan(1, one, np.array([8]), np.array([1]), *numeric[3:], ())
    with pytest.raises(ValueError):  # fewer fills than sources
        MatrixPlan(1, *numeric[:3], np.zeros(0), *numeric[4:], ())
    blob, bounds, targets, values = b"abc", np.array([0, 2, 3]), np.array([0]), np.array([5.0, 6.0, -1.0])
    MatrixPlan(1, *[np.zeros(0)] * 6, False, ((0, blob, bounds, targets, values),))
    bad_tables = [(0, blob, np.array([0, 3, 2]), targets, values),  # bounds out of order
                  (0, blob, np.array([0, 2, 4]), targets, values),  # past the keys
                  (0, blob, bounds, np.array([1]), values),  # target column out of range
                  (0, blob, bounds, targets, values[:2]),  # fewer values than features x (keys + 1)
                  (-1, blob, bounds, targets, values)]  # column out of range
    for table in bad_tables:
        with pytest.raises(ValueError):
            MatrixPlan(1, *[np.zeros(0)] * 6, False, (table,))
    with pytest.raises(TypeError):
        MatrixPlan(1, *[np.zeros(0)] * 6, False, ((0, blob),))
    plan = MatrixPlan(1, *[np.zeros(0)] * 6, False, ((0, blob, bounds, targets, values),))
    X = np.empty((1, 1))
    batch = batch_of([[b"ab", b"c"]])
    with pytest.raises(ValueError):  # X too small for the rows
        plan.fill(batch.buffer, batch.field_pos, batch.field_len, 2, X)
    with pytest.raises(ValueError):
        plan.fill_rows(bytes(batch.buffer), 2, X)
    for row, expected in (([b"ab", b"c"], 5.0), ([b"c", None], 6.0), ([b"a", b"c"], -1.0), ([None, b"c"], -1.0)):
        assert plan.fill_rows(ref_row(row), 1, X) == -1 and X.tolist() == [[expected]]


@pytest.mark.parametrize("rows, message", [
    (ref_row([b"ab"])[:-1], "past the"),  # cut in a field
    (ref_row([b"ab"])[:5], "past the end"),  # cut in the header
    (b"T" + ref_row([b"ab"])[1:], "not a DataRow"),
    (ref_row([b"ab"]) + b"\x00", "do not fill"),  # a byte after the rows
    (ref_row([b"ab"]) * 2, "do not fill"),  # more rows than counted
    (ref_row([]), "fewer columns"),
    (ref_row([b"ab"])[:1] + struct.pack("!i", 14) + ref_row([b"ab"])[5:] + b"xyz", "do not fill the message"),
    (ref_row([b"ab"])[:7] + struct.pack("!i", -2) + b"ab", "negative"),
])
def test_rows_matrix_refuses_malformed_rows(rows, message):
    spec = {"version": 1, "inputs": [{"name": "c", "type": "text"}],
            "features": [{"op": "one_hot", "input": "c", "category": "ab"}]}
    plan = FeaturePlan.of([ArgColumn(0, "text", "text")], ["c"], Preprocessor(spec))
    assert plan.rows_matrix(ref_row([b"ab"]), 1).tolist() == [[1.0]]
    with pytest.raises(RowFormatError, match=message):
        plan.rows_matrix(rows, 1)


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=12) | st.text(max_size=4).map(str.encode)
       | st.sampled_from([b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x8f\xbf\xbf",
                          b"\xc3", b"\xe2\x82", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf", "é".encode("latin-1")]))
def test_a_text_field_that_is_no_category_must_be_utf8(raw):
    """Another client_encoding's bytes are refused (TextNotUtf8, 22021), not taken
    for an unseen category; the C check accepts exactly what Python's codec does."""
    spec = {"version": 1, "inputs": [{"name": "c", "type": "text"}],
            "features": [{"op": "one_hot", "input": "c", "category": "ab"}]}
    plan = FeaturePlan.of([ArgColumn(0, "text", "text")], ["c"], Preprocessor(spec))
    if _utf8(raw) or raw == b"ab":
        assert plan.rows_matrix(ref_row([raw]), 1).tolist() == [[1.0 if raw == b"ab" else 0.0]]
    else:
        with pytest.raises(TextNotUtf8) as err:
            plan.rows_matrix(ref_row([raw]), 1)
        assert err.value.sqlstate == "22021"
        with pytest.raises(TextNotUtf8):  # the batch route too
            plan.matrix(batch_of([[raw]]))


# -- a few rows' predictions in one C call (FeaturePlan.predict_rows) ---------------------

@pytest.fixture(scope="module")
def predictors(tmp_path_factory):
    """Compiled tree models (scikit-learn cases: five float8 inputs), built once."""
    import compiler
    from tests.compiler.cases import CASES

    cache = tmp_path_factory.mktemp("predict-rows")
    return {name: compiler.load_predictor(compiler.dump(CASES[name].train()), cache)
            for name in ("sk_gradient_boosting_binary", "sk_random_forest_multiclass")}


_loose = st.none() | st.floats(width=64) | st.sampled_from([0.0, -0.0, 1e308, -1e308, math.inf, math.nan])


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["sk_gradient_boosting_binary", "sk_random_forest_multiclass"]),
       st.lists(st.tuples(*[_loose] * 5), min_size=1, max_size=32))
def test_predict_rows_is_the_predictors_route(predictors, name, values):
    """predict_rows (the matrix and the library in one C call) then
    predictions_from_margins gives predict_matrix's predictions of rows_matrix's
    matrix, bit for bit; it declines (None) exactly when a feature is not finite,
    where the predictor's own checks decide (an error, or NaN taken as missing)."""
    predictor = predictors[name]
    entry = predictor.library_entry()
    assert entry is not None
    names = [i.name for i in predictor.preprocessor.inputs]
    args = [ArgColumn(2 + j, "float", "double precision") for j in range(5)]
    plan = FeaturePlan.of(args, names, predictor.preprocessor)
    rows = b"".join(ref_row([b"\x00" * 8, None, *(binary_field("float", v) for v in row)]) for row in values)
    matrix = plan.rows_matrix(rows, len(values))
    margins = plan.predict_rows(rows, len(values), entry)
    if margins is None:
        assert not np.isfinite(matrix).all()
        return
    assert np.isfinite(matrix).all()
    got = predictor.predictions_from_margins(margins)
    want = predictor.predict_matrix(matrix)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert (got == want).all() if got.dtype.kind in "OUSb" else same_bits(got, want)


def test_predict_rows_refuses_what_rows_matrix_refuses(predictors):
    predictor = predictors["sk_gradient_boosting_binary"]
    names = [i.name for i in predictor.preprocessor.inputs]
    plan = FeaturePlan.of([ArgColumn(2 + j, "float", "double precision") for j in range(5)], names,
                          predictor.preprocessor)
    short = ref_row([b"\x00" * 8, None, b"\x00" * 4, *([b"\x00" * 8] * 4)])  # a 4-byte float8
    with pytest.raises(RowFormatError, match="not 8 bytes"):
        plan.predict_rows(short, 1, predictor.library_entry())
    with pytest.raises(RowFormatError):
        plan.predict_rows(short[:-3], 1, predictor.library_entry())
