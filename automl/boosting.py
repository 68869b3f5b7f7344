"""MODEL_TYPE XGBOOST: XGBoost itself, with Redshift's hyperparameters and objectives.

The family trains with `xgboost.train` on the preprocessed matrix (the tree
encoding), so a HYPERPARAMETERS clause means what it means in Redshift: each key is
the XGBoost parameter of that name (NUM_ROUND is the number of boosting rounds,
EARLY_STOPPING_ROUNDS stops on a seeded tenth of the training rows), and every key
left out keeps XGBoost's default, which is Redshift's (the table in
proxy/ml_statements/hyperparameters.py, checked against XGBoost's own defaults by
tests/automl/test_xgboost.py).

OBJECTIVE may be one of Redshift's XGBoost objectives (XGBOOST_OBJECTIVES); it
fixes the training loss and the problem type it serves. Without one, the loss is
reg:squarederror, binary:logistic or multi:softprob for the problem type.

`XGBModel` is the fitted model: the Booster plus the scikit-learn-like
predict/predict_proba the search's evaluator calls, computed by XGBoost itself (the
oracle compiler's equivalence tests compare against).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.utils.class_weight import compute_sample_weight

from .errors import InvalidOption
from .families import PARALLEL_MIN_CELLS, Context, Family, Param, TrialInterrupted
from .objectives import DEFAULT_LOSS
from .problem import MULTICLASS, REGRESSION

#: Redshift's ranges for the searched keys (its "XGBoost parameters" table; the
#: proxy's HYPERPARAMETERS table is the same data and, when the proxy starts the job,
#: is what the search takes: TrainOptions.hyperparameter_table)
REDSHIFT_RANGES = {
    "NUM_ROUND": (1, 10_000), "MAX_DEPTH": (0, 10), "ETA": (0.1, 0.5), "GAMMA": (0, 5),
    "MIN_CHILD_WEIGHT": (0, 120), "SUBSAMPLE": (0.5, 1), "COLSAMPLE_BYTREE": (0.5, 1),
    "COLSAMPLE_BYLEVEL": (0.1, 1), "COLSAMPLE_BYNODE": (0.1, 1), "ALPHA": (0, 1000),
    "LAMBDA": (0, 1000), "MAX_DELTA_STEP": (0, 10),
}
#: a tenth of the training rows is the evaluation set for EARLY_STOPPING_ROUNDS
EARLY_STOPPING_FRACTION = 0.1


def xgboost_fixed(fixed: dict[str, Any], loss: str | None, problem_type: str, n_classes: int,
                  explicit: bool, report: list[str]) -> dict[str, Any]:
    """The XGBOOST family's fixed parameters: the hyperparameters given plus the loss,
    with NUM_CLASS checked against the objective and the target (InvalidOption)."""
    out = dict(fixed)
    num_class = out.pop("num_class", None)
    if loss == "multi:softmax" and explicit and num_class is None:
        raise InvalidOption("OBJECTIVE 'multi:softmax' needs the hyperparameter NUM_CLASS "
                            f"(the target has {n_classes} classes)",
                            hint=f"add HYPERPARAMETERS DEFAULT EXCEPT (NUM_CLASS '{n_classes}')")
    if num_class is not None:
        if problem_type != MULTICLASS:
            report.append(f"hyperparameter NUM_CLASS {num_class} not used: {problem_type} has no NUM_CLASS")
        elif num_class != n_classes:
            raise InvalidOption(f"hyperparameter NUM_CLASS is {num_class}, but the target has {n_classes} classes",
                                hint=f"give NUM_CLASS '{n_classes}'")
    if loss is not None:
        out["objective"] = loss
    return out


class XGBModel:
    """An XGBoost model being configured or fitted: `params` for xgboost.train,
    `num_round` rounds, and after `fit` the Booster."""

    def __init__(self, params: dict[str, Any], num_round: int, n_classes: int,
                 early_stopping_rounds: int | None = None, seed: int = 0,
                 class_weight: str | None = None) -> None:
        self.params = params
        self.num_round = num_round
        self.n_classes = n_classes
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.class_weight = class_weight
        self.n_jobs = 1
        self.booster: Any = None
        self.classes_ = np.arange(n_classes) if n_classes else None

    @property
    def loss(self) -> str:
        return str(self.params["objective"])

    def fit(self, X: np.ndarray, y: np.ndarray, deadline: float | None = None, nthread: int = 1) -> XGBModel:
        import xgboost as xgb

        params = {**self.params, "nthread": nthread}
        weight = compute_sample_weight(self.class_weight, y) if self.class_weight else None
        evals: list[Any] = []
        rows = np.arange(len(y))
        if self.early_stopping_rounds:
            rng = np.random.default_rng([self.seed, 404])
            held = np.zeros(len(y), dtype=bool)
            held[rng.choice(len(y), max(1, int(EARLY_STOPPING_FRACTION * len(y))), replace=False)] = True
            rows = np.flatnonzero(~held)
            evals = [(xgb.DMatrix(X[held], label=y[held], nthread=nthread,
                                  weight=None if weight is None else weight[held]), "validation")]
        train = xgb.DMatrix(X[rows], label=y[rows], nthread=nthread, weight=None if weight is None else weight[rows])
        callbacks = [_deadline_callback(deadline)] if deadline is not None else []
        booster = xgb.train(params, train, num_boost_round=self.num_round, evals=evals,
                            early_stopping_rounds=self.early_stopping_rounds, verbose_eval=False,
                            callbacks=callbacks)
        if callbacks and callbacks[0].stopped:
            # the rounds grown by the deadline stay (BoostedTrees.stopped_fit)
            self.booster, self.num_round = booster, booster.num_boosted_rounds()
            raise TrialInterrupted()
        if self.early_stopping_rounds and booster.best_iteration + 1 < booster.num_boosted_rounds():
            booster = booster[: booster.best_iteration + 1]
        self.booster = booster
        return self

    def gain_importances(self) -> np.ndarray:
        """Each feature's total split gain (XGBoost's 'total_gain'): the importances
        when the deadline leaves no time for permutation importances
        (automl/importance.py). Features are f0..fn-1: the matrix is a numpy array."""
        out = np.zeros(self.booster.num_features())
        for name, value in self.booster.get_score(importance_type="total_gain").items():
            out[int(name[1:])] = value
        return out

    def margin(self, X: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        return np.asarray(self.booster.predict(xgb.DMatrix(X, nthread=1), output_margin=True), dtype=np.float64)

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """XGBoost's own predict (values, labels for hinge/softmax, probabilities)."""
        import xgboost as xgb

        return np.asarray(self.booster.predict(xgb.DMatrix(X, nthread=1)), dtype=np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.n_classes:
            return np.argmax(self.predict_proba(X), axis=1)
        return self.predict_raw(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        loss = self.loss
        if loss == "binary:logistic":
            p = self.predict_raw(X)
            return np.column_stack([1.0 - p, p])
        if loss == "binary:hinge":
            p = self.predict_raw(X)  # XGBoost's labels, 0 or 1
            return np.column_stack([1.0 - p, p])
        if loss == "multi:softprob":
            return self.predict_raw(X).reshape(len(X), self.n_classes)
        if loss == "multi:softmax":
            z = self.margin(X).reshape(len(X), self.n_classes)
            z = np.exp(z - z.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)
        raise TypeError(f"an XGBoost model with objective {loss} has no class probabilities")

    def model_json(self) -> bytes:
        """The Booster as XGBoost's JSON model (what compiler imports with Treelite)."""
        return bytes(self.booster.save_raw("json"))


def _deadline_callback(deadline: float) -> Any:
    import xgboost as xgb

    class Deadline(xgb.callback.TrainingCallback):
        def __init__(self) -> None:
            super().__init__()
            self.stopped = False

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            if time.monotonic() > deadline:
                self.stopped = True
                return True
            return False

    return Deadline()


class BoostedTrees(Family):
    """A family whose estimator (XGBModel, lgbm.LGBModel) trains a booster itself,
    in `nthread` threads, stopping at the deadline; compiler/ reads the fitted model
    itself (XGBoost's JSON, or a Treelite model)."""

    def fit(self, est: Any, X: np.ndarray, y: np.ndarray, deadline: float) -> Any:
        # one thread for small matrices, as the other families (see Family.fit)
        nthread = 1 if X.size < PARALLEL_MIN_CELLS else est.n_jobs
        return est.fit(X, y, deadline, nthread)

    def stopped_fit(self, est: Any) -> Any | None:
        # the estimator keeps the booster of the rounds grown by the deadline, and
        # num_round counts them (not a scikit-learn estimator: no check_is_fitted)
        return est if est.booster is not None else None

    def export(self, est: Any) -> Any:
        return est


class XGBoost(BoostedTrees):
    """Gradient-boosted trees by XGBoost: Redshift's XGBOOST model type. Searched over
    Redshift's hyperparameters within Redshift's ranges; parameter names are
    XGBoost's (the leaderboard shows them)."""

    model_type = "XGBOOST"
    grow_attr = "num_round"

    def space(self, ctx: Context) -> list[Param]:
        r = _ranges(ctx)

        def param(name: str, key: str, init: Any, low: float, high: float, **kw: Any) -> Param:
            """Our search range clipped to the table's; the table's own range when the
            two do not meet (linear where it starts at 0)."""
            t_lo, t_hi = r.get(key, (low, high))
            lo, hi = max(t_lo, low), min(t_hi, high)
            if lo > hi:
                lo, hi = t_lo, t_hi
                kw["log"] = kw.get("log", False) and lo > 0
            init = min(max(init, lo), hi)
            return Param(name, int(round(init)) if kw.get("integer") else init, lo, hi, **kw)

        params = [
            param("num_round", "NUM_ROUND", 100, 20, 1000, log=True, integer=True),
            param("eta", "ETA", 0.3, 0.1, 0.5, log=True),
            param("max_depth", "MAX_DEPTH", 6, 2, 10, integer=True),
            param("min_child_weight", "MIN_CHILD_WEIGHT", 1.0, 0.5, min(120.0, max(1.0, ctx.n_rows / 20)),
                  log=True),
            param("subsample", "SUBSAMPLE", 1.0, 0.5, 1.0),
            param("colsample_bytree", "COLSAMPLE_BYTREE", 1.0, 0.5, 1.0),
            param("colsample_bylevel", "COLSAMPLE_BYLEVEL", 1.0, 0.3, 1.0),
            param("lambda", "LAMBDA", 1.0, 0.01, 100.0, log=True),
            param("alpha", "ALPHA", 0.001, 0.001, 10.0, log=True),
            param("gamma", "GAMMA", 0.0, 0.0, 5.0),
        ]
        return params + self.class_weight_param(ctx)

    def initial(self, ctx: Context) -> dict[str, Any]:
        """XGBoost's (and Redshift's) defaults: the configuration AUTO OFF trains."""
        params = {p.name: p.init for p in self.space(ctx)}
        params["alpha"] = 0.0
        params.update(ctx.fixed)
        return params

    def build(self, params: dict[str, Any], ctx: Context) -> XGBModel:
        kw = {k: v for k, v in params.items() if k not in _NOT_PARAMS}
        loss = ctx.fixed.get("objective") or DEFAULT_LOSS[ctx.problem_type]
        kw["objective"] = loss
        if loss.startswith("multi:"):
            kw["num_class"] = ctx.n_classes
        kw["seed"] = ctx.seed
        n_classes = ctx.n_classes if ctx.problem_type != REGRESSION else 0
        est = XGBModel(kw, int(params.get("num_round", 100)), n_classes, params.get("early_stopping_rounds"),
                       ctx.seed, class_weight=params.get("class_weight"))
        est.n_jobs = ctx.n_jobs
        return est



_NOT_PARAMS = ("num_round", "early_stopping_rounds", "class_weight", "num_class", "objective")


def _ranges(ctx: Context) -> dict[str, tuple[float, float]]:
    """Searched ranges: the HYPERPARAMETERS table the job was given, else Redshift's."""
    if not ctx.table:
        return dict(REDSHIFT_RANGES)
    return {key.upper(): (float(e["low"]), float(e["high"])) for key, e in ctx.table.items()
            if e.get("low") is not None and e.get("high") is not None}
