"""The LIGHTGBM family's search space: sized by the data, and by the budget (a long
MAX_RUNTIME searches more rounds)."""

from __future__ import annotations

from dataclasses import replace

from automl.families import LONG_BUDGET_SECONDS, Context
from automl.lgbm import LONG_ROUNDS, ROUNDS, LightGBM
from automl.problem import REGRESSION


def _rounds(ctx: Context):
    return next(p for p in LightGBM().space(ctx) if p.name == "num_round")


def test_a_long_budget_searches_more_rounds_from_the_same_start():
    ctx = Context(REGRESSION, 40_000, 9, 0, seed=0, n_jobs=2, budget=30.0)
    short, long = _rounds(ctx), _rounds(replace(ctx, budget=LONG_BUDGET_SECONDS))
    assert (short.low, short.high) == (20, ROUNDS) and (long.low, long.high) == (20, LONG_ROUNDS)
    assert short.init == long.init == 100
    assert _rounds(replace(ctx, budget=0.0)).high == ROUNDS  # budget not known: the short space
    # the cost the search predicts a trial's seconds from grows with the rounds
    fam = LightGBM()
    assert fam.size({"num_round": LONG_ROUNDS, "num_leaves": 31}) == 4 * fam.size({"num_round": ROUNDS, "num_leaves": 31})


def test_the_search_runs_no_configuration_whose_model_exceeds_the_leaf_limit(monkeypatch):
    """rounds x leaves x trees per round is bounded (lgbm.MAX_MODEL_LEAVES): the
    search skips a larger configuration, AUTO OFF trains what it was asked for."""
    import numpy as np
    import pyarrow as pa

    import automl
    from automl import lgbm

    ctx = Context(REGRESSION, 40_000, 9, 0, seed=0, n_jobs=1, budget=120.0)
    fam = LightGBM()
    at_limit = {"num_round": lgbm.MAX_MODEL_LEAVES // 256, "num_leaves": 256}
    assert fam.within_limits(at_limit, ctx)
    assert not fam.within_limits({**at_limit, "num_round": at_limit["num_round"] + 1}, ctx)
    assert not fam.within_limits(at_limit, replace(ctx, n_classes=3))  # a tree per class and round
    assert fam.within_limits(at_limit, replace(ctx, n_classes=2))

    monkeypatch.setattr(lgbm, "MAX_MODEL_LEAVES", 2000)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 3))
    table = pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": x[:, 0] * 2 + np.sin(3 * x[:, 1])})
    model = automl.train(table, {"target": "y", "model_type": "LIGHTGBM", "max_runtime": 8, "seed": 0}, n_jobs=1)
    sizes = [lgbm.model_leaves(t["params"], 0) for t in model.leaderboard if t["family"] == "LIGHTGBM"]
    assert len(sizes) > 3 and max(sizes) <= 2000, sizes
    import json

    trees = json.loads(model.estimator.treelite_model()[0].dump_as_json(pretty_print=False))["trees"]
    assert sum(1 for tree in trees for node in tree["nodes"] if "leaf_value" in node) <= 2000  # a blend too
    off = automl.train(table, {"target": "y", "model_type": "LIGHTGBM", "auto": False, "seed": 0,
                               "hyperparameters": {"NUM_ROUND": "100", "MAX_LEAVES": "31"}}, n_jobs=1)
    assert off.estimator.booster.num_trees() == 100  # 3,100 leaves asked for, above this limit


def test_a_refit_on_more_rows_grows_the_rounds_within_the_leaf_limit(monkeypatch):
    """The kept model is refitted on more rows than its trials' folds had: its rounds
    grow in proportion (an ensemble's members together), never past the leaf limit,
    and never a NUM_ROUND the statement gave."""
    from automl import lgbm

    ctx = Context(REGRESSION, 20_000, 9, 0, seed=0, n_jobs=1, budget=30.0)
    fam = LightGBM()
    a = {"num_round": 100, "num_leaves": 31, "learning_rate": 0.1}
    b = {"num_round": 300, "num_leaves": 63, "learning_rate": 0.05}
    assert fam.refit_growth(30_000, ctx) == 1.5
    assert fam.refit_configs([a, b], ctx, 30_000) == [{**a, "num_round": 150}, {**b, "num_round": 450}]
    assert fam.refit_configs([a], ctx, 20_000) == [a]  # no more rows than a fold's
    given = replace(ctx, fixed={"num_round": 100})
    assert fam.refit_growth(30_000, given) == 1.0 and fam.refit_configs([a], given, 30_000) == [a]
    monkeypatch.setattr(lgbm, "MAX_MODEL_LEAVES", 100 * 31 + 300 * 63 + 1_000)
    grown = fam.refit_configs([a, b], ctx, 30_000)
    assert [p["num_round"] for p in grown] == [104, 313]  # 1.045 times, not 1.5
    assert sum(lgbm.model_leaves(p, 0) for p in grown) <= lgbm.MAX_MODEL_LEAVES
    monkeypatch.setattr(lgbm, "REFIT_GROWS_ROUNDS", False)
    assert fam.refit_configs([a, b], ctx, 30_000) == [a, b]
