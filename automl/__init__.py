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
from .trained import TrainedModel

__all__ = [
    "AutoMLError",
    "InvalidOption",
    "MissingColumn",
    "TimeBudgetExceeded",
    "TrainedModel",
    "UnsupportedColumnType",
    "UnusableData",
]
