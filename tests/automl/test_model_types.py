"""Every MODEL_TYPE, checked against the trained-model contract."""

import json

import numpy as np
import pytest

import automl
from automl.spec import transform

from .data import bundled, churn, columns_of


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _json_predict(estimator, X):
    """The JSON estimators evaluated as docs/model-contract.md describes them."""
    if estimator["kind"] == "linear":
        z = X @ np.asarray(estimator["coef"]).T + np.asarray(estimator["intercept"])
        return {"identity": z, "logistic": 1 / (1 + np.exp(-z)), "softmax": _softmax(z)}[estimator["link"]]
    if estimator["kind"] == "mlp":
        act = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh, "identity": lambda v: v,
               "logistic": lambda v: 1 / (1 + np.exp(-v))}[estimator["activation"]]
        h = X
        layers = estimator["layers"]
        for i, layer in enumerate(layers):
            h = h @ np.asarray(layer["weights"]) + np.asarray(layer["bias"])
            if i < len(layers) - 1:
                h = act(h)
        return {"identity": h, "logistic": 1 / (1 + np.exp(-h)), "softmax": _softmax(h)}[estimator["out"]]
    centroids = np.asarray(estimator["centroids"])
    return ((X[:, None, :] - centroids[None]) ** 2).sum(axis=2).argmin(axis=1)


def _check_json_estimator(model, cols):
    assert json.loads(json.dumps(model.estimator)) == model.estimator
    X = transform(model.preprocessing, cols)
    out = _json_predict(model.estimator, X)
    if model.problem_type == "BINARY_CLASSIFICATION":
        p1 = out[:, -1]  # logistic: one output = P(classes[1])
        np.testing.assert_allclose(p1, model.reference_predict_proba(cols)[:, 1], rtol=1e-6, atol=1e-9)
    elif model.problem_type == "MULTICLASS_CLASSIFICATION":
        np.testing.assert_allclose(out, model.reference_predict_proba(cols), rtol=1e-6, atol=1e-9)
    elif model.problem_type == "CLUSTERING":
        np.testing.assert_array_equal(out, model.reference_predict(cols))
    else:
        np.testing.assert_allclose(out.ravel(), model.reference_predict(cols), rtol=1e-6, atol=1e-6)


