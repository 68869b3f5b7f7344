"""Validation does not score a row through a category order its own target helped fit
(automl/preprocess.py learns_from_target / refit_orders, automl/train.py
_fold_matrices): the tree encoding's target-ordered ordinals are fitted again on each
fold's training rows, so a category that carries no signal shows none in validation."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import automl
from automl import preprocess
from automl.columns import describe, to_raw
from automl.families import Context
from automl.problem import resolve_objective
from automl.registry import FAMILIES
from automl.spec import transform
from automl.validation import CV_MAX_ROWS, Evaluator, make_folds


def _noise_ids(n: int, levels: int, seed: int = 0) -> tuple[list, dict[str, np.ndarray], np.ndarray]:
    """A text id with `levels` values (a few rows each), a number and a target of
    pure noise."""
    rng = np.random.default_rng(seed)
    table = pa.table({"who": pa.array([f"id{i}" for i in rng.integers(0, levels, n)]),
                      "x": pa.array(rng.normal(size=n))})
    raw = {name: to_raw(table.column(name)) for name in table.column_names}
    infos = [describe(name, table.schema.field(name).type, raw[name]) for name in table.column_names]
    return infos, raw, rng.normal(size=n)


def test_refit_orders_on_the_same_rows_is_the_spec_and_keeps_every_column():
    infos, raw, y = _noise_ids(3000, 400)
    spec = preprocess.fit_spec(infos, raw, y, "tree", "regression")
    assert preprocess.learns_from_target(infos, "tree", "regression")
    assert preprocess.refit_orders(spec, infos, raw, y, "regression") == spec
    half = {k: v[:1500] for k, v in raw.items()}
    other = preprocess.refit_orders(spec, infos, half, y[:1500], "regression")
    assert [(f["input"], f["op"]) for f in other["features"]] == [(f["input"], f["op"]) for f in spec["features"]]
    assert other["features"][0]["categories"] != spec["features"][0]["categories"]
    assert other["features"][1] == spec["features"][1]  # the number is not the target's
    assert transform(other, raw).shape == transform(spec, raw).shape
    # a PREPROCESSORS plan's own (lexical) ordinal is kept as it is
    assert preprocess.refit_orders(spec, infos, half, y[:1500], "regression", frozenset({"who"})) == spec


def test_what_learns_from_the_target():
    infos, _, _ = _noise_ids(100, 10)
    assert preprocess.learns_from_target(infos, "tree", "binary")
    assert not preprocess.learns_from_target(infos, "dense", "regression")  # one-hot by frequency
    assert preprocess.learns_from_target(infos, "tree", "multiclass") == preprocess.MULTICLASS_ORDERS
    numbers = [i for i in infos if i.role == "numeric"]
    assert not preprocess.learns_from_target(numbers, "tree", "regression")


@pytest.mark.parametrize("n", [3000, 8000])  # 3-fold CV, one holdout split
def test_a_category_of_noise_shows_no_signal_in_validation(n):
    infos, raw, y = _noise_ids(n, n // 3)
    spec = preprocess.fit_spec(infos, raw, y, "tree", "regression")
    folds = make_folds(None, n, 0, n <= CV_MAX_ROWS)
    # what automl/train.py's _fold_matrices gives the Evaluator for this spec
    fold_matrices = {"tree": [transform(preprocess.refit_orders(spec, infos, {k: v[tr] for k, v in raw.items()},
                                                                y[tr], "regression"), raw) for tr, _ in folds]}
    objective = resolve_objective("MSE", "REGRESSION")
    fam = FAMILIES["LIGHTGBM"]
    X = transform(spec, raw)
    ctx = Context("REGRESSION", len(folds[0][0]), X.shape[1], 0, 0, 1)
    params = {**fam.initial(ctx), "min_child_samples": 5}

    def validation_mse(per_fold):
        evaluator = Evaluator({"tree": X}, y, folds, objective, "REGRESSION", 0, 0, per_fold)
        return evaluator.run(fam, params, ctx, 1.0, float("inf")).score

    variance = float(np.var(y))
    honest, leaky = validation_mse(fold_matrices), validation_mse(None)
    # the orders fitted with the validation rows' own targets make noise look like
    # signal; fitted on each fold's training rows, it is no better than the mean
    assert leaky < 0.96 * variance, (leaky, variance)
    assert honest > variance, (honest, variance)


def test_the_fold_orders_reach_the_search_and_the_model_keeps_the_full_spec():
    rng = np.random.default_rng(3)
    n = 4000
    ids = rng.integers(0, 600, n)
    effect = np.random.default_rng(9).normal(0, 1.0, 600)
    table = pa.table({"who": pa.array([f"id{i}" for i in ids]), "x": pa.array(rng.normal(size=n)),
                      "y": effect[ids] + rng.normal(0, 1.0, n)})
    model = automl.train(table, {"target": "y", "model_type": "LIGHTGBM", "max_runtime": 20, "seed": 0})
    spec = model.preprocessing
    full = preprocess.fit_spec([describe(c, table.schema.field(c).type, to_raw(table.column(c))) for c in ("who", "x")],
                               {c: to_raw(table.column(c)) for c in ("who", "x")}, None, "tree", "none")
    assert [f["op"] for f in spec["features"]] == [f["op"] for f in full["features"]]
    # validation is honest: its MSE is near the held-out one, not far below it
    line = next(r for r in model.report if r.startswith("winner:"))
    validation = float(line.rsplit("validation MSE ", 1)[1].rstrip(")"))
    assert validation > 0.85 * model.metrics["mse"], (line, model.metrics)


def _strong_ids(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 60, n)
    effect = np.random.default_rng(9).normal(0, 2.0, 60)
    return pa.table({"who": pa.array([f"id{i}" for i in ids]), "x": pa.array(rng.normal(size=n)),
                     "y": effect[ids] + 0.3 * rng.normal(size=n)})


def test_a_first_fold_model_kept_reads_its_inputs_through_its_own_orders(monkeypatch):
    """When the refit is cut by the deadline the winning trial's model is kept; it
    was fitted through the first fold's category orders, so the model's spec is that
    fold's (through the orders fitted on every row, its splits would fall on the
    wrong categories), and the metrics read the test rows the same way."""
    import importlib

    train = automl.train  # the function (automl/__init__.py binds it on first use) ...
    train_module = importlib.import_module("automl.train")  # ... and its module

    options = {"target": "y", "model_type": "LIGHTGBM", "max_runtime": 20, "seed": 0}
    table, fresh = _strong_ids(3000, 0), _strong_ids(4000, 1)
    monkeypatch.setattr("automl.registry.AUTO_FAMILIES", ("LIGHTGBM",))
    monkeypatch.setattr("automl.ensemble.select", lambda *a, **k: None)
    refitted = train(table, options, n_jobs=1)
    monkeypatch.setattr(train_module, "_refit", lambda fam, winner, *a, **k: winner.result.model)
    kept = train(table, options, n_jobs=1)
    assert kept.preprocessing["features"][0]["categories"] != refitted.preprocessing["features"][0]["categories"]
    y = fresh.column("y").to_numpy()
    rows = {c: to_raw(fresh.column(c)) for c in ("who", "x")}
    mse = {name: float(np.mean((m.reference_predict(rows) - y) ** 2)) for name, m in
           (("kept", kept), ("refitted", refitted))}
    assert mse["kept"] < 0.2, mse  # the ids' effects (variance 4) are found: noise is 0.09
    assert kept.metrics["mse"] < 0.2 and refitted.metrics["mse"] < 0.2, (kept.metrics, refitted.metrics)
