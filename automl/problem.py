"""Problem type inference and the objective that selection optimises.

Inference rule (reported in TrainedModel.report, documented in docs/automl.md):
  * boolean or text target: two distinct values -> BINARY_CLASSIFICATION, more ->
    MULTICLASS_CLASSIFICATION;
  * numeric target: two distinct values -> BINARY_CLASSIFICATION; integer-valued with
    at most MAX_INFERRED_CLASSES distinct values -> MULTICLASS_CLASSIFICATION;
    anything else (fractional values or many distinct integers) -> REGRESSION.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InvalidOption, UnusableData

MAX_INFERRED_CLASSES = 20

REGRESSION = "REGRESSION"
BINARY = "BINARY_CLASSIFICATION"
MULTICLASS = "MULTICLASS_CLASSIFICATION"
CLUSTERING = "CLUSTERING"

#: objective name (SQL spelling) -> (metric key in TrainedModel.metrics, higher is better)
OBJECTIVES: dict[str, tuple[str, bool]] = {
    "MSE": ("mse", False),
    "RMSE": ("rmse", False),
    "MAE": ("mae", False),
    "R2": ("r2", True),
    "ACCURACY": ("accuracy", True),
    "BALANCEDACCURACY": ("balanced_accuracy", True),
    "F1": ("f1", True),
    "F1MACRO": ("f1_macro", True),
    "AUC": ("auc", True),
    "LOGLOSS": ("log_loss", False),
    "PRECISION": ("precision", True),
    "RECALL": ("recall", True),
    "PRECISIONMACRO": ("precision_macro", True),
    "RECALLMACRO": ("recall_macro", True),
    "MSD": ("msd", False),
}
# Canonical spelling shown back to the user.
_SPELLING = {
    "MSE": "MSE", "RMSE": "RMSE", "MAE": "MAE", "R2": "R2", "ACCURACY": "Accuracy",
    "BALANCEDACCURACY": "BalancedAccuracy", "F1": "F1", "F1MACRO": "F1Macro", "AUC": "AUC",
    "LOGLOSS": "LogLoss", "PRECISION": "Precision", "RECALL": "Recall",
    "PRECISIONMACRO": "PrecisionMacro", "RECALLMACRO": "RecallMacro", "MSD": "MSD",
}
_ALLOWED = {
    REGRESSION: ("MSE", "RMSE", "MAE", "R2"),
    BINARY: ("F1", "Accuracy", "AUC", "BalancedAccuracy", "LogLoss", "Precision", "Recall", "F1Macro"),
    MULTICLASS: ("Accuracy", "F1Macro", "BalancedAccuracy", "LogLoss", "PrecisionMacro", "RecallMacro"),
    CLUSTERING: ("MSD",),
}
# Redshift/Autopilot defaults.
DEFAULT_OBJECTIVE = {REGRESSION: "MSE", BINARY: "F1", MULTICLASS: "Accuracy", CLUSTERING: "MSD"}


@dataclass(frozen=True)
class Objective:
    name: str          # SQL spelling, e.g. "F1Macro"
    metric: str        # key in metrics dicts, e.g. "f1_macro"
    greater_is_better: bool

    def better(self, a: float, b: float) -> bool:
        """True when score a beats score b (strictly)."""
        return a > b if self.greater_is_better else a < b

    def utility(self, score: float) -> float:
        """Score mapped so that larger is always better (for ranking)."""
        return score if self.greater_is_better else -score


def resolve_objective(requested: str | None, problem_type: str) -> Objective:
    if requested is None:
        name = DEFAULT_OBJECTIVE[problem_type]
    else:
        key = requested.strip().replace("_", "").upper()
        if key not in OBJECTIVES:
            raise InvalidOption(
                f"unknown OBJECTIVE {requested!r}; allowed for {problem_type}: {', '.join(_ALLOWED[problem_type])}")
        name = _SPELLING[key]
        if name not in _ALLOWED[problem_type]:
            raise InvalidOption(
                f"OBJECTIVE {name!r} does not apply to {problem_type}; allowed: {', '.join(_ALLOWED[problem_type])}")
    metric, greater = OBJECTIVES[name.upper()]
    return Objective(name, metric, greater)


def infer_problem_type(y: np.ndarray, kind: str) -> tuple[str, str]:
    """(problem type, reason) for non-NULL target values `y` of column kind `kind`
    ('numeric', 'boolean' or 'text')."""
    distinct = np.unique(y)
    n = len(distinct)
    if n < 2:
        raise UnusableData(
            f"the target has a single distinct value ({distinct[0]!r}); there is nothing to learn" if n
            else "the target column has no non-NULL values")
    if kind in ("boolean", "text"):
        if n == 2:
            return BINARY, f"{kind} target with 2 distinct values"
        return MULTICLASS, f"{kind} target with {n} distinct values"
    values = distinct.astype(np.float64)
    if n == 2:
        return BINARY, "numeric target with 2 distinct values"
    integral = bool(np.all(values == np.round(values)))
    if integral and n <= MAX_INFERRED_CLASSES:
        return MULTICLASS, f"integer target with {n} distinct values (<= {MAX_INFERRED_CLASSES})"
    why = "fractional values" if not integral else f"{n} distinct values (> {MAX_INFERRED_CLASSES})"
    return REGRESSION, f"numeric target with {why}"


def check_problem_type(requested: str, y: np.ndarray, kind: str) -> None:
    """Reject an explicit PROBLEM_TYPE the target cannot support."""
    n = len(np.unique(y))
    if n < 2:
        infer_problem_type(y, kind)  # raises the single-class error
    if requested == REGRESSION and kind != "numeric":
        raise InvalidOption(f"PROBLEM_TYPE REGRESSION needs a numeric target, but the target is {kind}")
    if requested == BINARY and n != 2:
        raise InvalidOption(
            f"PROBLEM_TYPE BINARY_CLASSIFICATION needs exactly 2 target classes, found {n}",
            hint="use MULTICLASS_CLASSIFICATION" if n > 2 else None)
