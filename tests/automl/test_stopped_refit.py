"""A refit the deadline stops when no trial's model is at hand (on a training
cluster only XGBoost's trial models come back): the model keeps what it grew by
then (automl/train.py _grown_so_far, Family.stopped_fit), in every family that grows.

Found under load in tests/ml/test_dask_training: a LightGBM winner's refit stopped by
the deadline ended the whole training with AttributeError (scikit-learn's
check_is_fitted asked LightGBM's model, not a scikit-learn estimator, for its tags)."""

from __future__ import annotations

import importlib
import time

import numpy as np
import pytest

import automl
from automl.dataset import Clock
from automl.families import Context, TrialInterrupted
from automl.problem import BINARY, REGRESSION
from automl.registry import FAMILIES
from automl.search import Trial
from automl.validation import TrialResult
from compiler.trees import import_xgboost

# the module (automl.train is its function: named first, see automl/__init__)
train_module = importlib.import_module(automl.train.__module__)

# each family's configuration, grown far past what fits in the half second given
BIG = {"LIGHTGBM": {"num_round": 100_000}, "XGBOOST": {"num_round": 100_000},
       "RANDOM_FOREST": {"n_estimators": 100_000}}


def _data(problem: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 5))
    score = X[:, 0] + np.sin(2 * X[:, 1]) + rng.normal(scale=0.3, size=len(X))
    return X, ((score > 0).astype(np.int64) if problem == BINARY else score)


@pytest.mark.parametrize("problem", [REGRESSION, BINARY])
@pytest.mark.parametrize("family", sorted(BIG))
def test_a_refit_the_deadline_stops_keeps_what_it_grew(family, problem):
    fam = FAMILIES[family]
    X, y = _data(problem)
    ctx = Context(problem, len(y), X.shape[1], 2 if problem == BINARY else 0, seed=0, n_jobs=1, budget=10.0)
    params = {**fam.initial(ctx), **BIG[family]}
    winner = Trial(1, family, params, 1.0, "search", TrialResult(1.0, 1.0, 1.0, None, None, 1.0))
    # the refit's deadline (the clock's, less its overhead) half a second from now
    clock = Clock(time.monotonic() - 9.05, 10.0, None)
    report: list[str] = []
    est = train_module._refit(fam, winner, ctx, X, y, clock, report)
    grown = getattr(est, fam.grow_attr)
    assert report[-1] == f"time budget reached during the refit: kept the {grown} {fam.grow_attr} grown by then"
    assert 0 < grown < BIG[family][fam.grow_attr]
    assert time.monotonic() < clock.start + clock.budget  # within MAX_RUNTIME
    # the model it kept is the configuration with that much grown, fitted whole
    whole = fam.fit(fam.build({**params, fam.grow_attr: grown}, ctx), X, y, float("inf"))
    np.testing.assert_array_equal(est.predict(X), whole.predict(X))
    if problem == BINARY:
        np.testing.assert_allclose(est.predict_proba(X), whole.predict_proba(X), rtol=1e-12)


@pytest.mark.parametrize("family", ["LIGHTGBM", "XGBOOST"])
def test_a_boosted_fit_the_deadline_stops_is_interrupted_with_its_rounds_kept(family):
    """In a trial the interruption still discards the model (TrialInterrupted); the
    estimator holds the rounds grown, which only a refit keeps."""
    fam = FAMILIES[family]
    X, y = _data(REGRESSION)
    ctx = Context(REGRESSION, len(y), X.shape[1], 0, seed=0, n_jobs=1, budget=10.0)
    est = fam.build({**fam.initial(ctx), "num_round": 100_000}, ctx)
    assert fam.stopped_fit(est) is None  # nothing grown yet
    with pytest.raises(TrialInterrupted):
        fam.fit(est, X, y, time.monotonic() + 0.2)
    assert fam.stopped_fit(est) is est and 0 < est.num_round < 100_000
    # what the compiler reads has those rounds' trees
    model = est.treelite_model()[0] if family == "LIGHTGBM" else import_xgboost(est.model_json())[0]
    assert model.num_tree == est.num_round
