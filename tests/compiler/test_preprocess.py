"""The vectorized spec implementation against automl's (the contract's other side),
on generated awkward columns; and the batch validation errors."""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from automl.spec import transform as automl_transform
from compiler.errors import ArgumentMismatch, InvalidInputValue
from compiler.preprocess import DATETIME_PARTS, Preprocessor, SpecError

UTC_PLUS_2 = dt.timezone(dt.timedelta(hours=2))

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in _key:RuntimeWarning")

numbers = st.one_of(
    st.none(),
    st.floats(allow_infinity=False, width=64),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.booleans(),
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-10**9, max_value=10**9),
)
keys = st.one_of(
    st.none(),
    st.sampled_from(["a", "b", "c", "", "True", "false", "1", "1.0", "ünï"]),
    # a Postgres text value never holds NUL (numpy's fixed-width strings would drop a
    # trailing one: "\x00" and "" are one key there, which no table can show)
    st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=5),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=False).filter(lambda f: f == f or True),
)
stamps = st.one_of(
    st.none(),
    st.dates(min_value=dt.date(1800, 1, 1), max_value=dt.date(2200, 1, 1)),
    st.datetimes(min_value=dt.datetime(1800, 1, 1), max_value=dt.datetime(2200, 1, 1)),
    st.datetimes(min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(2200, 1, 1), timezones=st.just(UTC_PLUS_2)),
)


def _spec(categories: list[str]) -> dict:
    return {
        "version": 1,
        "inputs": [{"name": "n", "type": "numeric"}, {"name": "k", "type": "text"},
                   {"name": "t", "type": "timestamp"}, {"name": "unused", "type": "text"}],
        "features": [
            {"input": "n", "op": "numeric", "fill": 2.5, "center": 1.25, "scale": 3.0},
            {"input": "k", "op": "ordinal", "categories": categories, "unknown": -0.5},
            *[{"input": "k", "op": "one_hot", "category": c} for c in categories[:4]],
            *[{"input": "t", "op": "datetime_part", "part": p, "fill": 7.0, "center": 1.0, "scale": 2.0}
              for p in DATETIME_PARTS],
        ],
    }


@settings(max_examples=150, deadline=None)
@given(
    rows=st.integers(0, 12).flatmap(lambda n: st.tuples(
        st.lists(numbers, min_size=n, max_size=n),
        st.lists(keys, min_size=n, max_size=n),
        st.lists(stamps, min_size=n, max_size=n),
    )),
    categories=st.lists(st.sampled_from(["a", "b", "c", "", "true", "false", "1", "1.0", "ünï", "True", "nan"]),
                        min_size=0, max_size=6),
)
def test_matches_automl_on_object_columns(rows, categories):
    n_col, k_col, t_col = rows
    cols = {
        "n": np.array(n_col + [0], dtype=object)[:-1],
        "k": np.array(k_col + [0], dtype=object)[:-1],
        "t": np.array(t_col + [0], dtype=object)[:-1],
        "unused": np.array(["x"] * len(n_col), dtype=object),
    }
    spec = _spec(categories)
    with np.errstate(all="ignore"):
        want = automl_transform(spec, cols)
    got = Preprocessor(spec).transform(cols)
    np.testing.assert_array_equal(got, want)
    assert got.flags.f_contiguous and got.dtype == np.float64  # feature-major: what the driver reads fastest


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.floats(allow_infinity=False, width=64), min_size=0, max_size=20),
    ints=st.lists(st.integers(-(2**62), 2**62), min_size=20, max_size=20),
    stamps_us=st.lists(st.integers(-(2**60), 2**60), min_size=20, max_size=20),
)
def test_matches_automl_on_typed_columns(values, ints, stamps_us):
    n = len(values)
    t = np.array(stamps_us[:n], dtype="datetime64[us]")
    t[:: 3] = np.datetime64("NaT")
    cols = {"n": np.array(values, dtype=np.float64), "k": np.array(values, dtype=np.float64),
            "t": t, "unused": np.zeros(n)}
    spec = _spec(["0.1", "1.0", "nan", "-0.0", "1e+16"])
    np.testing.assert_array_equal(Preprocessor(spec).transform(cols), automl_transform(spec, cols))
    cols["k"] = np.array(ints[:n], dtype=np.int64)
    cols["n"] = np.array(ints[:n], dtype=np.int64) % 7 == 0
    np.testing.assert_array_equal(Preprocessor(spec).transform(cols), automl_transform(spec, cols))