def _check_treelite(model, cols):
    treelite = pytest.importorskip("treelite")
    if model.model_type == "XGBOOST":
        tm = treelite.frontend.from_xgboost_json(bytearray(model.estimator.model_json()))
    else:
        tm = treelite.sklearn.import_model(model.estimator)
    X = transform(model.preprocessing, cols)
    got = np.asarray(treelite.gtil.predict(tm, X.astype(np.float64))).squeeze()
    if model.problem_type == "REGRESSION":
        np.testing.assert_allclose(got, model.reference_predict(cols), rtol=1e-4, atol=1e-4)
    else:
        want = model.reference_predict_proba(cols)
        got = got.reshape(len(X), -1)
        np.testing.assert_allclose(got, want[:, -got.shape[1]:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("model_type, dataset, hyper", [
    ("XGBOOST", "breast_cancer", {"NUM_ROUND": "30", "MAX_DEPTH": "3", "ETA": "0.3"}),
    ("RANDOM_FOREST", "wine", {"NUM_ROUND": "20"}),
    ("EXTRA_TREES", "diabetes", {"NUM_ROUND": "20", "MIN_CHILD_WEIGHT": "3"}),
])
def test_tree_model_types_are_treelite_importable(model_type, dataset, hyper):
    table = bundled(dataset)
    model = automl.train(table, {"target": "target", "model_type": model_type, "auto": "off",
                                 "hyperparameters": hyper, "max_runtime": 10})
    assert model.model_type == model_type and len(model.leaderboard) == 1
    params = model.leaderboard[0]["params"]
    if model_type == "XGBOOST":
        assert params["num_round"] == 30 and params["max_depth"] == 3 and params["eta"] == 0.3
    else:
        assert params["n_estimators"] == 20
    _check_treelite(model, columns_of(table, "target"))


@pytest.mark.parametrize("model_type, dataset", [
    ("LINEAR_LEARNER", "breast_cancer"), ("LINEAR_LEARNER", "iris"), ("LINEAR_LEARNER", "diabetes"),
    ("MLP", "breast_cancer"), ("MLP", "wine"), ("MLP", "diabetes"),
])
def test_json_model_types_match_their_reference(model_type, dataset):
    table = bundled(dataset)
    opts = {"target": "target", "model_type": model_type, "auto": "off", "max_runtime": 15}
    if model_type == "MLP":
        opts["hyperparameters"] = {"HIDDEN_UNITS": "16", "EPOCHS": "60"}
    model = automl.train(table, opts)
    assert model.model_type == model_type
    _check_json_estimator(model, columns_of(table, "target"))
    y = table.column("target").to_numpy()
    if model.problem_type == "REGRESSION":
        assert model.metrics["mse"] < y.var()
    else:
        assert model.metrics["accuracy"] > np.bincount(y).max() / len(y)


def test_model_type_search_tunes_one_family():
    table = bundled("wine")
    model = automl.train(table, {"target": "target", "model_type": "linear_learner", "max_runtime": 10})
    assert {e["family"] for e in model.leaderboard} == {"LINEAR_LEARNER"} and len(model.leaderboard) > 1


def test_kmeans_with_k_and_with_k_chosen():
    table = bundled("iris").drop(["target"])
    fixed = automl.train(table, {"model_type": "kmeans", "k": 3, "max_runtime": 10})
    assert fixed.problem_type == "CLUSTERING" and fixed.target is None and fixed.label_type == "integer"
    assert len(fixed.estimator["centroids"]) == 3 and fixed.metrics["msd"] > 0
    _check_json_estimator(fixed, columns_of(table))
    via_hyper = automl.train(table, {"model_type": "kmeans", "hyperparameters": {"K": "4"}, "max_runtime": 10})
    assert len(via_hyper.estimator["centroids"]) == 4
    chosen = automl.train(table, {"model_type": "kmeans", "max_runtime": 10})
    assert 2 <= len(chosen.estimator["centroids"]) <= 10 and any("silhouette" in r for r in chosen.report)
    assert sum(chosen.feature_importances.values()) == pytest.approx(1)


def test_preprocessors_json_for_auto_off():
    table = churn(400)
    pre = json.dumps([
        {"ColumnSet": ["plan"], "Transformers": ["OneHotEncoder"]},
        {"ColumnSet": ["age", "price"], "Transformers": ["NumericImputer", "StandardScaler"]},
        {"ColumnSet": ["signup"], "Transformers": ["DateTimeVectorizer"]},
    ])
    model = automl.train(table, {"target": "churned", "model_type": "xgboost", "auto": "off",
                                 "preprocessors": pre, "max_runtime": 10,
                                 "hyperparameters": {"NUM_ROUND": "20"}})
    feats = model.preprocessing["features"]
    assert [f["category"] for f in feats if f["input"] == "plan"] == ["basic", "pro", "team"]
    age = next(f for f in feats if f["input"] == "age")
    assert age["scale"] != 1.0 and age["fill"] == pytest.approx(np.nanmedian(
        table.column("age").to_numpy(zero_copy_only=False)), rel=0.2)
    assert {f["part"] for f in feats if f["input"] == "signup"} >= {"year", "month", "epoch_days"}


@pytest.mark.parametrize("pre, exc, words", [
    ([{"ColumnSet": ["nope"], "Transformers": ["OneHotEncoder"]}], automl.MissingColumn, ["nope"]),
    ([{"ColumnSet": ["age"], "Transformers": ["OneHotEncoder"]}], automl.InvalidOption, ["text", "age"]),
    ([{"ColumnSet": ["age"], "Transformers": ["Magic"]}], automl.InvalidOption, ["Magic", "OneHotEncoder"]),
])
def test_bad_preprocessors(pre, exc, words):
    with pytest.raises(exc) as info:
        automl.train(churn(100), {"target": "churned", "model_type": "xgboost", "auto": "off",
                                  "preprocessors": json.dumps(pre), "max_runtime": 5})
    for word in words:
        assert word in str(info.value)


def test_a_star_column_set_is_every_other_input_column():
    """Redshift's K-means example: {"ColumnSet": ["*"], "Transformers": ["NumericPassthrough"]}."""
    from automl.columns import describe, to_raw
    from automl.custom import parse

    table = churn(100)
    infos = [describe(n, table.schema.field(n).type, to_raw(table.column(n))) for n in ("age", "price", "plan")]
    plan = parse([{"ColumnSet": ["plan"], "Transformers": ["OneHotEncoder"]},
                  {"ColumnSet": ["*"], "Transformers": ["StandardScaler"]}], infos)
    assert plan == {"plan": ["OneHotEncoder"], "age": ["StandardScaler"], "price": ["StandardScaler"]}
    with pytest.raises(automl.InvalidOption) as info:  # "*" takes plan too, a text column
        parse([{"ColumnSet": ["*"], "Transformers": ["NumericPassthrough"]}], infos)
    assert "plan" in str(info.value)
