"""MODEL_TYPE XGBOOST is XGBoost: AUTO OFF with the defaults trains exactly what
xgboost.train trains with the same parameters on the same rows (same trees, same
predictions); hyperparameters and objectives are XGBoost's; what XGBoost or the
target would reject is InvalidOption (22023) naming the problem."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import xgboost as xgb

import automl
from automl.errors import InvalidOption
from automl.validation import MAX_TEST_ROWS, TEST_FRACTION, stratified_split

from .data import bundled


def _selection_rows(y_codes: np.ndarray | None, n: int, seed: int = 0) -> np.ndarray:
    """The rows automl trains the final model on (it splits its test part off first)."""
    return stratified_split(y_codes, n, TEST_FRACTION, seed, cap=MAX_TEST_ROWS)[0]


def _trees(booster: xgb.Booster) -> list[dict]:
    return json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]


@pytest.mark.parametrize(("dataset", "objective", "params"), [
    ("diabetes", None, {"objective": "reg:squarederror"}),
    ("breast_cancer", "binary:logistic", {"objective": "binary:logistic"}),
    ("wine", "multi:softmax", {"objective": "multi:softmax", "num_class": 3}),
])
def test_auto_off_defaults_equal_xgboost_train(dataset, objective, params):
    table = bundled(dataset)
    options = {"target": "target", "model_type": "XGBOOST", "auto": False}
    if objective:
        options["objective"] = objective
    if objective == "multi:softmax":
        options["hyperparameters"] = {"NUM_CLASS": 3}
    model = automl.train(table, options)
    X = np.column_stack([table.column(c).to_numpy() for c in table.column_names if c != "target"])
    y = table.column("target").to_numpy()
    is_class = dataset != "diabetes"
    sel = _selection_rows(y if is_class else None, len(y))
    want = xgb.train({**params, "seed": 0, "nthread": 1}, xgb.DMatrix(X[sel], label=y[sel]), num_boost_round=100)
    got = model.estimator.booster
    assert got.num_boosted_rounds() == 100
    assert _trees(got) == _trees(want)
    d = xgb.DMatrix(X)
    np.testing.assert_array_equal(got.predict(d), want.predict(d))


def test_hyperparameters_are_xgboosts_own():
    table = bundled("diabetes")
    hyper = {"NUM_ROUND": "7", "MAX_DEPTH": "2", "ETA": "0.5", "GAMMA": "1", "MIN_CHILD_WEIGHT": "3",
             "SUBSAMPLE": "0.7", "COLSAMPLE_BYTREE": "0.8", "COLSAMPLE_BYLEVEL": "0.5", "COLSAMPLE_BYNODE": "0.9",
             "ALPHA": "2", "LAMBDA": "4", "MAX_DELTA_STEP": "3", "TREE_METHOD": "approx"}
    model = automl.train(table, {"target": "target", "model_type": "XGBOOST", "auto": False,
                                 "objective": "reg:pseudohubererror", "hyperparameters": hyper})
    config = json.loads(model.estimator.booster.save_config())
    train_param = config["learner"]["gradient_booster"]["tree_train_param"]
    assert model.estimator.booster.num_boosted_rounds() == 7
    assert config["learner"]["objective"]["name"] == "reg:pseudohubererror"
    assert config["learner"]["gradient_booster"]["gbtree_train_param"]["tree_method"] == "approx"
    for key, name in (("MAX_DEPTH", "max_depth"), ("ETA", "eta"), ("GAMMA", "gamma"),
                      ("MIN_CHILD_WEIGHT", "min_child_weight"), ("SUBSAMPLE", "subsample"),
                      ("COLSAMPLE_BYTREE", "colsample_bytree"), ("COLSAMPLE_BYLEVEL", "colsample_bylevel"),
                      ("COLSAMPLE_BYNODE", "colsample_bynode"), ("ALPHA", "alpha"), ("LAMBDA", "lambda"),
                      ("MAX_DELTA_STEP", "max_delta_step")):
        assert float(train_param[name]) == pytest.approx(float(hyper[key])), key


def test_auto_search_stays_inside_the_given_table():
    table = bundled("breast_cancer")
    narrow = {"ETA": {"low": 0.2, "high": 0.25}, "MAX_DEPTH": {"low": 3, "high": 4}, "NUM_ROUND": {"low": 10,
                                                                                                 "high": 30}}
    model = automl.train(table, {"target": "target", "model_type": "XGBOOST", "max_runtime": 30,
                                 "hyperparameter_table": narrow})
    assert len(model.leaderboard) > 2
    for entry in model.leaderboard:
        p = entry["params"]
        assert 0.2 <= p["eta"] <= 0.25 and 3 <= p["max_depth"] <= 4 and 10 <= p["num_round"] <= 30, p


def _regression_table(n: int = 200, low: float = -5.0) -> pa.Table:
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    return pa.table({"x": x, "z": rng.normal(size=n), "y": low + 10 * rng.random(n) + x})


@pytest.mark.parametrize(("table", "options", "words"), [
    (_regression_table(), {"objective": "binary:logistic"}, ["binary:logistic", "BINARY_CLASSIFICATION",
                                                             "REGRESSION"]),
    (_regression_table(), {"objective": "multi:softmax", "hyperparameters": {"NUM_CLASS": 3}},
     ["multi:softmax", "MULTICLASS_CLASSIFICATION", "REGRESSION"]),
    (bundled("wine"), {"objective": "multi:softmax"}, ["NUM_CLASS", "3 classes"]),
    (bundled("wine"), {"objective": "multi:softmax", "hyperparameters": {"NUM_CLASS": 4}}, ["NUM_CLASS", "4", "3"]),
    (bundled("wine"), {"objective": "reg:squarederror", "problem_type": "MULTICLASS_CLASSIFICATION"},
     ["reg:squarederror", "REGRESSION"]),
    (_regression_table(), {"objective": "reg:tweedie"}, ["reg:tweedie", "non-negative"]),
    (_regression_table(), {"objective": "reg:logistic"}, ["reg:logistic", "between 0 and 1"]),
    (_regression_table(low=-12), {"objective": "reg:squaredlogerror"}, ["greater than -1"]),
    (_regression_table(), {"hyperparameters": {"MAX_DEPTH": 0, "TREE_METHOD": "exact"}}, ["MAX_DEPTH", "exact"]),
    (_regression_table(), {"hyperparameters": {"ETA": 0.9}}, ["ETA", "0.5"]),
    (bundled("iris"), {"hyperparameters": {"SCALE_POS_WEIGHT": 2}}, ["SCALE_POS_WEIGHT", "BINARY"]),
])
def test_what_xgboost_would_reject_is_invalid_option(table, options, words):
    target = "y" if "y" in table.column_names else "target"
    with pytest.raises(InvalidOption) as err:
        automl.train(table, {"target": target, "model_type": "XGBOOST", "auto": False, **options})
    assert err.value.sqlstate == "22023"
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_importances_cut_by_the_deadline_are_the_boosters_gains_not_uniform():
    """Permutation importances need time after the refit; when the deadline has
    passed, an XGBoost model's importances are its total split gains (they were all
    alike, so the report's top input was whichever came first: a CI failure)."""
    from automl.boosting import XGBModel
    from automl.columns import describe
    from automl.importance import feature_importances
    from automl.registry import FAMILIES

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4))
    y = (X[:, 2] + 0.2 * rng.normal(size=500) > 0).astype(np.int64)
    model = XGBModel({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3}, 20, 2).fit(X, y)
    gains = model.gain_importances()
    assert gains.shape == (4,) and int(np.argmax(gains)) == 2
    infos = [describe(f"x{j}", pa.float64(), X[:, j]) for j in range(4)]
    spec = {"features": [{"input": f"x{j}", "op": "numeric"} for j in range(4)]}
    late = feature_importances(FAMILIES["XGBOOST"], model, spec, infos, X, y, "BINARY_CLASSIFICATION", 2, 0,
                               deadline=0.0)
    assert max(late, key=late.get) == "x2" and late["x2"] > 0.5, late
    assert sum(late.values()) == pytest.approx(1.0)
