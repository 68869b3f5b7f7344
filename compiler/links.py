"""Output functions shared by every model kind: raw scores -> probabilities/values.

They follow scikit-learn's formulas (expit as 1/(1+exp(-x)), softmax after
subtracting the row maximum) so the compiled predictor agrees with the reference to
rounding, and they are applied here in float64 numpy rather than inside Treelite
(whose GTIL softmax works in float32 and would drift by ~1e-7).
"""

from __future__ import annotations

import math

import numpy as np


#: exp() of anything larger overflows; clipping there changes a probability that is
#: already below 1e-308 (scipy's expit gives 0 or a subnormal) and spares the caller
#: an np.errstate block, which costs more than the rest of a one-row sigmoid
_EXP_MAX = 709.78


def sigmoid(x: np.ndarray, alpha: float = 1.0, out: np.ndarray | None = None) -> np.ndarray:
    """1/(1+exp(-alpha x)), scikit-learn's expit formula."""
    z = np.multiply(x, -alpha, out=out) if alpha != 1.0 else np.negative(x, out=out)
    np.minimum(z, _EXP_MAX, out=z)
    np.exp(z, out=z)
    z += 1.0
    return np.divide(1.0, z, out=z)


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a 2-D array (a new array)."""
    z = x - x.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def binary_proba(score: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """One logit per row -> the (n, 2) matrix [1 - p, p] that scikit-learn returns,
    written in place (a one-row call is dominated by the number of numpy calls)."""
    if len(score) == 1:
        # one row: scalar math is ~5x cheaper than six ufunc calls on 1-element arrays
        # (math.exp is the C library's exp, as scipy's expit uses)
        p = 1.0 / (1.0 + math.exp(min(-alpha * float(score.reshape(-1)[0]), _EXP_MAX)))
        return np.array([[1.0 - p, p]])
    out = np.empty((len(score), 2))
    sigmoid(score.reshape(-1), alpha, out=out[:, 1])
    np.subtract(1.0, out[:, 1], out=out[:, 0])
    return out


def apply_link(scores: np.ndarray, link: str) -> np.ndarray:
    """`identity` -> values (n,); `logistic` -> (n, 2) probabilities; `softmax` -> (n, k)."""
    if link == "identity":
        return scores.reshape(-1) if scores.ndim == 2 and scores.shape[1] == 1 else scores
    if link == "logistic":
        return binary_proba(scores)
    if link == "softmax":
        return softmax(scores)
    raise ValueError(f"unknown link {link!r}")
