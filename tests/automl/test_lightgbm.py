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
