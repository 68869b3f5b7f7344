"""Confirmation (automl/confirm.py): a search on one holdout split has its
finalists cross-validated with the time it leaves, the holdout being one fold."""

from __future__ import annotations

import importlib
import re

import numpy as np
import pyarrow as pa
import pytest

from automl import confirm, search, validation
from automl.families import Context
from automl.problem import REGRESSION, resolve_objective
from automl.registry import FAMILIES
from automl.validation import Evaluator, folds_around, make_folds

train_module = importlib.import_module("automl.train")  # the module (automl.train is its function)

# MAX_RUNTIME of the searches on one holdout here and in test_widen, with no restart
# (`no_restarts`: the first would come at 15 s, automl/search.py RESTART_SECONDS):
# they converge after 3-4 s on an idle machine and end after 5-6; the rest is room
# for a loaded one (at 8 s, 3 busy processes on this machine's 2 cores left no time to
# confirm or widen; at 14 s, 2 busy processes beside the suite's 2 workers left no
# time to widen, a nineteenth-session run)
HOLDOUT_BUDGET = 30


def no_restarts(monkeypatch) -> None:
    """The converged search ends (no restart): what HOLDOUT_BUDGET's searches test."""
    monkeypatch.setattr(search, "MAX_RESTARTS", 0)


def test_the_confirming_folds_keep_the_holdout_as_the_first_and_split_its_training_rows():
    rng = np.random.default_rng(0)
    y = (rng.random(9000) < 0.1).astype(np.int64)  # a 10% class: each part keeps its share
    holdout = make_folds(y, len(y), 0, cross_validate=False)[0]
    folds = folds_around(holdout, y, 0, 5)
    assert len(folds) == 5
    assert all(np.array_equal(a, b) for a, b in zip(folds[0], holdout))
    val = np.concatenate([v for _, v in folds])
    assert sorted(val.tolist()) == list(range(len(y)))  # every row validated exactly once
    for train, v in folds:
        assert len(np.intersect1d(train, v)) == 0 and len(train) + len(v) == len(y)
        assert abs(len(v) - len(y) / 5) <= 2
        assert abs(y[v].mean() - y.mean()) < 0.002
    # regression (no classes): the same partition, by rows alone
    plain = folds_around(make_folds(None, 1001, 3, cross_validate=False)[0], None, 3, 5)
    assert sorted(np.concatenate([v for _, v in plain]).tolist()) == list(range(1001))


def holdout_case(n: int = 3000):
    """A regression table searched on one holdout split with LightGBM: (matrices, y,
    objective, family, context, params, holdout folds). Also tests/automl/test_widen.py's."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 4))
    y = X[:, 0] * 2 - X[:, 1] + rng.normal(size=n)
    fam = FAMILIES["LIGHTGBM"]
    ctx = Context(REGRESSION, int(0.8 * n), 4, 0, 0, 1)
    return ({fam.encoding: X}, y, resolve_objective(None, REGRESSION), fam, ctx,
            {**fam.initial(ctx), "num_round": 60}, make_folds(None, n, 0, cross_validate=False))


def test_a_holdout_result_and_the_other_folds_combined_equal_the_cross_validation_from_scratch():
    n = 3000
    matrices, y, objective, fam, ctx, params, holdout = holdout_case(n)
    searched = Evaluator(matrices, y, holdout, objective, REGRESSION, 0, 0)
    known = searched.run(fam, params, ctx, 1.0, float("inf"))
    more = confirm.more_folds(holdout[0], None, 0)
    assert len(more) == confirm.FOLDS - 1
    extra = Evaluator(matrices, y, more, objective, REGRESSION, 0, 0)
    rows = np.concatenate([searched.validation_rows(), extra.validation_rows()])
    combined = confirm.combine(known, extra.run(fam, params, ctx, 1.0, float("inf")), rows, extra)
    scratch = Evaluator(matrices, y, holdout + more, objective, REGRESSION, 0, 0).run(fam, params, ctx, 1.0,
                                                                                    float("inf"))
    assert combined.model is known.model  # the search's model stays the trial's
    # a trial whose predictions the search dropped has them predicted again, the same
    np.testing.assert_array_equal(searched.first_fold_predictions(fam, known.model), known.oof)
    assert sorted(rows.tolist()) == list(range(n))
    np.testing.assert_allclose(combined.oof[np.argsort(rows)], scratch.oof)
    assert combined.score == pytest.approx(scratch.score, rel=1e-12) and combined.score != known.score


def test_a_search_on_one_holdout_confirms_its_finalists_and_the_winner_is_the_best_of_them(monkeypatch):
    monkeypatch.setattr(validation, "CV_CELLS_PER_SECOND", 0.0)  # one holdout above 5,000 rows, whatever the budget
    monkeypatch.setattr(train_module, "WIDEN", False)  # the search stays on its holdout (tests/automl/test_widen.py)
    no_restarts(monkeypatch)
    rng = np.random.default_rng(2)
    n = 7000
    cat = rng.choice(np.array(["a", "b", "c", "d", "e"]), size=n)  # category orders fitted per fold
    x = rng.normal(size=(n, 2))
    effect = {"a": 0.0, "b": 1.0, "c": -1.0, "d": 2.0, "e": 0.5}
    y = x[:, 0] + np.vectorize(effect.get)(cat) + rng.normal(size=n)
    table = pa.table({"c": cat, "x0": x[:, 0], "x1": x[:, 1], "y": y})
    # the search converges after about 4 s: the rest confirms
    model = train_module.train(table, {"target": "y", "max_runtime": HOLDOUT_BUDGET, "seed": 0}, n_jobs=1)
    assert any(line.startswith("rows: 5600 for training/selection (one holdout split)") for line in model.report)
    line = next((line for line in model.report if line.startswith("confirmation: ") and "scored again" in line), None)
    assert line is not None, model.report
    confirmed = [e for e in model.leaderboard if e["phase"] == confirm.PHASE]
    # all the finalists, or as many as the time left allowed ("6 of the 8": a loaded
    # machine, as a CI run of the eighteenth session)
    said = re.match(r"confirmation: (?:(\d+) of )?the (\d+) best configurations scored again", line)
    assert said is not None, line
    assert len(confirmed) == int(said[1] or said[2]) >= confirm.MIN_CONFIRMED, (line, len(confirmed))
    best = min(confirmed, key=lambda e: e["score"])
    assert model.top_trials[0]["trial"] == best["trial"]  # the winner: the best by cross-validation
    assert model.training_seconds <= HOLDOUT_BUDGET
