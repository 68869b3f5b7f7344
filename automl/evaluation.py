"""What a model report draws, computed on the held-out rows at training time.

The test part of the data (never used for the search or the refit) gives the
classifier's confusion matrix and ROC/PR curves, the regressor's residuals, and the
clusters' sizes and centroids. Everything is plain JSON and bounded in size, since it
is stored with the model in the catalog: curves are thinned to MAX_CURVE_POINTS,
residuals sampled to MAX_RESIDUALS, the confusion matrix only up to MAX_CLASSES
classes, one-vs-rest curves for the MAX_CURVE_CLASSES most frequent classes, and the
leaderboard's first MAX_TRIALS trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from .metrics import labels_from_proba
from .problem import BINARY

MAX_CURVE_POINTS = 200
MAX_RESIDUALS = 500
MAX_CLASSES = 50
MAX_CURVE_CLASSES = 10
MAX_TRIALS = 500


def _thin(xs: np.ndarray, ys: np.ndarray, limit: int = MAX_CURVE_POINTS) -> tuple[list[float], list[float]]:
    """At most `limit` points of a curve, evenly spread, first and last kept."""
    if len(xs) > limit:
        idx = np.unique(np.round(np.linspace(0, len(xs) - 1, limit)).astype(np.int64))
        xs, ys = xs[idx], ys[idx]
    return [round(float(v), 6) for v in xs], [round(float(v), 6) for v in ys]


def _curves(y_true: np.ndarray, score: np.ndarray) -> dict[str, Any] | None:
    """ROC and precision-recall of one class (y_true in {0, 1}), or None when the
    held-out rows hold only one of the two."""
    if len(np.unique(y_true)) < 2:
        return None
    fpr, tpr, _ = skm.roc_curve(y_true, score)
    precision, recall, _ = skm.precision_recall_curve(y_true, score)
    roc_x, roc_y = _thin(fpr, tpr)
    pr_x, pr_y = _thin(recall[::-1], precision[::-1])
    return {"roc": {"fpr": roc_x, "tpr": roc_y, "auc": float(skm.auc(fpr, tpr))},
            "pr": {"recall": pr_x, "precision": pr_y,
                   "average_precision": float(skm.average_precision_score(y_true, score))}}


def classification_evaluation(y: np.ndarray, proba: np.ndarray, classes: Sequence[Any],
                              problem_type: str, threshold: float | None) -> dict[str, Any]:
    """Confusion matrix (rows: actual, columns: predicted) and per-class curves."""
    k = proba.shape[1]
    labels = [str(c) for c in classes]
    pred = labels_from_proba(proba, problem_type, threshold)
    out: dict[str, Any] = {"kind": "classification", "rows": int(len(y)), "classes": labels[:MAX_CLASSES],
                           "threshold": threshold}
    if k <= MAX_CLASSES:
        out["confusion_matrix"] = skm.confusion_matrix(y, pred, labels=np.arange(k)).tolist()
    if problem_type == BINARY:
        positives = [1]
    else:
        counts = np.bincount(y, minlength=k)
        positives = [int(c) for c in np.argsort(-counts, kind="stable")[:MAX_CURVE_CLASSES] if counts[c]]
    curves = []
    for c in positives:
        one = _curves((y == c).astype(np.int64), proba[:, c])
        if one is not None:
            curves.append({"class": labels[c], **one})
    out["curves"] = curves
    return out


def regression_evaluation(y: np.ndarray, pred: np.ndarray, seed: int) -> dict[str, Any]:
    """Predicted and actual values of (a sample of) the held-out rows."""
    idx = np.arange(len(y))
    if len(idx) > MAX_RESIDUALS:
        idx = np.sort(np.random.default_rng([seed, 404]).choice(len(y), MAX_RESIDUALS, replace=False))
    return {"kind": "regression", "rows": int(len(y)),
            "predicted": [round(float(v), 6) for v in pred[idx]],
            "actual": [round(float(v), 6) for v in y[idx]]}


def clustering_evaluation(spec: dict[str, Any], centroids: np.ndarray, train_labels: np.ndarray,
                          test_labels: np.ndarray) -> dict[str, Any]:
    """Cluster sizes (training and held-out rows) and centroids in the inputs' own
    units: standardized numeric features are scaled back, one-hot features give the
    share of the category in the cluster."""
    k = len(centroids)
    names, columns = [], []
    for j, feat in enumerate(spec["features"][:MAX_CLASSES]):
        values = np.asarray(centroids[:, j], dtype=np.float64)
        if feat["op"] in ("numeric", "datetime_part"):
            values = values * float(feat.get("scale", 1.0)) + float(feat.get("center", 0.0))
        name = feat["input"]
        if feat["op"] == "one_hot":
            name = f"{name}={feat.get('category')}"
        elif feat["op"] == "datetime_part":
            name = f"{name}.{feat.get('part')}"
        names.append(name)
        columns.append(values)
    return {"kind": "clustering", "rows": int(len(test_labels)), "features": names,
            "centroids": [[round(float(col[i]), 6) for col in columns] for i in range(k)],
            "sizes": np.bincount(train_labels, minlength=k).tolist(),
            "held_out_sizes": np.bincount(test_labels, minlength=k).tolist()}


def trials(leaderboard: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The leaderboard in trial order (the catalog's visible columns hold only the
    best five trials)."""
    keep = ("trial", "family", "score", "seconds", "fidelity", "phase", "params")
    return [{k: t[k] for k in keep if k in t} for t in leaderboard[:MAX_TRIALS]]