def test_specific_values():
    spec = _spec(["basic", "true", "3", "2.5"])
    cols = {
        "n": np.array([None, True, decimal.Decimal("1.50"), 7, float("nan")], dtype=object),
        "k": np.array(["basic", True, 3, 2.5, None], dtype=object),
        "t": np.array([dt.date(2024, 2, 29), dt.datetime(2021, 1, 1, 1, 30, tzinfo=UTC_PLUS_2), None,
                       dt.datetime(1969, 12, 31, 23), dt.datetime(2000, 1, 1)], dtype=object),
        "unused": np.zeros(5),
    }
    X = Preprocessor(spec).transform(cols)
    np.testing.assert_array_equal(X[:, 0], (np.array([2.5, 1.0, 1.5, 7.0, 2.5]) - 1.25) / 3.0)
    np.testing.assert_array_equal(X[:, 1], [0.0, 1.0, 2.0, 3.0, -0.5])  # NULL -> unknown
    np.testing.assert_array_equal(X[:, 2:6], np.eye(5)[:, :4])  # one_hot; NULL row all zeros
    year, month, day, dow, doy, hour, epoch = (X[:, 6 + i] * 2.0 + 1.0 for i in range(7))
    np.testing.assert_array_equal(year, [2024, 2020, 7, 1969, 2000])  # aware 2021-01-01T01:30+02 is 2020 in UTC
    np.testing.assert_array_equal(hour, [0, 23, 7, 23, 0])
    np.testing.assert_array_equal(dow[[0, 4]], [3, 5])  # Thursday, Saturday (Monday = 0)
    assert epoch[3] == pytest.approx(-1 / 24)


@pytest.fixture
def pre():
    return Preprocessor(_spec(["a", "b"]))


def _good(n=3):
    return {"n": np.arange(n, dtype=np.float64), "k": np.array(["a"] * n, dtype=object),
            "t": np.array(["2020-01-01"] * n, dtype="datetime64[us]"), "unused": np.zeros(n)}


def test_missing_column_names_it(pre):
    cols = _good()
    del cols["k"]
    with pytest.raises(ArgumentMismatch, match="'k' \\(text\\) is missing") as info:
        pre.transform(cols)
    assert info.value.sqlstate == "42883" and info.value.column == "k"


def test_extra_column_names_it_and_the_signature(pre):
    cols = {**_good(), "surprise": np.zeros(3)}
    with pytest.raises(ArgumentMismatch, match="4 argument.*'surprise'") as info:
        pre.transform(cols)
    assert info.value.sqlstate == "42883"


@pytest.mark.parametrize("column, value, expect", [
    ("n", np.array(["1", "2", "3"]), "'n' must be numeric"),
    ("n", np.array(["2020-01-01"] * 3, dtype="datetime64[us]"), "'n' must be numeric"),
    ("n", np.array([1.0, "abc", None], dtype=object), "'n' must be numeric .*'abc'"),
    ("t", np.array([1.0, 2.0, 3.0]), "'t' must be timestamp \\(dates or timestamps\\)"),
    ("t", np.array(["x", None, None], dtype=object), "'t' must be timestamp"),
    ("k", np.array(["2020-01-01"] * 3, dtype="datetime64[us]"), "'k' must be text"),
    ("k", np.zeros((3, 2)), "'k' must be a one-dimensional array"),
])
def test_wrong_dtype_names_column_and_expectation(pre, column, value, expect):
    cols = {**_good(), column: value}
    with pytest.raises(ArgumentMismatch, match=expect) as info:
        pre.transform(cols)
    assert info.value.sqlstate == "42883" and info.value.column == column


def test_ragged_batch_is_a_bad_value(pre):
    cols = {**_good(), "k": np.array(["a"] * 4, dtype=object)}
    with pytest.raises(InvalidInputValue, match="'k' has 4 rows but column 'n' has 3") as info:
        pre.transform(cols)
    assert info.value.sqlstate == "22023"


