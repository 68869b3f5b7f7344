"""The models the compiler tests run on, one per family and problem type.

Most are trained by automl itself (AUTO OFF with small hyperparameters, so each
trains in about a second). A few scikit-learn estimators that the contract allows
but automl does not currently pick (GradientBoosting* including the exponential
loss, a Poisson HistGradientBoostingRegressor) are fitted here directly, with a preprocessing spec
written by the contract; `SklearnTrained` gives them the TrainedModel attributes
and reference methods, built from the real fitted estimator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import mixed_table, raw_columns

TRAIN_ROWS = 400
TEST_ROWS = 300


@dataclass(frozen=True)
class AutomlCase:
    model_type: str
    target: str  # binary | multiclass | regression | none (KMEANS)
    hyperparameters: dict[str, str] = field(default_factory=dict)
    seed: int = 1
    objective: str | None = None
    #: the table has integer codes (mixed_table's `store`)
    codes: bool = False

    def train(self) -> Any:
        import automl

        options: dict[str, Any] = {"model_type": self.model_type, "auto": False, "max_runtime": 60,
                                   "hyperparameters": self.hyperparameters, "seed": 0,
                                   "objective": self.objective}
        if self.target == "none":
            options["k"] = 3
            return automl.train(mixed_table(TRAIN_ROWS, self.seed, "none"), options)
        options["target"] = "label"
        return automl.train(mixed_table(TRAIN_ROWS, self.seed, self.target, self.codes), options)

    def test_columns(self) -> dict[str, np.ndarray]:
        """Held-out rows: same generator, another seed."""
        return raw_columns(mixed_table(TEST_ROWS, self.seed + 1000, "regression", self.codes))


@dataclass(frozen=True)
class SklearnCase:
    estimator: str  # class name in sklearn.ensemble
    problem_type: str
    params: dict[str, Any] = field(default_factory=dict)
    n_features: int = 5
    seed: int = 3

    def data(self, n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(n, self.n_features)) * [1.0, 10.0, 0.01, 1e4, 3.0][: self.n_features]
        signal = X[:, 0] + X[:, 1] / 10 - X[:, 2] * 50 + rng.normal(0, 0.5, n)
        if self.problem_type == "BINARY_CLASSIFICATION":
            y = np.where(signal > 0, "yes", "no").astype(object)
        elif self.problem_type == "MULTICLASS_CLASSIFICATION":
            y = np.searchsorted([-1.0, 1.0], signal).astype(np.int64) * 10
        else:
            y = np.exp(signal / 3) if self.params.get("loss") == "poisson" else signal * 5
        X[rng.random(X.shape) < 0.05] = np.nan
        return {f"x{j}": X[:, j] for j in range(self.n_features)}, y

    def train(self) -> SklearnTrained:
        from sklearn import ensemble

        cols, y = self.data(TRAIN_ROWS, self.seed)
        fills = {name: float(np.nanmedian(v)) for name, v in cols.items()}
        spec = {
            "version": 1,
            "inputs": [{"name": name, "type": "double precision"} for name in cols],
            "features": [{"input": name, "op": "numeric", "fill": fills[name], "center": 0.0, "scale": 1.0}
                         for name in cols],
        }
        est = getattr(ensemble, self.estimator)(random_state=0, **self.params)
        trained = SklearnTrained(problem_type=self.problem_type, preprocessing=spec, estimator=est)
        est.fit(trained.transform(cols), y)
        if self.problem_type != "REGRESSION":
            trained.classes = [c.item() if hasattr(c, "item") else c for c in est.classes_]
        return trained

    def test_columns(self) -> dict[str, np.ndarray]:
        return self.data(TEST_ROWS, self.seed + 1000)[0]


@dataclass(frozen=True)
class BlendCase:
    """automl's ensemble (automl/ensemble.py): LightGBM models of one table, trained
    by automl with different hyperparameters, blended with weights into one model,
    in a TrainedModel otherwise the first member's."""

    target: str
    members: tuple[dict[str, str], ...]
    weights: tuple[float, ...]
    seed: int = 1

    def train(self) -> Any:
        from dataclasses import replace

        from automl.ensemble import LGBBlend

        trained = [AutomlCase("LIGHTGBM", self.target, h, seed=self.seed).train() for h in self.members]
        n_classes = 0 if self.target == "regression" else len(trained[0].classes)
        return replace(trained[0], estimator=LGBBlend([t.estimator for t in trained], self.weights, n_classes))

    def test_columns(self) -> dict[str, np.ndarray]:
        return raw_columns(mixed_table(TEST_ROWS, self.seed + 1000, "regression"))


