"""Validation metrics, computed from predictions on rows the model never saw.

All functions take encoded targets (class indices 0..k-1, or floats) and return
plain floats so the result is JSON as it stands.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from .problem import BINARY, CLUSTERING, REGRESSION, Objective


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    mse = float(skm.mean_squared_error(y, pred))
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(skm.mean_absolute_error(y, pred)),
        "r2": float(skm.r2_score(y, pred)) if len(y) > 1 else 0.0,
    }


def labels_from_proba(proba: np.ndarray, problem_type: str, threshold: float | None) -> np.ndarray:
    if problem_type == BINARY:
        return (proba[:, 1] >= (0.5 if threshold is None else threshold)).astype(np.int64)
    return np.argmax(proba, axis=1)


def classification_metrics(y: np.ndarray, proba: np.ndarray, problem_type: str,
                           threshold: float | None = None) -> dict[str, float]:
    k = proba.shape[1]
    labels = np.arange(k)
    pred = labels_from_proba(proba, problem_type, threshold)
    clipped = np.clip(proba, 1e-15, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    out = {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "balanced_accuracy": float(_balanced_accuracy(y, pred, labels)),
        "f1_macro": float(skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "precision_macro": float(skm.precision_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "recall_macro": float(skm.recall_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "log_loss": float(skm.log_loss(y, clipped, labels=labels)),
    }
    if problem_type == BINARY:
        out["f1"] = float(skm.f1_score(y, pred, pos_label=1, zero_division=0))
        out["precision"] = float(skm.precision_score(y, pred, pos_label=1, zero_division=0))
        out["recall"] = float(skm.recall_score(y, pred, pos_label=1, zero_division=0))
        out["auc"] = float(skm.roc_auc_score(y, proba[:, 1])) if len(np.unique(y)) == 2 else 0.5
    else:
        present = np.unique(y)
        if len(present) == k:
            out["auc"] = float(skm.roc_auc_score(y, clipped, multi_class="ovr", labels=labels))
    return out


def row_losses(metric: str, y: np.ndarray, output: np.ndarray, problem_type: str,
               threshold: float | None = None) -> np.ndarray | None:
    """Each row's loss, where the objective (its metric key) is the mean of them or
    ranks as that mean (MSE, RMSE and R2: the squared error; MAE; Accuracy: the 0/1
    error; log loss); None for the others (F1, AUC, balanced or macro scores)."""
    if problem_type == REGRESSION:
        if metric not in ("mse", "rmse", "r2", "mae"):
            return None
        err = np.asarray(output, dtype=np.float64) - y
        return np.abs(err) if metric == "mae" else err * err
    if metric == "accuracy":
        return (labels_from_proba(output, problem_type, threshold) != y).astype(np.float64)
    if metric == "log_loss":
        return -np.log(np.clip(output[np.arange(len(y)), y], 1e-15, 1.0))
    return None


def relative_standard_error(losses: np.ndarray) -> float:
    """The standard error of the mean of `losses`, relative to that mean: how closely
    a validation score made of them is measured (0 for no loss at all)."""
    mean = float(np.mean(losses)) if len(losses) else 0.0
    if len(losses) < 2 or mean <= 0.0:
        return 0.0
    return float(np.std(losses, ddof=1) / mean / np.sqrt(len(losses)))


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray, labels: np.ndarray) -> float:
    recalls = [np.mean(pred[y == c] == c) for c in labels if np.any(y == c)]
    return float(np.mean(recalls)) if recalls else 0.0


def clustering_metrics(X: np.ndarray, labels: np.ndarray, centroids: np.ndarray, seed: int) -> dict[str, float]:
    d2 = ((X - centroids[labels]) ** 2).sum(axis=1)
    out = {"msd": float(d2.mean())}
    if 1 < len(np.unique(labels)) < len(X):
        size = min(len(X), 2000)
        out["silhouette"] = float(skm.silhouette_score(X, labels, sample_size=size, random_state=seed))
    return out


def evaluate(y: np.ndarray, output: np.ndarray, problem_type: str, threshold: float | None = None) -> dict[str, float]:
    """All metrics for predictions `output` (probabilities for classification)."""
    if problem_type == REGRESSION:
        return regression_metrics(y, output)
    if problem_type == CLUSTERING:
        raise ValueError("use clustering_metrics for clustering")
    return classification_metrics(y, output, problem_type, threshold)


def score(objective: Objective, y: np.ndarray, output: np.ndarray, problem_type: str,
          threshold: float | None = None) -> float:
    """The objective's value (natural direction, e.g. MSE is lower-better)."""
    return evaluate(y, output, problem_type, threshold)[objective.metric]


#: objectives for which the binary decision threshold is tuned on validation data
THRESHOLD_TUNED = ("f1", "balanced_accuracy", "f1_macro")


def tune_threshold(objective: Objective, y: np.ndarray, proba: np.ndarray) -> float | None:
    """Best cut on P(class 1) for threshold-dependent objectives, else None (0.5).

    Candidates are a fixed grid, so the choice is deterministic and does not chase
    single validation rows."""
    if objective.metric not in THRESHOLD_TUNED:
        return None
    grid = np.round(np.arange(0.05, 0.951, 0.025), 3)
    values = threshold_scores(objective.metric, np.asarray(y), np.asarray(proba)[:, 1], grid)
    best_t, best = 0.5, -np.inf
    for t, value in zip(grid.tolist(), values.tolist()):
        # ties go to the threshold nearest 0.5
        if value > best + 1e-12 or (abs(value - best) <= 1e-12 and abs(t - 0.5) < abs(best_t - 0.5)):
            best_t, best = float(t), float(value)
    return best_t


def threshold_scores(metric: str, y: np.ndarray, p: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """`metric` ("f1", "f1_macro", "balanced_accuracy") of predicting class 1 where
    p >= t, for every t of `grid` at once: the confusion counts come from the sorted
    scores of each class (the search tunes a threshold for every binary trial).
    Tested equal to scikit-learn's f1_score and _balanced_accuracy per threshold."""
    pos, neg = np.sort(p[y == 1]), np.sort(p[y != 1])
    tp = (len(pos) - np.searchsorted(pos, grid, side="left")).astype(np.float64)
    fp = (len(neg) - np.searchsorted(neg, grid, side="left")).astype(np.float64)
    fn, tn = len(pos) - tp, len(neg) - fp

    def f1(hit: np.ndarray, miss: np.ndarray) -> np.ndarray:
        den = 2 * hit + miss
        return np.where(den > 0, 2 * hit / np.where(den > 0, den, 1.0), 0.0)

    if metric == "f1":
        return f1(tp, fp + fn)
    if metric == "f1_macro":
        # over the labels in y or in the predictions, as scikit-learn's average
        one = (len(pos) > 0) | (tp + fp > 0)
        zero = (len(neg) > 0) | (tn + fn > 0)
        total = np.where(one, f1(tp, fp + fn), 0.0) + np.where(zero, f1(tn, fn + fp), 0.0)
        count = one.astype(np.float64) + zero
        return np.where(count > 0, total / np.maximum(count, 1.0), 0.0)
    recalls = [r for r, n in ((tp / max(len(pos), 1), len(pos)), (tn / max(len(neg), 1), len(neg))) if n]
    return np.mean(recalls, axis=0) if recalls else np.zeros(len(grid))