def test_infinity_is_refused_with_column_and_row(pre):
    cols = {**_good(), "n": np.array([0.0, np.inf, 1.0])}
    X = pre.transform(cols)
    with pytest.raises(InvalidInputValue, match="'n'.*row 2") as info:
        pre.check_finite(X)
    assert info.value.sqlstate == "22023"


@pytest.mark.parametrize("spec, match", [
    ({"inputs": [], "features": [{"input": "x", "op": "numeric"}]}, "does not name"),
    ({"inputs": [{"name": "x"}], "features": [{"input": "x", "op": "numeric", "scale": 0}]}, "scale"),
    ({"inputs": [{"name": "x"}], "features": [{"input": "x", "op": "numeric", "fill": float("nan")}]}, "fill"),
    ({"inputs": [{"name": "x"}], "features": [{"input": "x", "op": "datetime_part", "part": "week"}]}, "part"),
    ({"inputs": [{"name": "x"}, {"name": "x"}], "features": []}, "unique"),
    ({"version": 2, "inputs": [], "features": []}, "version"),
    ("nope", "object"),
])
def test_malformed_spec_is_rejected(spec, match):
    with pytest.raises(SpecError, match=match):
        Preprocessor(spec)


def test_repeated_one_hot_category_sets_every_copy():
    spec = {"inputs": [{"name": "k", "type": "text"}],
            "features": [{"input": "k", "op": "one_hot", "category": "a"},
                         {"input": "k", "op": "one_hot", "category": "b"},
                         {"input": "k", "op": "one_hot", "category": "a"}]}
    X = Preprocessor(spec).transform({"k": np.array(["a", "b", None, "c"], dtype=object)})
    np.testing.assert_array_equal(X, [[1, 0, 1], [0, 1, 0], [0, 0, 0], [0, 0, 0]])


@settings(max_examples=200, deadline=None)
@given(values=st.lists(keys, min_size=1, max_size=16),
       floats=st.lists(st.one_of(st.floats(allow_infinity=False, width=64),
                                 st.sampled_from([1e16, 1e-5, 1e15, 123456789012345678.0, -0.0, 1e22, 0.1])),
                       min_size=1, max_size=16),
       ints=st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=16))
def test_few_rows_keys_are_the_vectorized_keys(values, floats, ints):
    """A single-row lookup takes its category keys value by value (_few_keys): the
    same keys and NULLs as the whole-array path, for every dtype a key may have."""
    from compiler.preprocess import _KeyTable, _as_keys, _few_keys

    arrays = [np.array(values + [0], dtype=object)[:-1], np.array(floats), np.array(ints),
              np.array([bool(i % 2) for i in ints]), np.array([str(v) for v in values])]
    for arr in arrays:
        keys, null = _as_keys(arr)
        few, _ = _few_keys(arr)
        assert [None if is_null else str(k) for k, is_null in zip(keys, null)] == few
        table = _KeyTable(sorted({k for k in few if k is not None})[:3] + ["zz", "true"])
        np.testing.assert_array_equal(table.lookup(keys, null), table.lookup(few, None))


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.one_of(keys, st.sampled_from([b"a", b"", b"1"])), min_size=1, max_size=12),
       categories=st.lists(st.sampled_from(["a", "b", "", "true", "1", "1.0", "ünï", "True", "nan", "b''"]),
                           max_size=6))
def test_many_rows_keys_are_the_per_value_keys(values, categories):
    """Big text columns are looked up per distinct value (_many_keys): the same
    indexes as the per-value rule, also when the column mixes in other types."""
    from compiler.preprocess import _CODED_KEYS, _KeyTable, _as_keys, _many_keys

    arr = np.array(values * (_CODED_KEYS // len(values) + 1) + [0], dtype=object)[:-1]
    texts = np.array([v if isinstance(v, str) or v is None else "x" for v in arr.tolist()] + [0],
                     dtype=object)[:-1]
    table = _KeyTable(categories)
    for column in (arr, texts):
        np.testing.assert_array_equal(table.lookup(*_many_keys(column)), table.lookup(*_as_keys(column)))
