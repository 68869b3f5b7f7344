"""The HYPERPARAMETERS table (proxy/ml_statements/hyperparameters.py) and the trainer
agree: every key a statement may give, at every bound of its range, is one automl
takes, so a CREATE MODEL that passes its checks never fails later on a
hyperparameter."""

from __future__ import annotations

import pytest

from automl.errors import InvalidOption
from automl.hyperparams import MAPPINGS, WITHOUT_EQUIVALENT, map_hyperparameters
from proxy.ml_statements.hyperparameters import CHOICE, HYPERPARAMETERS, BadValue

PROBLEM = {"KMEANS": None}


def _samples(spec):
    if spec.kind == CHOICE:
        return list(spec.choices)
    low = spec.low if spec.low is not None else 0
    if spec.low_open:
        low = low + (1e-3 if spec.kind != "integer" else 1)
    high = spec.high if spec.high is not None else low + 10
    return [low, high, (low + high) / 2 if spec.kind != "integer" else int((low + high) // 2)]


@pytest.mark.parametrize("model_type", sorted(HYPERPARAMETERS))
def test_every_key_and_bound_is_taken_by_the_trainer(model_type):
    keys = set(HYPERPARAMETERS[model_type])
    assert keys == set(MAPPINGS[model_type]) | WITHOUT_EQUIVALENT.get(model_type, frozenset())
    for key, spec in HYPERPARAMETERS[model_type].items():
        for value in _samples(spec):
            text = str(int(value)) if spec.kind == "integer" else str(value)
            typed = spec.check(text)
            problem = PROBLEM.get(model_type, "BINARY_CLASSIFICATION")
            try:
                map_hyperparameters(model_type, {key: typed}, problem)
            except InvalidOption as e:  # pragma: no cover - the failure message says which
                pytest.fail(f"{model_type} {key}={text} passes CREATE MODEL but automl says: {e}")


@pytest.mark.parametrize(("model_type", "key", "text"), [
    ("XGBOOST", "MAX_DEPTH", "11"), ("XGBOOST", "ETA", "0.09"), ("XGBOOST", "SUBSAMPLE", "0.49"),
    ("XGBOOST", "NUM_ROUND", "1e3"), ("XGBOOST", "ETA", "inf"), ("KMEANS", "K", "1"),
])
def test_out_of_range_values_are_refused(model_type, key, text):
    with pytest.raises(BadValue):
        HYPERPARAMETERS[model_type][key].check(text)


def test_every_xgboost_key_is_the_xgboost_parameter_of_that_name():
    """XGBOOST is XGBoost: each of Redshift's keys is passed to it under its own name
    (NUM_ROUND and EARLY_STOPPING_ROUNDS are xgboost.train's arguments), and the
    table's defaults are XGBoost's own."""
    import json

    import numpy as np
    import xgboost as xgb

    fixed = map_hyperparameters("XGBOOST", {"GAMMA": 1.0, "ETA": 0.2, "TREE_METHOD": "hist"}, "REGRESSION")
    assert fixed == {"gamma": 1.0, "eta": 0.2, "tree_method": "hist"}
    config = json.loads(xgb.train({}, xgb.DMatrix(np.eye(4), label=np.arange(4.0)), 1).save_config())
    train_param = config["learner"]["gradient_booster"]["tree_train_param"]
    for key, spec in HYPERPARAMETERS["XGBOOST"].items():
        name = MAPPINGS["XGBOOST"][key][0]
        if spec.default is not None and name in train_param:
            assert float(train_param[name]) == pytest.approx(float(spec.default), rel=1e-6), key
