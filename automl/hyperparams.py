"""HYPERPARAMETERS DEFAULT EXCEPT (...): Redshift names -> estimator parameters.

Redshift's XGBoost names are used where they apply; for XGBOOST each is the XGBoost
parameter of that name (automl/boosting.py), for the other model types it maps onto
the equivalent scikit-learn parameter of the family that implements them. Redshift keys
the implementing estimator has no equivalent for (WITHOUT_EQUIVALENT) are accepted
and have no effect (the report says so); other unknown keys are an InvalidOption
naming the keys that are allowed. Fixed keys are left out of the search space;
everything else is still tuned unless AUTO OFF. mlproxy checks statements against
its table of keys and ranges (proxy/ml_statements/hyperparameters.py) before a job
starts; every key and range there is one this module takes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .errors import InvalidOption


def _int(lo: int, hi: int | None = None, zero_none: bool = False) -> Callable[[str, Any], Any]:
    def conv(key: str, value: Any) -> Any:
        try:
            f = float(value)
            if f != int(f):
                raise ValueError
            v = int(f)
        except (TypeError, ValueError):
            raise InvalidOption(f"hyperparameter {key} must be an integer, not {value!r}") from None
        if zero_none and v == 0:
            return None
        if v < lo or (hi is not None and v > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise InvalidOption(f"hyperparameter {key} must be {bound}, not {v}")
        return v
    return conv


def _float(lo: float, hi: float | None = None, lo_open: bool = False) -> Callable[[str, Any], Any]:
    def conv(key: str, value: Any) -> Any:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise InvalidOption(f"hyperparameter {key} must be a number, not {value!r}") from None
        if v != v or v < lo or (lo_open and v == lo) or (hi is not None and v > hi):
            low = f"> {lo}" if lo_open else f">= {lo}"
            raise InvalidOption(f"hyperparameter {key} must be {low}" + (f" and <= {hi}" if hi is not None else "")
                                + f", not {value!r}")
        return v
    return conv


def _choice(mapping: Mapping[str, Any]) -> Callable[[str, Any], Any]:
    def conv(key: str, value: Any) -> Any:
        text = str(value).strip().lower()
        if text not in mapping:
            raise InvalidOption(f"hyperparameter {key} must be one of {', '.join(mapping)}, not {value!r}")
        return mapping[text]
    return conv


def _ceil_int(key: str, value: Any) -> int:
    v = _float(0.0)(key, value)
    return max(1, int(-(-v // 1)))


# model type -> Redshift name -> (estimator parameter, converter)
_TREES = {
    "NUM_ROUND": ("n_estimators", _int(1, 5000)),
    "MAX_DEPTH": ("max_depth", _int(0, zero_none=True)),
    "MAX_LEAVES": ("max_leaf_nodes", _int(2)),
    "MIN_CHILD_WEIGHT": ("min_samples_leaf", _ceil_int),
    "COLSAMPLE_BYTREE": ("max_features", _float(0.0, 1.0, lo_open=True)),
    "COLSAMPLE_BYNODE": ("max_features", _float(0.0, 1.0, lo_open=True)),
}
MAPPINGS: dict[str, dict[str, tuple[str, Callable[[str, Any], Any]]]] = {
    # XGBoost's own parameter names (automl/boosting.py); ranges as Redshift's table
    "XGBOOST": {
        "NUM_ROUND": ("num_round", _int(1, 10000)),
        "MAX_DEPTH": ("max_depth", _int(0, 10)),
        "ETA": ("eta", _float(0.1, 0.5)),
        "GAMMA": ("gamma", _float(0.0, 5.0)),
        "MIN_CHILD_WEIGHT": ("min_child_weight", _float(0.0, 120.0)),
        "SUBSAMPLE": ("subsample", _float(0.5, 1.0)),
        "COLSAMPLE_BYTREE": ("colsample_bytree", _float(0.5, 1.0)),
        "COLSAMPLE_BYLEVEL": ("colsample_bylevel", _float(0.1, 1.0)),
        "COLSAMPLE_BYNODE": ("colsample_bynode", _float(0.1, 1.0)),
        "ALPHA": ("alpha", _float(0.0, 1000.0)),
        "LAMBDA": ("lambda", _float(0.0, 1000.0)),
        "MAX_DELTA_STEP": ("max_delta_step", _int(0, 10)),
        "TREE_METHOD": ("tree_method", _choice({m: m for m in ("auto", "exact", "approx", "hist")})),
        "NUM_CLASS": ("num_class", _int(2, 10000)),
        "MAX_LEAVES": ("max_leaves", _int(2, 65536)),
        "MAX_BIN": ("max_bin", _int(2, 255)),
        "EARLY_STOPPING_ROUNDS": ("early_stopping_rounds", _int(1, 10000)),
        "SCALE_POS_WEIGHT": ("scale_pos_weight", _float(0.0, lo_open=True)),
    },
    # LightGBM's parameter names (automl/lgbm.py), Redshift-style keys
    "LIGHTGBM": {
        "NUM_ROUND": ("num_round", _int(1, 10000)),
        "ETA": ("learning_rate", _float(0.0, 1.0, lo_open=True)),
        "MAX_LEAVES": ("num_leaves", _int(2, 131072)),
        "MAX_DEPTH": ("max_depth", _int(0, zero_none=True)),
        "MIN_CHILD_WEIGHT": ("min_child_samples", _int(1)),
        "COLSAMPLE_BYTREE": ("colsample_bytree", _float(0.0, 1.0, lo_open=True)),
        "ALPHA": ("reg_alpha", _float(0.0)),
        "LAMBDA": ("reg_lambda", _float(0.0)),
        "MAX_BIN": ("max_bin", _int(2, 65535)),
    },
    "CONSTANT": {},
    "RANDOM_FOREST": {**_TREES, "SUBSAMPLE": ("max_samples", _float(0.0, 1.0, lo_open=True))},
    "EXTRA_TREES": dict(_TREES),
    "LINEAR_LEARNER": {
        "WD": ("wd", _float(0.0, lo_open=True)),
        "L1": ("l1", _float(0.0)),
        "EPOCHS": ("epochs", _int(1, 100000)),
    },
    "MLP": {
        "HIDDEN_UNITS": ("hidden_units", _int(1, 4096)),
        "NUM_HIDDEN_LAYERS": ("num_hidden_layers", _int(1, 8)),
        "ACTIVATION": ("activation", _choice({"relu": "relu", "tanh": "tanh", "sigmoid": "logistic",
                                               "logistic": "logistic"})),
        "LEARNING_RATE": ("learning_rate_init", _float(0.0, 1.0, lo_open=True)),
        "WD": ("alpha", _float(0.0)),
        "EPOCHS": ("max_iter", _int(1, 10000)),
        "MINI_BATCH_SIZE": ("batch_size", _int(1)),
    },
    "KMEANS": {
        "K": ("n_clusters", _int(2, 10000)),
        "EPOCHS": ("max_iter", _int(1, 10000)),
        "LOCAL_LLOYD_MAX_ITER": ("max_iter", _int(1, 10000)),
        "LOCAL_LLOYD_TOL": ("tol", _float(0.0)),
        "INIT_METHOD": ("init", _choice({"kmeans++": "k-means++", "k-means++": "k-means++", "random": "random"})),
    },
}


# Redshift keys a model type's estimator has no counterpart for (none since XGBOOST
# is XGBoost itself).
WITHOUT_EQUIVALENT: dict[str, frozenset[str]] = {}


def map_hyperparameters(model_type: str, given: Mapping[str, Any], problem_type: str | None,
                        report: list[str] | None = None) -> dict[str, Any]:
    """Redshift-named hyperparameters -> fixed estimator parameters for `model_type`."""
    allowed = MAPPINGS[model_type]
    out: dict[str, Any] = {}
    for key, value in given.items():
        name = str(key).strip().upper()
        if name in WITHOUT_EQUIVALENT.get(model_type, ()):
            if report is not None:
                report.append(f"hyperparameter {name} {value} accepted; {model_type} here has no equivalent")
            continue
        if name not in allowed:
            raise InvalidOption(
                f"unknown hyperparameter {name!r} for MODEL_TYPE {model_type}; allowed: {', '.join(sorted(allowed))}")
        param, conv = allowed[name]
        out[param] = conv(name, value)
    if "scale_pos_weight" in out and problem_type not in (None, "BINARY_CLASSIFICATION"):
        raise InvalidOption("hyperparameter SCALE_POS_WEIGHT applies only to BINARY_CLASSIFICATION")
    if out.get("max_depth") == 0 and out.get("tree_method") == "exact":
        raise InvalidOption("hyperparameter MAX_DEPTH 0 (no depth limit) does not work with TREE_METHOD 'exact'",
                            hint="give MAX_DEPTH between 1 and 10, or TREE_METHOD 'hist' or 'approx'")
    if "hidden_units" in out or "num_hidden_layers" in out:
        units = out.pop("hidden_units", 64)
        layers = out.pop("num_hidden_layers", 1)
        out["hidden_layer_sizes"] = (units,) * layers
    return out
