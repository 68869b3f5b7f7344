"""Dense models give a row the same bits alone or anywhere in any batch (a model
function has one value per input; the proxy's batches are not an offline call's)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.dense import LinearModel, fixed_order_product


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 40), st.integers(1, 5), st.integers(1, 300), st.integers(0, 2**32 - 1),
       st.sampled_from(["C", "F"]), st.data())
def test_linear_outputs_do_not_depend_on_the_batch(n_features, n_outputs, n_rows, seed, order, data):
    rng = np.random.default_rng(seed)
    link = "identity" if n_outputs == 1 else data.draw(st.sampled_from(["identity", "softmax"]))
    model = LinearModel({"coef": (rng.normal(size=(n_outputs, n_features)) * 10).tolist(),
                         "intercept": rng.normal(size=n_outputs).tolist(), "link": link})
    X = np.asarray(rng.normal(size=(n_rows, n_features)) * rng.choice([1e-3, 1.0, 1e6], n_features), order=order)
    full = model.outputs(X)
    start = data.draw(st.integers(0, n_rows - 1))
    stop = data.draw(st.integers(start + 1, n_rows))
    part = model.outputs(np.asarray(X[start:stop], order=order))
    assert np.array_equal(part.view(np.int64), full[start:stop].view(np.int64))
    for row in (start, stop - 1):
        assert np.array_equal(model.outputs(X[row:row + 1]).view(np.int64), full[row:row + 1].view(np.int64))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 30), st.integers(1, 4), st.integers(0, 9000), st.integers(0, 2**32 - 1))
def test_fixed_order_product_is_the_matrix_product(n_features, n_outputs, n_rows, seed):
    """The few-rows and the blocked route are the same sums, and close to BLAS's."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features))
    W = rng.normal(size=(n_features, n_outputs))
    out = fixed_order_product(X, W)
    assert out.shape == (n_rows, n_outputs)
    np.testing.assert_allclose(out, X @ W, rtol=1e-12, atol=1e-12)
    few = [fixed_order_product(X[i:i + 1], W) for i in range(min(n_rows, 3))]
    for i, row in enumerate(few):
        assert np.array_equal(row.view(np.int64), out[i:i + 1].view(np.int64))
