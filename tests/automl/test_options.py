import pytest

from automl import AutoMLError, InvalidOption, TrainOptions
from automl.hyperparams import map_hyperparameters


def test_from_mapping_is_case_insensitive_and_converts_sql_strings():
    opts = TrainOptions.from_mapping({
        "TARGET": "y", "Problem_Type": "regression", "MAX_RUNTIME": "30", "max_cells": "5000",
        "Seed": "7", "AUTO": "off", "MODEL_TYPE": "xgboost", "HYPERPARAMETERS": {"num_round": "50"},
        "S3_BUCKET": "ignored-bucket",
    })
    assert (opts.target, opts.problem_type, opts.max_runtime, opts.max_cells, opts.seed) == (
        "y", "REGRESSION", 30.0, 5000, 7)
    assert opts.auto is False and opts.model_type == "XGBOOST"
    assert opts.hyperparameters == {"NUM_ROUND": "50"}


def test_defaults_work_for_everything():
    opts = TrainOptions.from_mapping({"target": "y"})
    assert opts.model_type is None and opts.auto and opts.max_runtime > 0 and opts.max_cells == 1_000_000
    assert TrainOptions.from_mapping({"model_type": "AUTO", "target": "y"}).model_type is None


@pytest.mark.parametrize("options, words", [
    ({"target": "y", "colour": "red"}, ["unknown training option", "TARGET"]),
    ({"target": "y", "problem_type": "ranking"}, ["PROBLEM_TYPE", "REGRESSION"]),
    ({"target": "y", "model_type": "svm"}, ["MODEL_TYPE", "XGBOOST"]),
    ({"target": "y", "max_runtime": "soon"}, ["MAX_RUNTIME"]),
    ({"target": "y", "max_runtime": 0}, ["MAX_RUNTIME"]),
    ({"target": "y", "max_cells": 0}, ["MAX_CELLS"]),
    ({"target": "y", "auto": "maybe"}, ["AUTO"]),
    ({"target": "y", "hyperparameters": {"NUM_ROUND": "5"}}, ["MODEL_TYPE"]),
    ({"target": "y", "auto": "off"}, ["MODEL_TYPE"]),
    ({"target": "y", "preprocessors": "[{"}, ["JSON"]),
    ({"target": "y", "auto": "off", "model_type": "xgboost", "preprocessors": "{}"}, ["JSON array"]),
    ({"model_type": "xgboost"}, ["TARGET"]),
    ({"model_type": "kmeans", "target": "y"}, ["KMEANS"]),
    ({"model_type": "kmeans", "k": 1}, ["K"]),
])
def test_bad_options_raise_invalid_option_with_a_useful_message(options, words):
    with pytest.raises(InvalidOption) as info:
        TrainOptions.from_mapping(options)
    assert info.value.sqlstate == "22023"
    for word in words:
        assert word in str(info.value)


def test_xgboost_names_map_to_the_estimator():
    fixed = map_hyperparameters("XGBOOST", {"NUM_ROUND": "40", "ETA": "0.3", "max_depth": "4",
                                            "MIN_CHILD_WEIGHT": "2.5", "LAMBDA": "1",
                                            "COLSAMPLE_BYTREE": "0.5", "EARLY_STOPPING_ROUNDS": "5"}, None)
    assert fixed == {"num_round": 40, "eta": 0.3, "max_depth": 4, "min_child_weight": 2.5,
                     "lambda": 1.0, "colsample_bytree": 0.5, "early_stopping_rounds": 5}
    assert map_hyperparameters("XGBOOST", {"MAX_DEPTH": "0"}, None) == {"max_depth": 0}
    assert map_hyperparameters("XGBOOST", {"SCALE_POS_WEIGHT": "3"}, "BINARY_CLASSIFICATION") == {
        "scale_pos_weight": 3.0}
    assert map_hyperparameters("RANDOM_FOREST", {"NUM_ROUND": "10", "SUBSAMPLE": "0.5"}, None) == {
        "n_estimators": 10, "max_samples": 0.5}
    assert map_hyperparameters("MLP", {"HIDDEN_UNITS": "8", "NUM_HIDDEN_LAYERS": "2", "ACTIVATION": "tanh"},
                               None) == {"hidden_layer_sizes": (8, 8), "activation": "tanh"}
    assert map_hyperparameters("KMEANS", {"K": "4", "INIT_METHOD": "random"}, None) == {
        "n_clusters": 4, "init": "random"}


@pytest.mark.parametrize("model_type, given, words", [
    ("XGBOOST", {"NUM_ROUNDS": "1"}, ["NUM_ROUNDS", "NUM_ROUND", "ETA", "MAX_DEPTH"]),
    ("XGBOOST", {"NUM_ROUND": "many"}, ["NUM_ROUND", "integer"]),
    ("XGBOOST", {"ETA": "0"}, ["ETA"]),
    ("XGBOOST", {"COLSAMPLE_BYTREE": "1.5"}, ["COLSAMPLE_BYTREE"]),
    ("XGBOOST", {"SCALE_POS_WEIGHT": "2"}, ["BINARY"]),
    ("LINEAR_LEARNER", {"NUM_ROUND": "3"}, ["WD"]),
    ("KMEANS", {"K": "1"}, ["K"]),
    ("MLP", {"ACTIVATION": "swish"}, ["relu"]),
])
def test_bad_hyperparameters_name_what_is_allowed(model_type, given, words):
    with pytest.raises(InvalidOption) as info:
        map_hyperparameters(model_type, given, "REGRESSION")
    for word in words:
        assert word in str(info.value)


def test_every_error_class_carries_a_sqlstate():
    import automl

    for name in ("InvalidOption", "MissingColumn", "UnsupportedColumnType", "UnusableData", "TimeBudgetExceeded"):
        cls = getattr(automl, name)
        assert issubclass(cls, AutoMLError)
        assert len(cls.sqlstate) == 5 and cls.sqlstate != AutoMLError.sqlstate
