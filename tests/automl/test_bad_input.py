"""Bad input fails with an AutoMLError subclass carrying a SQLSTATE and a clear message."""

import numpy as np
import pyarrow as pa
import pytest

import automl

from .data import bundled


def _small(n=100, **extra):
    rng = np.random.default_rng(0)
    return pa.table({"x": rng.normal(size=n), "y": rng.integers(0, 2, n), **extra})


@pytest.mark.parametrize("table, options, exc, sqlstate, words", [
    (_small(), {"target": "label"}, automl.MissingColumn, "42703", ["label", "does not exist"]),
    (pa.table({"x": [1.0, 2.0] * 20, "y": pa.array([None] * 40, type=pa.int64())}), {"target": "y"},
     automl.UnusableData, "22000", ["NULL in every row"]),
    (pa.table({"x": np.arange(40.0), "y": [1] * 40}), {"target": "y"}, automl.UnusableData, "22000",
     ["single distinct value"]),
    (_small(10), {"target": "y"}, automl.UnusableData, "22000", ["only 10 rows"]),
    (_small(blob=pa.array([b"\x00"] * 100)), {"target": "y"}, automl.UnsupportedColumnType, "0A000",
     ["blob", "binary"]),
    (_small(), {"target": "y", "objective": "MSE"}, automl.InvalidOption, "22023", ["MSE", "F1"]),
    (bundled("iris"), {"target": "target", "objective": "AUC"}, automl.InvalidOption, "22023",
     ["AUC", "MULTICLASS", "F1Macro"]),
    (_small(), {"target": "y", "problem_type": "regression", "objective": "accuracy"}, automl.InvalidOption,
     "22023", ["Accuracy"]),
    (pa.table({"x": ["a"] * 50, "y": np.arange(50) % 2}), {"target": "y"}, automl.UnusableData, "22000",
     ["no usable input column"]),
    (pa.table({"x": np.arange(50.0), "y": pa.array(np.full(50, np.datetime64("2020-01-01", "D")))}), {"target": "y"},
     automl.UnsupportedColumnType, "0A000", ["target"]),
])
def test_bad_input_raises_a_sql_error(table, options, exc, sqlstate, words):
    with pytest.raises(exc) as info:
        automl.train(table, {"max_runtime": 5, **options})
    err = info.value
    assert isinstance(err, automl.AutoMLError) and err.sqlstate == sqlstate
    for word in words:
        assert word in str(err)


def test_max_runtime_too_small_for_one_trial():
    rng = np.random.default_rng(0)
    n = 20_000
    table = pa.table({**{f"x{i}": rng.normal(size=n) for i in range(10)}, "y": rng.normal(size=n)})
    with pytest.raises(automl.TimeBudgetExceeded) as info:
        automl.train(table, {"target": "y", "max_runtime": 0.05})
    assert info.value.sqlstate == "57014" and "MAX_RUNTIME" in str(info.value)


def test_not_a_table():
    with pytest.raises(automl.InvalidOption, match="pyarrow Table"):
        automl.train({"x": [1]}, {"target": "y"})


def test_a_fit_that_fails_is_a_failed_trial_not_a_crash(monkeypatch):
    from automl.registry import FAMILIES

    linear = FAMILIES["LINEAR_LEARNER"]
    real_build = type(linear).build

    def fragile(self, params, ctx):
        if params.get("wd", 1.0) != 1.0:
            raise ValueError("solver diverged")
        return real_build(self, params, ctx)

    monkeypatch.setattr(type(linear), "build", fragile)
    table = bundled("iris")
    model = automl.train(table, {"target": "target", "model_type": "linear_learner", "max_runtime": 10})
    assert model.model_type == "LINEAR_LEARNER" and model.leaderboard[0]["params"]["wd"] == 1.0
    assert any("trials failed" in line and "solver diverged" in line for line in model.report)

    monkeypatch.setattr(type(linear), "build", lambda self, params, ctx: (_ for _ in ()).throw(ValueError("nope")))
    with pytest.raises(automl.UnusableData, match="no candidate model could be trained.*nope"):
        automl.train(table, {"target": "target", "model_type": "linear_learner", "max_runtime": 10})