@dataclass
class SklearnTrained:
    """TrainedModel's attributes and reference methods around a fitted estimator."""

    problem_type: str
    preprocessing: dict[str, Any]
    estimator: Any
    model_type: str = "XGBOOST"
    objective: str = "MSE"
    target: str = "y"
    classes: list[Any] | None = None
    label_type: str = "text"
    threshold: float | None = None

    def transform(self, columns: Mapping[str, Any]) -> np.ndarray:
        from automl.spec import transform

        return transform(self.preprocessing, columns)

    def reference_predict_proba(self, columns: Mapping[str, Any]) -> np.ndarray:
        return self.estimator.predict_proba(self.transform(columns))

    def reference_predict(self, columns: Mapping[str, Any]) -> np.ndarray:
        if self.problem_type == "REGRESSION":
            return self.estimator.predict(self.transform(columns))
        proba = self.reference_predict_proba(columns)
        idx = (proba[:, 1] >= 0.5).astype(int) if proba.shape[1] == 2 else np.argmax(proba, axis=1)
        return np.asarray(self.classes)[idx]


_BLEND_MEMBERS = ({"NUM_ROUND": "20", "MAX_LEAVES": "8"}, {"NUM_ROUND": "12", "MAX_LEAVES": "16", "ETA": "0.3"},
                  {"NUM_ROUND": "30", "MAX_LEAVES": "4", "ETA": "0.05"})

