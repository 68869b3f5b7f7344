import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from automl import UnusableData
from automl.columns import describe, to_raw
from automl.preprocess import fit_spec
from automl.problem import BINARY, MULTICLASS, REGRESSION, infer_problem_type
from automl.spec import datetime_part, transform


@pytest.mark.parametrize("values, kind, expected", [
    (np.array([0.0, 1.0, 1.0, 0.0]), "numeric", BINARY),
    (np.array(["a", "b", "a"], dtype=object), "text", BINARY),
    (np.array([1.0, 0.0]), "boolean", BINARY),
    (np.array(["a", "b", "c"], dtype=object), "text", MULTICLASS),
    (np.arange(10, dtype=np.float64) % 7, "numeric", MULTICLASS),
    (np.arange(21, dtype=np.float64), "numeric", REGRESSION),
    (np.array([0.5, 1.5, 2.25]), "numeric", REGRESSION),
])
def test_problem_type_inference_rule(values, kind, expected):
    problem, reason = infer_problem_type(values, kind)
    assert problem == expected and reason


def test_single_class_is_unusable():
    with pytest.raises(UnusableData, match="single distinct value"):
        infer_problem_type(np.array([3.0, 3.0, 3.0]), "numeric")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)),
                min_size=1, max_size=20))
def test_datetime_parts_match_python(stamps):
    t = np.array(stamps, dtype="datetime64[us]")
    expect = {
        "year": [s.year for s in stamps], "month": [s.month for s in stamps], "day": [s.day for s in stamps],
        "dayofweek": [s.weekday() for s in stamps], "dayofyear": [s.timetuple().tm_yday for s in stamps],
        "hour": [s.hour for s in stamps],
        "epoch_days": [(s - dt.datetime(1970, 1, 1)).total_seconds() / 86400 for s in stamps],
    }
    for part, values in expect.items():
        np.testing.assert_allclose(datetime_part(t, part), values, rtol=0, atol=1e-6)


def test_transform_applies_every_op_and_null_rules():
    spec = {"version": 1, "inputs": [], "features": [
        {"input": "x", "op": "numeric", "fill": 5.0, "center": 1.0, "scale": 2.0},
        {"input": "b", "op": "numeric", "fill": -1.0, "center": 0.0, "scale": 1.0},
        {"input": "c", "op": "ordinal", "categories": ["z", "a", "true"], "unknown": -1.0},
        {"input": "c", "op": "one_hot", "category": "a"},
        {"input": "d", "op": "datetime_part", "part": "month", "fill": 6.0, "center": 0.0, "scale": 1.0},
    ]}
    cols = {
        "x": np.array([3.0, np.nan, 1.0]),
        "b": np.array([True, None, False], dtype=object),
        "c": np.array(["a", None, True], dtype=object),
        "d": np.array([dt.date(2024, 2, 29), None, dt.datetime(2020, 12, 31, 23, tzinfo=dt.timezone.utc)],
                      dtype=object),
    }
    X = transform(spec, cols)
    np.testing.assert_array_equal(X, [[1.0, 1.0, 1.0, 1.0, 2.0],
                                      [2.0, -1.0, -1.0, 0.0, 6.0],
                                      [0.0, 0.0, 2.0, 0.0, 12.0]])


def _table():
    rng = np.random.default_rng(1)
    n = 200
    return pa.table({
        "serial": pa.array(np.arange(n) + 1000),
        "const": pa.array([7] * n),
        "empty": pa.array([None] * n, type=pa.float64()),
        "email": pa.array([f"user{i}@x.org" for i in range(n)]),
        "city": pa.array(rng.choice(["oslo", "rome", "lima"], n).tolist()),
        "score": pa.array(np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)), from_pandas=True),
        "flag": pa.array((rng.random(n) < 0.5).tolist()),
        "at": pa.array([dt.datetime(2021, 1, 1) + dt.timedelta(hours=int(h)) for h in rng.integers(0, 9000, n)],
                       type=pa.timestamp("us")),
    })


def test_roles_drop_constant_empty_and_id_like_columns():
    table = _table()
    infos = {c: describe(c, table.schema.field(c).type, to_raw(table.column(c))) for c in table.column_names}
    assert {c for c, i in infos.items() if not i.used} == {"serial", "const", "empty", "email"}
    assert infos["city"].role == "categorical" and infos["flag"].role == "boolean"
    assert infos["at"].role == "datetime" and infos["score"].role == "numeric"
    assert all(i.reason for i in infos.values())


@pytest.mark.parametrize("encoding", ["tree", "dense"])
def test_fitted_spec_is_json_and_handles_unseen_and_null(encoding):
    table = _table()
    raw = {c: to_raw(table.column(c)) for c in table.column_names}
    infos = [describe(c, table.schema.field(c).type, raw[c]) for c in table.column_names]
    y = (raw["city"] == "rome").astype(np.float64)
    spec = fit_spec(infos, raw, y, encoding, "binary")
    assert json.loads(json.dumps(spec)) == spec
    assert [i["name"] for i in spec["inputs"]] == table.column_names
    used = {f["input"] for f in spec["features"]}
    assert used == {"city", "score", "flag", "at"}
    X = transform(spec, raw)
    assert X.shape == (200, len(spec["features"])) and np.isfinite(X).all()
    new = {k: v[:3].copy() for k, v in raw.items()}
    new["city"] = np.array(["paris", None, "rome"], dtype=object)
    new["score"] = np.array([np.nan, 0.0, 1.0])
    new["at"] = np.array(["NaT", "2021-05-01", "2030-01-01"], dtype="datetime64[us]")
    Z = transform(spec, new)
    assert np.isfinite(Z).all()
    if encoding == "dense":
        hot = [j for j, f in enumerate(spec["features"]) if f["op"] == "one_hot"]
        assert Z[0, hot].sum() == 0 and Z[1, hot].sum() == 0 and Z[2, hot].sum() == 1
        scaled = [j for j, f in enumerate(spec["features"]) if f["op"] == "numeric" and f["input"] == "score"]
        assert abs(X[:, scaled].mean()) < 1e-9 and abs(X[:, scaled].std() - 1) < 1e-9
    else:
        (j,) = [j for j, f in enumerate(spec["features"]) if f["op"] == "ordinal"]
        cats = spec["features"][j]["categories"]
        # target-ordered: 'rome' (y = 1) sorts last
        assert cats[-1] == "rome" and Z[2, j] == cats.index("rome") and Z[0, j] == Z[1, j]
        (s,) = [j for j, f in enumerate(spec["features"]) if f["input"] == "score"]
        assert Z[0, s] < np.nanmin(raw["score"])  # NULL -> sentinel below the minimum
