"""Widening (automl/search.py Search._widen): a search on one holdout split whose
first local search converged goes on with cross-validation around the holdout."""

from __future__ import annotations

import importlib

import numpy as np
import pyarrow as pa
import pytest

from automl import metrics, search, validation
from automl.problem import BINARY, REGRESSION, resolve_objective
from automl.validation import Evaluator, folds_around, make_folds

from .test_confirm import HOLDOUT_BUDGET, holdout_case, no_restarts

train_module = importlib.import_module("automl.train")  # the module (automl.train is its function)


def test_a_holdout_result_joined_with_the_other_folds_equals_the_cross_validation_from_scratch():
    n = 3000
    matrices, y, objective, fam, ctx, params, holdout = holdout_case(n)
    known = Evaluator(matrices, y, holdout, objective, REGRESSION, 0, 0).run(fam, params, ctx, 1.0, float("inf"))
    wide = Evaluator(matrices, y, folds_around(holdout[0], None, 0, 5)[:3], objective, REGRESSION, 0, 0)
    more = wide.without_first()
    assert len(more.folds) == 2 and all(np.array_equal(a[1], b[1]) for a, b in zip(more.folds, wide.folds[1:]))
    joined = wide.joined(known, known.oof, more.run(fam, params, ctx, 1.0, float("inf")))
    scratch = wide.run(fam, params, ctx, 1.0, float("inf"))
    assert joined.model is known.model  # the holdout's model stays the trial's
    assert len(joined.oof) == len(wide.validation_rows()) == int(0.6 * n)
    np.testing.assert_allclose(joined.oof, scratch.oof)  # in the rows' order, as Evaluator.run gives them
    assert joined.score == pytest.approx(scratch.score, rel=1e-12) and joined.score != known.score


def _table() -> pa.Table:
    rng = np.random.default_rng(2)
    n = 7000
    cat = rng.choice(np.array(["a", "b", "c", "d", "e"]), size=n)  # category orders fitted per fold
    x = rng.normal(size=(n, 2))
    effect = {"a": 0.0, "b": 1.0, "c": -1.0, "d": 2.0, "e": 0.5}
    y = x[:, 0] + np.vectorize(effect.get)(cat) + rng.normal(size=n)
    return pa.table({"c": cat, "x0": x[:, 0], "x1": x[:, 1], "y": y})


def test_a_score_made_of_heavy_tailed_row_losses_has_a_large_standard_error():
    rng = np.random.default_rng(3)
    y = rng.normal(size=6000)
    light = y + rng.normal(size=6000)  # squared errors of normal residuals: a coefficient of variation of sqrt(2)
    heavy = y + rng.standard_t(2.5, size=6000)  # a few rows carry much of the MSE
    assert metrics.row_losses("mse", y, light, REGRESSION) == pytest.approx((light - y) ** 2)
    assert metrics.relative_standard_error((light - y) ** 2) == pytest.approx(np.sqrt(2 / 6000), rel=0.1)
    assert metrics.relative_standard_error((heavy - y) ** 2) > 2 * metrics.relative_standard_error((light - y) ** 2)
    proba = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    assert metrics.row_losses("accuracy", np.array([0, 0, 1]), proba, BINARY, 0.5).tolist() == [0.0, 1.0, 1.0]
    assert metrics.row_losses("log_loss", np.array([0, 1, 1]), proba, BINARY) == pytest.approx(
        -np.log([0.7, 0.8, 0.4]))
    assert metrics.row_losses("f1", np.array([0, 0, 1]), proba, BINARY) is None  # not a mean of row losses
    objective = resolve_objective(None, REGRESSION)
    holdout = Evaluator({}, y, make_folds(None, len(y), 0, cross_validate=False), objective, REGRESSION, 0, 0)
    val = holdout.validation_rows()
    assert holdout.score_error(heavy[val], None) == metrics.relative_standard_error((heavy - y)[val] ** 2)


@pytest.mark.parametrize("case", ["widened", "off", "a quiet holdout"])
def test_a_converged_holdout_search_goes_on_with_cross_validation_and_its_winner_is_scored_so(monkeypatch, case):
    monkeypatch.setattr(validation, "CV_CELLS_PER_SECOND", 0.0)  # one holdout above 5,000 rows, whatever the budget
    monkeypatch.setattr(train_module, "WIDEN", case != "off")
    no_restarts(monkeypatch)
    # this table's holdout MSE (normal noise) has a standard error of about 4% of itself
    monkeypatch.setattr(search, "WIDEN_ERROR", 0.5 if case == "a quiet holdout" else 0.02)
    # the first local search converges after about 3 s: the rest is cross-validated
    model = train_module.train(_table(), {"target": "y", "max_runtime": HOLDOUT_BUDGET, "seed": 0}, n_jobs=1)
    assert any(line.startswith("rows: 5600 for training/selection (one holdout split)") for line in model.report)
    line = next((line for line in model.report if line.startswith("search widened to 3-fold")), None)
    widened = [e for e in model.leaderboard if e["phase"] == "widen"]
    assert model.training_seconds <= HOLDOUT_BUDGET
    if case != "widened":
        assert line is None and not widened, model.report
        # the search stays on its holdout, and its finalists are confirmed (automl/confirm.py)
        assert any(line.startswith("confirmation: ") and "scored again" in line for line in model.report)
        return
    assert line is not None, model.report
    assert "has a standard error of " in line
    first = min(e["trial"] for e in widened)
    assert {e["family"] for e in widened} >= {"CONSTANT"}  # the baseline scored on the new rows too
    assert f"after {first} trials" in line
    # the winner is chosen among the trials scored on the three folds only, and no
    # holdout search is confirmed after it
    winner = model.top_trials[0]
    assert winner["trial"] >= first
    later = [e for e in model.leaderboard if e["trial"] >= first and e["fidelity"] == 1.0 and e["family"] != "CONSTANT"]
    # (a later trial replaces the best only by more than search.REL_TOL)
    assert winner["score"] == pytest.approx(min(e["score"] for e in later), rel=search.REL_TOL)
    assert not any(line.startswith("confirmation: ") for line in model.report)
