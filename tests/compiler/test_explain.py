"""Shapley values (compiler/explain.py) against the `shap` package, the test oracle:
exact TreeSHAP for XGBoost, scikit-learn forests and HistGradientBoosting models
(through the artifact's Treelite checkpoint turned into an XGBoost model), exact
values for linear models, a sampling estimate for MLPs; per-row values add up to
the model's margin; the global summary has Redshift's EXPLAIN_MODEL shape."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.explain import by_input, contributions, global_explanations

from .cases import CASES

shap = pytest.importorskip("shap")


def _matrix(registry, name: str, rows: int = 120) -> np.ndarray:
    trained = registry.trained(name)
    cols = CASES[name].test_columns()
    return trained.transform({k: v[:rows] for k, v in cols.items()})


def _shap_3d(values, n_outputs: int) -> np.ndarray:
    """shap's output as (rows, features, outputs) whatever its version returns."""
    if isinstance(values, list):
        return np.stack(values, axis=2)
    values = np.asarray(values)
    return values[:, :, None] if values.ndim == 2 else values


@pytest.mark.parametrize(("name", "model"), [
    ("xgb_binary_logistic", lambda t: t.estimator.booster),
    ("xgb_softmax", lambda t: t.estimator.booster),
    ("xgb_tweedie", lambda t: t.estimator.booster),
    ("random_forest_binary", lambda t: t.estimator),
    ("extra_trees_multiclass", lambda t: t.estimator),
    ("sk_hist_poisson", lambda t: t.estimator),
    ("sk_gradient_boosting_binary", lambda t: t.estimator),
])
def test_tree_shap_matches_shap_tree_explainer(registry, name, model):
    trained = registry.trained(name)
    art = registry.artifact(name)
    X = _matrix(registry, name)
    phi = contributions(art, X)
    explainer = shap.TreeExplainer(model(trained))
    want = _shap_3d(explainer.shap_values(X.astype(np.float32).astype(np.float64)), phi.shape[1])
    assert want.shape == (len(X), X.shape[1], phi.shape[1])
    np.testing.assert_allclose(phi[:, :, :-1], want.transpose(0, 2, 1),
                               rtol=1e-4, atol=1e-5 * max(1.0, np.abs(want).max()), err_msg=name)
    np.testing.assert_allclose(phi[0, :, -1], np.atleast_1d(explainer.expected_value), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["xgb_binary_logistic", "xgb_softmax", "random_forest_regression",
                                  "linear_multiclass", "linear_regression"])
def test_values_add_up_to_the_margin(registry, name):
    """Local accuracy: expected value + the row's values = the model's raw output."""
    art = registry.artifact(name)
    pred = registry.predictor(name)
    X = _matrix(registry, name)
    phi = contributions(art, X)
    total = phi.sum(axis=2)
    if art.kind == "tree":
        scorer = pred.scorer
        want = scorer.library.margins(X, round32=scorer.round32) if scorer.library else None
        want = want.reshape(len(X), -1)
        if scorer.layout.averaged:
            want = want  # forests: the driver already averages
    else:
        want = X @ pred.scorer.coef_t + pred.scorer.intercept
    np.testing.assert_allclose(total, want.reshape(total.shape), rtol=1e-5, atol=1e-5)


def test_linear_values_match_shap_linear_explainer(registry):
    name = "linear_binary"
    trained = registry.trained(name)
    X = _matrix(registry, name)
    phi = contributions(registry.artifact(name), X)
    explainer = shap.LinearExplainer(trained.sklearn_model, shap.maskers.Independent(X, max_samples=len(X)))
    want = _shap_3d(explainer.shap_values(X), 1)
    np.testing.assert_allclose(phi[:, 0, :-1], want[:, :, 0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(phi[0, 0, -1], explainer.expected_value, rtol=1e-6)


def test_mlp_estimate_is_close_to_exact_shapley_values(registry):
    name = "mlp_regression"
    art = registry.artifact(name)
    pred = registry.predictor(name)
    X = _matrix(registry, name, rows=20)
    background = _matrix(registry, name, rows=200)[100:132]
    phi = contributions(art, X, background=background)
    f = lambda M: pred.scorer.outputs(M)  # noqa: E731
    exact = shap.ExactExplainer(f, shap.maskers.Independent(background, max_samples=len(background)))(X).values
    err = np.abs(phi[:, 0, :-1] - exact).mean()
    scale = np.abs(exact).mean()
    assert err < 0.1 * scale, (err, scale)
    # locally exact by construction: every permutation's steps add up to f(x) - E f
    np.testing.assert_allclose(phi[:, 0, :].sum(axis=1), f(X), rtol=1e-9, atol=1e-9)


def test_global_explanation_has_redshift_shape_and_sums_one_hot_columns(registry):
    name = "linear_multiclass"
    art = registry.artifact(name)
    spec = art.manifest["preprocessing"]
    X = _matrix(registry, name, rows=300)
    doc = global_explanations(art, X)
    labels = doc["explanations"]["kernel_shap"]
    assert doc["version"] == "1.0" and sorted(labels) == ["label0", "label1", "label2"]
    inputs = [i["name"] for i in spec["inputs"]]
    assert all(sorted(v["global_shap_values"]) == sorted(inputs) for v in labels.values())
    one_hot = [j for j, f in enumerate(spec["features"]) if f["op"] == "one_hot"]
    assert one_hot, "the dense spec encodes the text column one-hot"
    column = spec["features"][one_hot[0]]["input"]
    phi = contributions(art, X)
    feats = [j for j, f in enumerate(spec["features"]) if f["input"] == column]
    want = np.abs(phi[:, 0, feats].sum(axis=1)).mean()
    assert labels["label0"]["global_shap_values"][column] == pytest.approx(want)
    _, per_input = by_input(phi, spec)
    np.testing.assert_allclose(per_input.sum(axis=2) + phi[:, :, -1], phi.sum(axis=2))
    binary = global_explanations(registry.artifact("random_forest_binary"), _matrix(registry, "random_forest_binary"))
    assert list(binary["explanations"]["kernel_shap"]) == ["label0"]
