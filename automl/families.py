"""Estimator families: what is searched, how it is built, fitted and exported.

Each family is one scikit-learn estimator type behind a small interface (in the
spirit of FLAML's learners, with no code of theirs): a search space with a strong,
cheap starting point, `build` (params -> unfitted estimator), `fit` (growing the
ensemble/epochs in chunks so a deadline can stop it cleanly) and `export` (fitted
estimator -> what compiler/ reads: the tree ensemble itself, or a JSON dict).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.utils.class_weight import compute_sample_weight
from threadpoolctl import threadpool_limits

from .problem import CLUSTERING, REGRESSION

#: Compile-size guard: Treelite/TL2cgen turn every node into C code, so forests are
#: capped in trees and leaves (no effect on small data, where trees are smaller).
MAX_FOREST_TREES = 300
MAX_FOREST_LEAVES = 8192
#: a budget (MAX_RUNTIME) of at least this many seconds is long: LightGBM's rounds
#: range widens (automl/lgbm.py)
LONG_BUDGET_SECONDS = 60.0
#: matrices smaller than this are fitted single-threaded (see Family.fit)
PARALLEL_MIN_CELLS = 500_000


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the convergence/fit warnings of trial fits (the leaderboard says how
    a trial did). Warning filters are process-wide: code that fits in threads enters
    this once around the threads too, so no thread restores a filter list without it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


class TrialInterrupted(Exception):
    """A fit passed its deadline; the trial is discarded."""


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter. Numeric ones live on [low, high] (log-scaled when
    `log`); `choices` makes it categorical. `init` is the starting value."""

    name: str
    init: Any
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    def to_unit(self, value: Any) -> float:
        lo, hi, v = self.low, self.high, float(value)
        if self.log:
            lo, hi, v = math.log(lo), math.log(hi), math.log(max(v, self.low))
        return 0.0 if hi == lo else min(1.0, max(0.0, (v - lo) / (hi - lo)))

    def from_unit(self, u: float) -> Any:
        u = min(1.0, max(0.0, u))
        if self.log:
            v = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            v = self.low + u * (self.high - self.low)
        if self.integer:
            return int(round(v))
        return float(f"{v:.4g}")


@dataclass
class Context:
    """Facts about the data a family needs to size its space."""

    problem_type: str
    n_rows: int
    n_features: int
    n_classes: int
    seed: int
    n_jobs: int
    imbalanced: bool = False
    balance_by_default: bool = False
    fixed: dict[str, Any] = field(default_factory=dict)
    #: the HYPERPARAMETERS table of the model type as plain data ({KEY: {"low", "high",
    #: "default", ...}}), when the job was given one: searched ranges stay inside it
    table: dict[str, Any] | None = None
    #: MAX_RUNTIME in seconds (0: not known); from LONG_BUDGET_SECONDS on, a family
    #: may search a wider space (automl/lgbm.py: more rounds)
    budget: float = 0.0


