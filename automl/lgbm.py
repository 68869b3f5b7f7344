"""LIGHTGBM: LightGBM's leaf-wise gradient boosting, a family of AUTO (not a Redshift
MODEL_TYPE).

Trained with `lightgbm.train` on the tree encoding's matrix (no NaN reaches it: the
encoding fills NULL with a sentinel below the column's minimum), searched over a
space in the spirit of FLAML's LightGBM learner (leaves, learning rate down to 0.01,
minimum leaf size, column sampling, L1/L2), starting from LightGBM's defaults.

`LGBModel` is the fitted model: the Booster, LightGBM's own predict and
predict_proba (the oracle the compiler's equivalence tests compare against), and
`treelite_model()`, which hands the compiler the Booster through Treelite's LightGBM
frontend (docs/model-contract.md). LightGBM compares float64 features with float64
thresholds, so the input precision is float64.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.utils.class_weight import compute_sample_weight

from .boosting import BoostedTrees
from .families import LONG_BUDGET_SECONDS, Context, Param, TrialInterrupted
from .problem import REGRESSION


#: the rounds range's top; a long budget (MAX_RUNTIME of LONG_BUDGET_SECONDS or more)
#: searches up to LONG_ROUNDS (docs/automl.md, "What each lever did": more rounds at
#: a lower learning rate is where FLAML's long searches led on diamonds)
ROUNDS = 1000
LONG_ROUNDS = 4000
#: the most leaves a model may hold over all its trees (a LightGBM configuration, or
#: an ensemble of them: automl/ensemble.py; a multiclass model has a tree per class
#: and round): the long space's largest single-output model, 4000 rounds of 256
#: leaves, a 164 MB artifact and a 44 s build (docs/automl.md); a quarter of that
#: (2^18) is a candidate the benchmark has not settled (docs/automl.md, "What each
#: lever did")
MAX_MODEL_LEAVES = LONG_ROUNDS * 256
#: a refit on more rows than a trial's fold grows its rounds in proportion, at the
#: same learning rate (`LightGBM.refit_configs`; docs/automl.md, "What each lever
#: did"); the benchmark's variant mlproxy_nogrowth turns it off
REFIT_GROWS_ROUNDS = True


def model_leaves(params: dict[str, Any], n_classes: int) -> int:
    """The leaves of a configuration's model: rounds x leaves per tree x trees per
    round (one per class for a multiclass target)."""
    per_round = n_classes if n_classes > 2 else 1
    return int(params.get("num_round", 100)) * int(params.get("num_leaves", 31)) * per_round


class LabelsFromScores:
    """predict / predict_proba of a model whose `predict_raw` gives values
    (regression), P(class 1) (binary) or class probabilities (multiclass), as
    LightGBM's predict does; `n_classes` is 0 for regression."""

    n_classes: int

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.n_classes:
            return np.argmax(self.predict_proba(X), axis=1)
        return self.predict_raw(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = self.predict_raw(X)
        if self.n_classes == 2:
            return np.column_stack([1.0 - p, p])
        return p.reshape(len(X), self.n_classes)


class LGBModel(LabelsFromScores):
    """A LightGBM model being configured or fitted: `params` for lightgbm.train,
    `num_round` rounds, and after `fit` the Booster."""

    def __init__(self, params: dict[str, Any], num_round: int, n_classes: int,
                 class_weight: str | None = None) -> None:
        self.params = params
        self.num_round = num_round
        self.n_classes = n_classes
        self.class_weight = class_weight
        self.n_jobs = 1
        self.booster: Any = None
        self.classes_ = np.arange(n_classes) if n_classes else None

    def fit(self, X: np.ndarray, y: np.ndarray, deadline: float | None = None, nthread: int = 1) -> LGBModel:
        import lightgbm as lgb

        params = {**self.params, "num_threads": nthread}
        weight = compute_sample_weight(self.class_weight, y) if self.class_weight else None
        train = lgb.Dataset(X, label=y, weight=weight, params={"verbose": -1, "max_bin": params.get("max_bin", 255)},
                            free_raw_data=True)

        stopped: list[int] = []

        def stop(env: Any) -> None:
            if deadline is not None and time.monotonic() > deadline:
                stopped.append(env.iteration + 1)
                # lgb.train ends there and returns the rounds grown so far
                raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)

        self.booster = lgb.train(params, train, num_boost_round=self.num_round, callbacks=[stop])
        if stopped:
            self.num_round = stopped[0]  # (BoostedTrees.stopped_fit)
            raise TrialInterrupted()
        return self

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(X, num_threads=1), dtype=np.float64)

    @property
    def feature_importances_(self) -> np.ndarray:
        return np.asarray(self.booster.feature_importance("gain"), dtype=np.float64)

    def treelite_model(self) -> tuple[Any, str, str]:
        """(Treelite model, input precision, family) for compiler/artifact.py."""
        import treelite

        return treelite.frontend.from_lightgbm(self.booster), "float64", "LightGBM"


