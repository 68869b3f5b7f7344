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
from .train import train

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