class Family:
    """One estimator type: its search space, construction, deadline-aware fit and
    export. Subclasses set `model_type` (the contract's name) and `encoding` (which
    preprocessing spec its matrix comes from: 'tree' or 'dense')."""

    model_type = ""
    encoding = "tree"
    #: the attribute that grows in chunks under a deadline (None: one-shot fit)
    grow_attr: str | None = None
    grow_chunk = 0
    #: warm-started fits count `grow_attr` in total (ensembles) or per call (MLP epochs)
    cumulative = True
    #: False for a baseline: scored once at full fidelity, never screened or tuned
    searched = True

    def space(self, ctx: Context) -> list[Param]:
        raise NotImplementedError

    def build(self, params: dict[str, Any], ctx: Context) -> Any:
        raise NotImplementedError

    def initial(self, ctx: Context) -> dict[str, Any]:
        """The starting configuration: every param at its init, user-fixed ones kept."""
        params = {p.name: p.init for p in self.space(ctx)}
        params.update(ctx.fixed)
        return params

    def refit_configs(self, configs: list[dict[str, Any]], ctx: Context, rows: int) -> list[dict[str, Any]]:
        """The configurations a searched model's refit on `rows` rows trains (an
        ensemble's members together), after they were validated on folds of
        `ctx.n_rows` rows: as they are."""
        return configs

    def refit_growth(self, rows: int, ctx: Context) -> float:
        """How many times longer each fit of `refit_configs` takes than a fold's
        fit, beyond the rows themselves (the search keeps the time)."""
        return 1.0

    def within_limits(self, params: dict[str, Any], ctx: Context) -> bool:
        """Whether the model this configuration makes is small enough to keep (the
        search never runs one that is not; automl/lgbm.py bounds its leaves)."""
        return True

    def class_weight_param(self, ctx: Context) -> list[Param]:
        if ctx.problem_type in (REGRESSION, CLUSTERING) or not ctx.imbalanced:
            return []
        init = "balanced" if ctx.balance_by_default else None
        return [Param("class_weight", init, choices=(None, "balanced"))]

    def fit(self, est: Any, X: np.ndarray, y: np.ndarray, deadline: float) -> Any:
        """Fit, growing `grow_attr` in chunks and stopping at `deadline` (monotonic)."""
        # OpenMP/BLAS threads cost more than they give on small matrices, and on a
        # busy machine their spin-waiting makes small fits ~10x slower
        threads = 1 if X.size < PARALLEL_MIN_CELLS else None
        with quiet(), threadpool_limits(limits=threads):
            if self.grow_attr is None:
                est.fit(X, y, **self.fit_kwargs(est, y))
                return est
            total = int(getattr(est, self.grow_attr))
            done = 0
            per_unit: float | None = None
            est.set_params(warm_start=True)
            while done < total:
                now = time.monotonic()
                if now > deadline:
                    raise TrialInterrupted()
                step = self._next_step(total - done, per_unit, deadline - now)
                done += step
                est.set_params(**{self.grow_attr: done if self.cumulative else step})
                est.fit(X, y, **self.fit_kwargs(est, y))
                per_unit = (time.monotonic() - now) / step
                if self.stopped_early(est, done):
                    break
            est.set_params(warm_start=False, **{self.grow_attr: done})
            return est

    def _next_step(self, remaining: int, per_unit: float | None, time_left: float) -> int:
        """How many trees/rounds/epochs to add in the next warm-started fit.

        Ensembles grown by warm start come out identical however the growth is
        chunked, so their chunks are sized by time: at most a quarter of the time
        left, which keeps a deadline overrun to a fraction of a second. MLP epochs
        are not chunk-invariant (each fit call reshuffles), so they keep a fixed size
        and stay deterministic."""
        if not self.cumulative:
            return min(self.grow_chunk, remaining)
        if per_unit is None:
            return min(remaining, max(1, self.grow_chunk // 4))
        seconds = max(0.05, min(2.0, 0.25 * time_left))
        return int(min(remaining, max(1, seconds / max(per_unit, 1e-9))))

    def fit_kwargs(self, est: Any, y: np.ndarray) -> dict[str, Any]:
        return {}

    def size(self, params: dict[str, Any]) -> float:
        """How much work a configuration is, relative to others of the family (the
        search predicts a trial's seconds from it and skips one that cannot fit)."""
        return float(params.get(self.grow_attr, 100)) if self.grow_attr else 100.0

    def stopped_early(self, est: Any, done: int) -> bool:
        return False

    def stopped_fit(self, est: Any) -> Any | None:
        """`est` after `fit` raised TrialInterrupted at its deadline: the model with
        what it grew by then (`grow_attr` counting it), or None if it grew nothing.
        Here, a scikit-learn estimator warm-started in chunks (fit above)."""
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        try:
            check_is_fitted(est)
        except (NotFittedError, TypeError):
            return None
        est.set_params(warm_start=False)
        return est

    def export(self, est: Any) -> Any:
        """What compiler/ reads: tree ensembles as they are."""
        return est


def _classifier(ctx: Context) -> bool:
    return ctx.problem_type not in (REGRESSION, CLUSTERING)


class GradientBoosting(Family):
    """scikit-learn's histogram gradient boosting (not a MODEL_TYPE; kept for the
    AUTO benchmark's comparison, see docs/automl.md)."""

    model_type = "HIST_GRADIENT_BOOSTING"
    grow_attr = "max_iter"
    grow_chunk = 20

    def space(self, ctx: Context) -> list[Param]:
        leaf_hi = max(4, min(200, ctx.n_rows // 8))
        return [
            Param("max_iter", 100, 20, 1000, log=True, integer=True),
            Param("learning_rate", 0.1, 0.01, 1.0, log=True),
            Param("max_leaf_nodes", 31, 4, 128, log=True, integer=True),
            Param("min_samples_leaf", min(20, leaf_hi), 2, leaf_hi, log=True, integer=True),
            Param("l2_regularization", 1e-6, 1e-6, 10.0, log=True),
            Param("max_features", 1.0, 0.3, 1.0),
            *self.class_weight_param(ctx),
        ]

    def build(self, params: dict[str, Any], ctx: Context) -> Any:
        kw = dict(params)
        kw.setdefault("early_stopping", False)
        cls = HistGradientBoostingClassifier if _classifier(ctx) else HistGradientBoostingRegressor
        return cls(random_state=ctx.seed, **kw)

    def stopped_early(self, est: Any, done: int) -> bool:
        return est.n_iter_ < done


class _Forest(Family):
    grow_attr = "n_estimators"
    grow_chunk = 10
    classes: tuple[type, type] = (RandomForestClassifier, RandomForestRegressor)

    def space(self, ctx: Context) -> list[Param]:
        p = max(1, ctx.n_features)
        mf = (1.0 / math.sqrt(p)) if _classifier(ctx) else 1.0
        return [
            Param("n_estimators", 100, 16, MAX_FOREST_TREES, log=True, integer=True),
            Param("max_features", float(f"{max(mf, 1.0 / p):.4g}"), min(1.0, 1.0 / p), 1.0),
            Param("min_samples_leaf", 1, 1, max(2, min(50, ctx.n_rows // 20)), log=True, integer=True),
            *self.class_weight_param(ctx),
        ]

    def build(self, params: dict[str, Any], ctx: Context) -> Any:
        kw = dict(params)
        kw.setdefault("max_leaf_nodes", MAX_FOREST_LEAVES)
        cls = self.classes[0] if _classifier(ctx) else self.classes[1]
        jobs = ctx.n_jobs if ctx.n_rows * ctx.n_features >= PARALLEL_MIN_CELLS else 1
        return cls(random_state=ctx.seed, n_jobs=jobs, **kw)


class RandomForest(_Forest):
    model_type = "RANDOM_FOREST"


class ExtraTrees(_Forest):
    model_type = "EXTRA_TREES"
    classes = (ExtraTreesClassifier, ExtraTreesRegressor)


class Linear(Family):
    """Regularised linear/logistic regression: Redshift's LINEAR_LEARNER."""

    model_type = "LINEAR_LEARNER"
    encoding = "dense"

    def space(self, ctx: Context) -> list[Param]:
        return [Param("wd", 1.0, 1e-4, 1e3, log=True), *self.class_weight_param(ctx)]

    def build(self, params: dict[str, Any], ctx: Context) -> Any:
        wd = float(params.get("wd", 1.0))
        l1 = float(params.get("l1", 0.0))
        epochs = int(params.get("epochs", 1000))
        if _classifier(ctx):
            if l1 > 0:
                return LogisticRegression(C=1.0 / (wd + l1), l1_ratio=l1 / (wd + l1), solver="saga",
                                          max_iter=epochs, class_weight=params.get("class_weight"),
                                          random_state=ctx.seed)
            return LogisticRegression(C=1.0 / wd, max_iter=epochs, class_weight=params.get("class_weight"))
        if l1 > 0:
            return ElasticNet(alpha=(wd + l1) / max(1, ctx.n_rows), l1_ratio=l1 / (wd + l1),
                              max_iter=epochs, random_state=ctx.seed)
        return Ridge(alpha=wd)

    def export(self, est: Any) -> dict[str, Any]:
        coef = np.atleast_2d(np.asarray(est.coef_, dtype=np.float64))
        intercept = np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64))
        if isinstance(est, LogisticRegression):
            link = "logistic" if coef.shape[0] == 1 else "softmax"
        else:
            link = "identity"
        return {"kind": "linear", "coef": coef.tolist(), "intercept": intercept.tolist(), "link": link}


class NeuralNet(Family):
    """Multi-layer perceptron (Redshift's MLP), trained epoch-chunk by chunk."""

    model_type = "MLP"
    encoding = "dense"
    grow_attr = "max_iter"
    grow_chunk = 25
    cumulative = False

    def space(self, ctx: Context) -> list[Param]:
        return [
            Param("hidden_layer_sizes", (64,), choices=((64,), (128,), (64, 64), (128, 64))),
            Param("alpha", 1e-4, 1e-6, 1e-1, log=True),
            Param("learning_rate_init", 1e-3, 1e-4, 3e-2, log=True),
            Param("max_iter", 200, 50, 600, log=True, integer=True),
            *self.class_weight_param(ctx),
        ]

    def build(self, params: dict[str, Any], ctx: Context) -> Any:
        kw = dict(params)
        weight = kw.pop("class_weight", None)
        kw.setdefault("batch_size", min(256, max(16, ctx.n_rows // 10)))
        cls = MLPClassifier if _classifier(ctx) else MLPRegressor
        est = cls(random_state=ctx.seed, tol=1e-5, n_iter_no_change=kw.pop("n_iter_no_change", 15), **kw)
        est._mlproxy_class_weight = weight
        return est

    def fit(self, est: Any, X: np.ndarray, y: np.ndarray, deadline: float) -> Any:
        if isinstance(est, MLPRegressor):
            # Fit on a standardised target, then fold the scaling into the output
            # layer so the network (and its JSON export) predicts in target units.
            mean, std = float(np.mean(y)), float(np.std(y)) or 1.0
            super().fit(est, X, (y - mean) / std, deadline)
            est.coefs_[-1] = est.coefs_[-1] * std
            est.intercepts_[-1] = est.intercepts_[-1] * std + mean
            return est
        return super().fit(est, X, y, deadline)

    def fit_kwargs(self, est: Any, y: np.ndarray) -> dict[str, Any]:
        weight = getattr(est, "_mlproxy_class_weight", None)
        return {"sample_weight": compute_sample_weight(weight, y)} if weight else {}

    def stopped_early(self, est: Any, done: int) -> bool:
        return est._no_improvement_count > est.n_iter_no_change

    def export(self, est: Any) -> dict[str, Any]:
        layers = [{"weights": np.asarray(w).tolist(), "bias": np.asarray(b).tolist()}
                  for w, b in zip(est.coefs_, est.intercepts_)]
        return {"kind": "mlp", "layers": layers, "activation": est.activation, "out": est.out_activation_}


class KMeansFamily(Family):
    """k-means clustering (Redshift's KMEANS); K from the K option/hyperparameter."""

    model_type = "KMEANS"
    encoding = "dense"

    def space(self, ctx: Context) -> list[Param]:
        return [Param("n_clusters", 8, 2, 20, integer=True)]

    def build(self, params: dict[str, Any], ctx: Context) -> Any:
        kw = dict(params)
        kw.setdefault("n_init", 4)
        return KMeans(random_state=ctx.seed, **kw)

    def export(self, est: Any) -> dict[str, Any]:
        return {"kind": "kmeans", "centroids": np.asarray(est.cluster_centers_, dtype=np.float64).tolist()}


class ConstantModel:
    """The simplest baseline: the training rows' class shares, or their mean."""

    def __init__(self, problem_type: str, n_classes: int) -> None:
        self.problem_type = problem_type
        self.n_classes = n_classes

    def fit(self, X: np.ndarray, y: np.ndarray) -> ConstantModel:
        self.n_features_in_ = X.shape[1]
        if self.problem_type == REGRESSION:
            self.value_ = float(np.mean(y))
        else:
            counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=self.n_classes).astype(np.float64)
            self.shares_ = counts / counts.sum()
            self.classes_ = np.arange(self.n_classes)
        self.coef_ = np.zeros((1, self.n_features_in_))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.tile(self._export_proba(), (len(X), 1))

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.problem_type == REGRESSION:
            return np.full(len(X), self.value_)
        return np.full(len(X), int(np.argmax(self.shares_)))

    def _export_proba(self) -> np.ndarray:
        """The shares as the exported linear model computes them (its link of its
        intercepts), so the reference and the compiled model agree to the last bit."""
        from scipy.special import expit, softmax

        b = self._intercept()
        if self.n_classes == 2:
            p = float(expit(b[0]))
            return np.array([1.0 - p, p])
        return softmax(b)

    def _intercept(self) -> np.ndarray:
        if self.problem_type == REGRESSION:
            return np.array([self.value_])
        p = np.clip(self.shares_, 1e-12, 1.0)
        if self.n_classes == 2:
            return np.array([float(np.log(p[1] / p[0]))])
        return np.log(p)


class Constant(Family):
    """The constant baseline (class shares, or the mean): screened first in AUTO, never
    tuned, so the model AUTO keeps is never worse in validation than predicting
    without the inputs. Exported as a linear model with zero coefficients."""

    model_type = "CONSTANT"
    encoding = "dense"
    searched = False

    def space(self, ctx: Context) -> list[Param]:
        return []

    def build(self, params: dict[str, Any], ctx: Context) -> ConstantModel:
        return ConstantModel(ctx.problem_type, ctx.n_classes if _classifier(ctx) else 0)

    def export(self, est: ConstantModel) -> dict[str, Any]:
        outputs = 1 if est.problem_type == REGRESSION or est.n_classes == 2 else est.n_classes
        link = "identity" if est.problem_type == REGRESSION else ("logistic" if est.n_classes == 2 else "softmax")
        return {"kind": "linear", "coef": np.zeros((outputs, est.n_features_in_)).tolist(),
                "intercept": est._intercept().tolist(), "link": link}
