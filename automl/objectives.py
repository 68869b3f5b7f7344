"""Redshift's XGBoost objectives (OBJECTIVE 'reg:squarederror', ...): the problem
type each serves, the metric it ranks by, and the target values XGBoost accepts."""

from __future__ import annotations

import numpy as np

from .errors import InvalidOption
from .problem import BINARY, MULTICLASS, REGRESSION

#: Redshift's AUTO OFF objectives for XGBOOST -> the problem type each one serves
XGBOOST_OBJECTIVES: dict[str, str] = {
    "reg:squarederror": REGRESSION,
    "reg:squaredlogerror": REGRESSION,
    "reg:logistic": REGRESSION,
    "reg:pseudohubererror": REGRESSION,
    "reg:tweedie": REGRESSION,
    "binary:logistic": BINARY,
    "binary:hinge": BINARY,
    "multi:softmax": MULTICLASS,
}
#: the loss when no XGBoost objective is given
DEFAULT_LOSS = {REGRESSION: "reg:squarederror", BINARY: "binary:logistic", MULTICLASS: "multi:softprob"}
#: the selection metric an explicit XGBoost objective ranks by (as Redshift's aliases
#: do; none of them tunes a decision threshold, so labels are XGBoost's own)
SELECTION_METRIC = {
    "reg:squarederror": "MSE", "reg:squaredlogerror": "MSE", "reg:logistic": "MSE",
    "reg:pseudohubererror": "MSE", "reg:tweedie": "MSE", "binary:logistic": "AUC",
    "binary:hinge": "Accuracy", "multi:softmax": "Accuracy",
}

def xgboost_objective(name: str | None) -> str | None:
    """The XGBoost objective `name` spells (case-insensitive), None for other names."""
    if name is None:
        return None
    key = str(name).strip().lower()
    return key if key in XGBOOST_OBJECTIVES else None


def check_labels(loss: str, y: np.ndarray) -> None:
    """What XGBoost would reject in the target values, as InvalidOption (22023)."""
    if loss == "reg:squaredlogerror" and np.any(y <= -1):
        raise InvalidOption("OBJECTIVE 'reg:squaredlogerror' needs target values greater than -1 "
                            f"(log(target + 1)); the smallest is {float(np.min(y)):g}")
    if loss == "reg:tweedie" and np.any(y < 0):
        raise InvalidOption("OBJECTIVE 'reg:tweedie' needs non-negative target values; "
                            f"the smallest is {float(np.min(y)):g}")
    if loss == "reg:logistic" and (np.any(y < 0) or np.any(y > 1)):
        raise InvalidOption("OBJECTIVE 'reg:logistic' needs target values between 0 and 1; "
                            f"they range from {float(np.min(y)):g} to {float(np.max(y)):g}")
