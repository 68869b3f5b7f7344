"""Forecast accuracy, as Amazon Forecast reports it on its backtest windows.

All take flat arrays over every (item, step) of the backtest.  `mase` scales each
item's absolute error by its in-sample seasonal-naive error (Hyndman's MASE), so it
needs each item's training history; the others are pooled over all items:
WAPE = sum|y - yhat| / sum|y|; RMSE; MAPE = mean |y - yhat| / |y| over y != 0;
weighted quantile loss wQL(q) = 2 sum(pinball_q) / sum|y|, and
AverageWeightedQuantileLoss its mean over the quantiles.
"""

from __future__ import annotations

import numpy as np

LOWER_IS_BETTER = ("AverageWeightedQuantileLoss", "WAPE", "RMSE", "MAPE", "MASE")


def wape(y: np.ndarray, yhat: np.ndarray) -> float:
    denominator = np.abs(y).sum()
    return float(np.abs(y - yhat).sum() / denominator) if denominator > 0 else float("nan")


def rmse(y: np.ndarray, yhat: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - yhat) ** 2))) if len(y) else float("nan")


def mape(y: np.ndarray, yhat: np.ndarray) -> float:
    keep = y != 0
    return float(np.mean(np.abs((y[keep] - yhat[keep]) / y[keep]))) if keep.any() else float("nan")


def weighted_quantile_loss(y: np.ndarray, predicted: np.ndarray, q: float) -> float:
    denominator = np.abs(y).sum()
    if denominator <= 0:
        return float("nan")
    diff = y - predicted
    pinball = np.maximum(q * diff, (q - 1) * diff)
    return float(2 * pinball.sum() / denominator)


def mase(y: np.ndarray, yhat: np.ndarray, ids: np.ndarray, scales: dict[str, float]) -> float:
    """Mean over items of mean|error| / that item's in-sample seasonal-naive MAE."""
    values = []
    for item in np.unique(ids):
        scale = scales.get(str(item), 0.0)
        if scale > 0:
            mask = ids == item
            values.append(np.mean(np.abs(y[mask] - yhat[mask])) / scale)
    return float(np.mean(values)) if values else float("nan")


def naive_scale(history: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal naive forecast; of the naive one (lag 1) when the
    history is shorter than a season or exactly periodic (0: that item is left out)."""
    for m in (season, 1):
        if len(history) > m:
            scale = float(np.mean(np.abs(history[m:] - history[:-m])))
            if scale > 0:
                return scale
    return 0.0