CASES: dict[str, AutomlCase | SklearnCase | BlendCase] = {
    "xgboost_binary": AutomlCase("XGBOOST", "binary", {"NUM_ROUND": "20", "MAX_LEAVES": "8"}),
    "xgboost_multiclass": AutomlCase("XGBOOST", "multiclass", {"NUM_ROUND": "8", "MAX_LEAVES": "8"}),
    "xgboost_regression": AutomlCase("XGBOOST", "regression", {"NUM_ROUND": "20", "MAX_LEAVES": "8"}),
    # every AUTO OFF objective of Redshift's XGBOOST (XGBoost itself, through Treelite's
    # XGBoost frontend)
    **{f"xgb_{name}": AutomlCase("XGBOOST", target, {"NUM_ROUND": "15", **extra}, objective=objective)
       for name, target, objective, extra in (
           ("squarederror", "regression", "reg:squarederror", {"MAX_DEPTH": "4"}),
           ("squaredlogerror", "positive", "reg:squaredlogerror", {}),
           ("logistic", "unit", "reg:logistic", {}),
           ("pseudohubererror", "regression", "reg:pseudohubererror", {"ETA": "0.5"}),
           ("tweedie", "positive", "reg:tweedie", {"MAX_DELTA_STEP": "1"}),
           ("binary_logistic", "binary", "binary:logistic", {"SUBSAMPLE": "0.8", "GAMMA": "0.5"}),
           ("hinge", "binary", "binary:hinge", {"ALPHA": "1", "LAMBDA": "3"}),
           ("softmax", "multiclass", "multi:softmax", {"NUM_CLASS": "3", "COLSAMPLE_BYNODE": "0.5"}),
       )},
    # LightGBM (an AUTO family), through Treelite's LightGBM frontend
    "lightgbm_binary": AutomlCase("LIGHTGBM", "binary", {"NUM_ROUND": "20", "MAX_LEAVES": "8"}),
    "lightgbm_multiclass": AutomlCase("LIGHTGBM", "multiclass", {"NUM_ROUND": "8", "MAX_LEAVES": "8"}),
    # integer codes: the value and a target-ordered ordinal (one per class) of one input
    "lightgbm_regression_codes": AutomlCase("LIGHTGBM", "regression", {"NUM_ROUND": "20"}, codes=True),
    "xgboost_multiclass_codes": AutomlCase("XGBOOST", "multiclass", {"NUM_ROUND": "8"}, codes=True),
    "random_forest_binary_codes": AutomlCase("RANDOM_FOREST", "binary", {"NUM_ROUND": "12"}, codes=True),
    # AUTO's ensemble of LightGBM configurations: one Treelite model
    "ensemble_binary": BlendCase("binary", _BLEND_MEMBERS, (0.5, 0.3, 0.2)),
    "ensemble_multiclass": BlendCase("multiclass", _BLEND_MEMBERS[:2], (0.75, 0.25)),
    "ensemble_regression": BlendCase("regression", _BLEND_MEMBERS, (0.2, 0.2, 0.6)),
    # AUTO's constant baseline: a linear model with zero coefficients
    "constant_binary": AutomlCase("CONSTANT", "binary"),
    "constant_multiclass": AutomlCase("CONSTANT", "multiclass"),
    "random_forest_binary": AutomlCase("RANDOM_FOREST", "binary", {"NUM_ROUND": "12", "MAX_LEAVES": "32"}),
    "random_forest_regression": AutomlCase("RANDOM_FOREST", "regression", {"NUM_ROUND": "12", "MAX_LEAVES": "32"}),
    "extra_trees_multiclass": AutomlCase("EXTRA_TREES", "multiclass", {"NUM_ROUND": "12", "MAX_LEAVES": "32"}),
    "linear_binary": AutomlCase("LINEAR_LEARNER", "binary"),
    "linear_multiclass": AutomlCase("LINEAR_LEARNER", "multiclass"),
    "linear_regression": AutomlCase("LINEAR_LEARNER", "regression"),
    "mlp_binary": AutomlCase("MLP", "binary", {"EPOCHS": "20"}),
    "mlp_multiclass": AutomlCase("MLP", "multiclass", {"EPOCHS": "20", "ACTIVATION": "tanh"}),
    "mlp_regression": AutomlCase("MLP", "regression", {"EPOCHS": "20"}),
    "kmeans": AutomlCase("KMEANS", "none"),
    "sk_gradient_boosting_binary": SklearnCase("GradientBoostingClassifier", "BINARY_CLASSIFICATION",
                                               {"n_estimators": 15, "max_depth": 3}),
    "sk_gradient_boosting_exponential": SklearnCase("GradientBoostingClassifier", "BINARY_CLASSIFICATION",
                                                    {"n_estimators": 10, "max_depth": 2, "loss": "exponential"}),
    "sk_gradient_boosting_multiclass": SklearnCase("GradientBoostingClassifier", "MULTICLASS_CLASSIFICATION",
                                                   {"n_estimators": 8, "max_depth": 3}),
    "sk_gradient_boosting_regression": SklearnCase("GradientBoostingRegressor", "REGRESSION",
                                                   {"n_estimators": 15, "max_depth": 3}),
    "sk_hist_poisson": SklearnCase("HistGradientBoostingRegressor", "REGRESSION",
                                   {"loss": "poisson", "max_iter": 15, "max_leaf_nodes": 8}),
    "sk_random_forest_multiclass": SklearnCase("RandomForestClassifier", "MULTICLASS_CLASSIFICATION",
                                               {"n_estimators": 8, "max_depth": 6}),
}