class LightGBM(BoostedTrees):
    """Leaf-wise gradient-boosted trees by LightGBM (AUTO only)."""

    model_type = "LIGHTGBM"
    grow_attr = "num_round"

    def space(self, ctx: Context) -> list[Param]:
        leaf_hi = max(4, min(256, ctx.n_rows // 4))
        child_hi = max(2, min(200, ctx.n_rows // 10))
        rounds_hi = LONG_ROUNDS if ctx.budget >= LONG_BUDGET_SECONDS else ROUNDS
        return [
            Param("num_round", 100, 20, rounds_hi, log=True, integer=True),
            Param("learning_rate", 0.1, 0.01, 0.5, log=True),
            Param("num_leaves", min(31, leaf_hi), 4, leaf_hi, log=True, integer=True),
            Param("min_child_samples", min(20, child_hi), 2, child_hi, log=True, integer=True),
            Param("colsample_bytree", 1.0, 0.2, 1.0),
            Param("max_bin", 255, 31, 1023, log=True, integer=True),
            Param("reg_alpha", 1e-3, 1e-3, 10.0, log=True),
            Param("reg_lambda", 1e-3, 1e-3, 10.0, log=True),
            *self.class_weight_param(ctx),
        ]

    def refit_configs(self, configs: list[dict[str, Any]], ctx: Context, rows: int) -> list[dict[str, Any]]:
        """Rounds grown by rows / fold rows (a fold's model stopped where its rows
        called for; more rows carry more rounds at the same learning rate), all the
        configurations together within MAX_MODEL_LEAVES. Not a NUM_ROUND the
        statement gave."""
        factor = self.refit_growth(rows, ctx)
        if factor <= 1.0:
            return configs
        total = sum(model_leaves(p, ctx.n_classes) for p in configs)
        factor = min(factor, MAX_MODEL_LEAVES / max(1, total))
        return [{**p, "num_round": max(1, int(int(p.get("num_round", 100)) * factor))} for p in configs]

    def refit_growth(self, rows: int, ctx: Context) -> float:
        if not REFIT_GROWS_ROUNDS or "num_round" in ctx.fixed or rows <= ctx.n_rows:
            return 1.0
        return rows / ctx.n_rows

    def within_limits(self, params: dict[str, Any], ctx: Context) -> bool:
        return model_leaves(params, ctx.n_classes) <= MAX_MODEL_LEAVES

    def size(self, params: dict[str, Any]) -> float:
        """Rounds times leaves (per 31 leaves, the default): a random configuration of
        1000 rounds of 256 leaves costs ~80 times the default, and the search skips it
        when the time left cannot hold it."""
        return float(params.get("num_round", 100)) * float(params.get("num_leaves", 31)) / 31.0

    def build(self, params: dict[str, Any], ctx: Context) -> LGBModel:
        if ctx.problem_type == REGRESSION:
            kw: dict[str, Any] = {"objective": "regression"}
            n_classes = 0
        elif ctx.n_classes == 2:
            kw, n_classes = {"objective": "binary"}, 2
        else:
            kw, n_classes = {"objective": "multiclass", "num_class": ctx.n_classes}, ctx.n_classes
        kw.update({k: v for k, v in params.items() if k not in ("num_round", "class_weight")})
        if "max_depth" in kw and kw["max_depth"] is None:  # MAX_DEPTH 0: no limit
            kw["max_depth"] = -1
        kw.update(seed=ctx.seed, deterministic=True, force_row_wise=True, verbose=-1)
        est = LGBModel(kw, int(params.get("num_round", 100)), n_classes, class_weight=params.get("class_weight"))
        est.n_jobs = ctx.n_jobs
        return est
