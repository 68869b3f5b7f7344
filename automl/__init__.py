"""automl: Arrow table + CREATE MODEL options -> trained, validated model.

The training engine behind CREATE MODEL (the role SageMaker Autopilot plays for
Redshift ML). Public surface: `train`, `TrainOptions`, `TrainedModel` and the
`AutoMLError` family (each with a `sqlstate`).
"""

from .errors import (
    AutoMLError,
    InvalidOption,
    MissingColumn,
    TimeBudgetExceeded,
    UnsupportedColumnType,
    UnusableData,
)
from .options import TrainOptions
from .trained import TrainedModel


def __getattr__(name: str):
    # `train` (and scikit-learn with it) loads on first use, so the proxy can use
    # automl.columns' column rules without importing the estimators
    if name == "train":
        from .train import train

        globals()["train"] = train  # importing the submodule bound the name to the module
        return train
    raise AttributeError(f"module 'automl' has no attribute {name!r}")

__all__ = [
    "AutoMLError",
    "InvalidOption",
    "MissingColumn",
    "TimeBudgetExceeded",
    "TrainOptions",
    "TrainedModel",
    "UnsupportedColumnType",
    "UnusableData",
    "train",
]
