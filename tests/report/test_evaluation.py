"""The held-out evaluation stored with a model stays small whatever the data: curves
thinned, residuals sampled, the confusion matrix only for few classes."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

import automl
from automl import evaluation as E


def test_binary_curves_are_thinned_and_match_the_metrics():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 5000)
    p1 = np.clip(y * 0.3 + rng.random(5000) * 0.7, 0, 1)
    ev = E.classification_evaluation(y, np.column_stack([1 - p1, p1]), ["no", "yes"],
                                     "BINARY_CLASSIFICATION", 0.5)
    assert np.array(ev["confusion_matrix"]).sum() == 5000
    (curve,) = ev["curves"]
    assert curve["class"] == "yes"
    assert 2 < len(curve["roc"]["fpr"]) <= E.MAX_CURVE_POINTS
    assert len(curve["pr"]["recall"]) <= E.MAX_CURVE_POINTS
    assert curve["roc"]["fpr"][0] == 0.0 and curve["roc"]["tpr"][-1] == 1.0
    from sklearn.metrics import roc_auc_score
    assert abs(curve["roc"]["auc"] - roc_auc_score(y, p1)) < 1e-9


def test_many_classes_have_no_matrix_and_ten_curves():
    rng = np.random.default_rng(2)
    k = 60
    y = rng.integers(0, k, 3000)
    proba = rng.random((3000, k))
    proba /= proba.sum(axis=1, keepdims=True)
    ev = E.classification_evaluation(y, proba, [f"c{i}" for i in range(k)],
                                     "MULTICLASS_CLASSIFICATION", None)
    assert "confusion_matrix" not in ev
    assert len(ev["curves"]) == E.MAX_CURVE_CLASSES
    assert len(json.dumps(ev)) < 200_000


def test_residuals_are_sampled():
    y = np.arange(10_000, dtype=float)
    ev = E.regression_evaluation(y, y + 1, seed=0)
    assert len(ev["predicted"]) == len(ev["actual"]) == E.MAX_RESIDUALS
    assert all(p - a == 1 for p, a in zip(ev["predicted"], ev["actual"]))
    assert ev["rows"] == 10_000


def test_kmeans_centroids_are_in_the_inputs_units():
    rng = np.random.default_rng(3)
    a = np.concatenate([rng.normal(100, 1, 60), rng.normal(500, 1, 60)])
    plan = np.array(["x"] * 60 + ["y"] * 60, dtype=object)
    trained = automl.train(pa.table({"a": a, "plan": plan}),
                           {"model_type": "KMEANS", "k": 2, "max_runtime": 10})
    ev = trained.evaluation
    assert ev["kind"] == "clustering" and sum(ev["sizes"]) + ev["rows"] == 120
    col = ev["features"].index("a")
    assert sorted(round(c[col] / 100) for c in ev["centroids"]) == [1, 5]
    assert len(ev["trials"]) == 1 and ev["greater_is_better"] is False
