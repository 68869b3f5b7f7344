"""The trained model handed from automl to compiler (docs/model-contract.md).

compiler/ reads this object by attribute and never imports automl, so everything it
needs is plain data (JSON-able dicts/lists) or a scikit-learn tree ensemble that
Treelite can import. The scikit-learn object behind a JSON estimator is kept in
memory only (`sklearn_model`), for `reference_predict`, the oracle the compiled
predictor is tested against; it is never part of the artifact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .spec import transform

PROBLEM_TYPES = ("REGRESSION", "BINARY_CLASSIFICATION", "MULTICLASS_CLASSIFICATION", "CLUSTERING")


@dataclass
class TrainedModel:
    problem_type: str
    model_type: str
    objective: str
    target: str | None
    preprocessing: dict[str, Any]
    estimator: Any
    classes: list[Any] | None
    label_type: str
    metrics: dict[str, float]
    leaderboard: list[dict[str, Any]]
    feature_importances: dict[str, float]
    training_seconds: float
    rows_used: int
    threshold: float | None = None
    report: list[str] = field(default_factory=list)
    # The best trials, best first (the winner leads), each a leaderboard entry.
    top_trials: list[dict[str, Any]] = field(default_factory=list)
    # What a model report draws, from the held-out rows (automl/evaluation.py).
    evaluation: dict[str, Any] = field(default_factory=dict)
    # In memory only (not part of the contract's artifact): the fitted scikit-learn
    # model on the preprocessed matrix; for tree ensembles it is `estimator` itself.
    sklearn_model: Any = field(default=None, repr=False, compare=False)
    # In memory only: held-out rows as the estimator's matrix (never used to train
    # this model), the validation sample its Shapley values are computed on.
    explain_rows: Any = field(default=None, repr=False, compare=False)

    @property
    def is_classification(self) -> bool:
        return self.problem_type in ("BINARY_CLASSIFICATION", "MULTICLASS_CLASSIFICATION")

    def _model(self) -> Any:
        return self.sklearn_model if self.sklearn_model is not None else self.estimator

    def transform(self, columns: Mapping[str, Any]) -> np.ndarray:
        """Raw input columns (one array per function argument) -> estimator matrix."""
        return transform(self.preprocessing, columns)

    def reference_predict_proba(self, columns: Mapping[str, Any]) -> np.ndarray:
        """Class probabilities, columns in `classes` order (classification only)."""
        if not self.is_classification:
            raise TypeError(f"predict_proba is only defined for classification, not {self.problem_type}")
        return np.asarray(self._model().predict_proba(self.transform(columns)), dtype=np.float64)

    def reference_predict(self, columns: Mapping[str, Any]) -> np.ndarray:
        """Predictions on raw input columns: labels in the target's own type,
        float64 for regression, int cluster ids for clustering."""
        if self.is_classification:
            proba = self.reference_predict_proba(columns)
            if self.problem_type == "BINARY_CLASSIFICATION":
                cut = 0.5 if self.threshold is None else self.threshold
                idx = (proba[:, 1] >= cut).astype(np.int64)
            else:
                idx = np.argmax(proba, axis=1)
            return np.asarray(self.classes)[idx]
        pred = self._model().predict(self.transform(columns))
        if self.problem_type == "CLUSTERING":
            return np.asarray(pred, dtype=np.int64)
        return np.asarray(pred, dtype=np.float64)
