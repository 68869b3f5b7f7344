"""Non-tree models from their JSON form: linear, MLP and k-means.

These are a few matrix products each, so numpy (and its BLAS, which releases the GIL)
is already as fast as generated code would be; there is nothing to compile. Each
class validates its JSON on construction, because the JSON comes from an artifact
that may have been written by a different version or damaged.

A model function must give one value for one input, whatever batch the row is in
(the proxy's batches differ from an offline call's, and a single-row lookup is a
batch of one). BLAS does not: its kernels sum a row's products in an order that
depends on the row's position and the batch's size (gemv's remainder rows), so the
last bits move. Linear models therefore sum their products in one fixed order,
feature 0 first (`fixed_order_product`), which costs little at their size. MLP
layers and k-means distances still use BLAS, and their last bits can depend on
the batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .links import apply_link, sigmoid

LINKS = ("identity", "logistic", "softmax")
ACTIVATIONS = ("relu", "tanh", "logistic", "identity")


class ModelFormatError(ValueError):
    """The estimator JSON does not describe a usable model."""


def _matrix(value: Any, what: str, ndim: int) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{what} must be numbers: {exc}") from exc
    if arr.ndim != ndim or 0 in arr.shape:
        raise ModelFormatError(f"{what} must be a non-empty {ndim}-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ModelFormatError(f"{what} contains NaN or Infinity")
    return arr


class LinearModel:
    """scores = X @ coef.T + intercept, then the link."""

    kind = "linear"
    can_overflow = True

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.coef = _matrix(spec.get("coef"), "linear coef", 2)
        self.intercept = _matrix(spec.get("intercept"), "linear intercept", 1)
        self.link = spec.get("link")
        if self.link not in LINKS:
            raise ModelFormatError(f"linear link must be one of {LINKS}, got {self.link!r}")
        if len(self.intercept) != self.coef.shape[0]:
            raise ModelFormatError("linear intercept must have one entry per row of coef")
        self.coef_t = np.ascontiguousarray(self.coef.T)
        self.n_features = self.coef.shape[1]
        self.n_outputs = self.coef.shape[0]

    def outputs(self, X: np.ndarray, nthread: int = 1) -> np.ndarray:
        return apply_link(fixed_order_product(X, self.coef_t) + self.intercept, self.link)


#: rows whose products fixed_order_product sums as Python floats (numpy's per-call
#: cost is more than a few rows' arithmetic); row blocks of the numpy route
_FEW_ROWS = 4
_BLOCK_ROWS = 4096


def fixed_order_product(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    """X @ W (X: rows x features, either order; W: features x outputs) with every
    output summed as ((x0 w0 + x1 w1) + x2 w2) + ...: the same bits for a row
    alone or anywhere in any batch. A multiply and an add per feature, each
    rounded, in Python floats for a few rows and numpy over row blocks otherwise
    (the same operations, so the same bits)."""
    n, f = X.shape
    k = W.shape[1]
    if n <= _FEW_ROWS:
        weights = W.T.tolist()
        out = []
        for row in X.tolist():
            for w in weights:
                total = row[0] * w[0]
                for j in range(1, f):
                    total += row[j] * w[j]
                out.append(total)
        return np.array(out, dtype=np.float64).reshape(n, k)
    out = np.empty((n, k))
    scratch = np.empty((min(n, _BLOCK_ROWS), k))
    for lo in range(0, n, _BLOCK_ROWS):
        hi = min(n, lo + _BLOCK_ROWS)
        block, term = out[lo:hi], scratch[:hi - lo]
        np.multiply(X[lo:hi, 0, None], W[0], out=block)
        for j in range(1, f):
            np.multiply(X[lo:hi, j, None], W[j], out=term)
            block += term
    return out


class MLPModel:
    """Dense layers with one hidden activation, then the output function."""

    kind = "mlp"
    can_overflow = True

    def __init__(self, spec: Mapping[str, Any]) -> None:
        layers = spec.get("layers")
        if not isinstance(layers, list) or not layers:
            raise ModelFormatError("mlp needs a non-empty 'layers' list")
        self.weights: list[np.ndarray] = []
        self.biases: list[np.ndarray] = []
        for i, layer in enumerate(layers):
            if not isinstance(layer, Mapping):
                raise ModelFormatError(f"mlp layer {i} must be an object")
            w = _matrix(layer.get("weights"), f"mlp layer {i} weights", 2)
            b = _matrix(layer.get("bias"), f"mlp layer {i} bias", 1)
            if len(b) != w.shape[1]:
                raise ModelFormatError(f"mlp layer {i}: bias must have one entry per output")
            if self.weights and self.weights[-1].shape[1] != w.shape[0]:
                raise ModelFormatError(f"mlp layer {i}: input size does not match the previous layer")
            self.weights.append(w)
            self.biases.append(b)
        self.activation = spec.get("activation")
        if self.activation not in ACTIVATIONS:
            raise ModelFormatError(f"mlp activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        self.link = spec.get("out")
        if self.link not in LINKS:
            raise ModelFormatError(f"mlp out must be one of {LINKS}, got {self.link!r}")
        self.n_features = self.weights[0].shape[0]
        self.n_outputs = self.weights[-1].shape[1]

    def outputs(self, X: np.ndarray, nthread: int = 1) -> np.ndarray:
        h = np.ascontiguousarray(X)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w
            h += b
            if i < last:
                _activate(h, self.activation)
        return apply_link(h, self.link)


def _activate(h: np.ndarray, activation: str) -> None:
    """In place, as scikit-learn's MLP does."""
    if activation == "relu":
        np.maximum(h, 0.0, out=h)
    elif activation == "tanh":
        np.tanh(h, out=h)
    elif activation == "logistic":
        h[...] = sigmoid(h)


class KMeansModel:
    """Index of the nearest centroid (squared Euclidean; ties go to the lower index).

    Distances use scikit-learn's expansion ||c||^2 - 2 x.c (||x||^2 is the same for
    every centroid), so near-ties break the same way as KMeans.predict."""

    kind = "kmeans"
    can_overflow = True  # distances of huge inputs overflow; the ids stay well defined

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.centroids = _matrix(spec.get("centroids"), "kmeans centroids", 2)
        self.centroids_t = np.ascontiguousarray(self.centroids.T)
        self.sq_norms = (self.centroids ** 2).sum(axis=1)
        self.n_features = self.centroids.shape[1]
        self.n_outputs = 1

    def outputs(self, X: np.ndarray, nthread: int = 1) -> np.ndarray:
        X = np.ascontiguousarray(X)
        dist = X @ self.centroids_t
        dist *= -2.0
        dist += self.sq_norms
        return np.argmin(dist, axis=1).astype(np.int64)


def dense_model(spec: Mapping[str, Any]) -> LinearModel | MLPModel | KMeansModel:
    """The model object for an estimator JSON dict (contract: `kind` selects it)."""
    if not isinstance(spec, Mapping):
        raise ModelFormatError("estimator must be a JSON object")
    kinds = {"linear": LinearModel, "mlp": MLPModel, "kmeans": KMeansModel}
    cls = kinds.get(spec.get("kind"))
    if cls is None:
        raise ModelFormatError(f"unknown estimator kind {spec.get('kind')!r}; expected one of {sorted(kinds)}")
    return cls(spec)
