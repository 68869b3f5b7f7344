"""An ensemble of the search's best LightGBM configurations, as one tree model.

A weighted average of boosted models' margins is itself a boosted model: every
member's leaf values scaled by its weight, the trees put side by side
(`treelite.Model.concatenate`). So the ensemble compiles into one library and costs
nothing new at inference beyond its trees. Members are LightGBM trials only: they
share the input precision (float64) and the margin space (raw score, logit,
softmax logits); XGBoost compares in float32 and forests average probabilities, so
neither can join the same Treelite model.

Selection (Caruana et al., "Ensemble selection from libraries of models", 2004, as
AutoGluon and auto-sklearn do): from the OOF_KEPT best LightGBM trials, greedy
forward selection with replacement on their validation predictions (the search's
own folds, so no row is scored by a model that trained on it), blending margins
(logits of the probabilities: their weighted mean is the margin blend's, exactly
for softmax up to each row's constant); the best prefix of MAX_STEPS steps gives
the weights. Its distinct members hold at most lgbm.MAX_MODEL_LEAVES leaves in all
(as one configuration may, so compiling and explaining it costs no more), and it
is kept only if it has two distinct members and beats the search's winner in
validation by more than the search's own tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import lgbm
from .lgbm import LabelsFromScores, model_leaves
from .metrics import score, tune_threshold
from .problem import BINARY, Objective

#: the family whose trials can be blended (see the module docstring)
FAMILY = "LIGHTGBM"
#: greedy steps (a member chosen k times of MAX_STEPS has weight k / steps)
MAX_STEPS = 10
#: relative improvement over the winner's validation score an ensemble must make
REL_TOL = 1e-4
_EPS = 1e-12


@dataclass(frozen=True)
class Selection:
    """Members (trials) and weights summing to 1; the blend's validation score and
    decision threshold (binary, tuned on the blended validation predictions)."""

    members: tuple[Any, ...]
    weights: tuple[float, ...]
    score: float
    threshold: float | None

    def describe(self, winner_score: float, metric: str) -> str:
        parts = ", ".join(f"trial {t.index} x{w:.2f}" for t, w in zip(self.members, self.weights))
        return (f"ensemble: {len(self.members)} LightGBM configurations ({parts}), one tree model; validation "
                f"{metric} {self.score:.6g} against the best single model's {winner_score:.6g}")


def candidates_of(trials: Sequence[Any]) -> list[Any]:
    """The trials an ensemble is selected from: full-fidelity LightGBM trials whose
    validation predictions the search kept (its OOF_KEPT best)."""
    return [t for t in trials if t.family == FAMILY and t.fidelity == 1.0 and t.result.oof is not None]


def select(trials: Sequence[Any], winner: Any, y: np.ndarray, objective: Objective, problem_type: str,
           n_classes: int) -> Selection | None:
    """The ensemble of LightGBM trials (Search.trials, with validation predictions
    in `result.oof` for the rows whose targets are `y`) that beats `winner`, or None."""
    candidates = candidates_of(trials)
    if len(candidates) < 2:
        return None
    candidates.sort(key=lambda t: (-objective.utility(t.score), t.index))
    margins = [_margin(t.result.oof, n_classes) for t in candidates]
    total = np.zeros_like(margins[0])
    counts = np.zeros(len(candidates), dtype=np.int64)
    best: tuple[float, np.ndarray, float | None] | None = None
    sizes = [model_leaves(t.params, n_classes) for t in candidates]
    for step in range(1, MAX_STEPS + 1):
        tried = []
        held = sum(size for size, k in zip(sizes, counts) if k)
        for i, z in enumerate(margins):
            if not counts[i] and held + sizes[i] > lgbm.MAX_MODEL_LEAVES:
                continue
            value, threshold = _score((total + z) / step, y, objective, problem_type, n_classes)
            tried.append((objective.utility(value), -i, value, threshold))
        if not tried:
            break
        _, neg_i, value, threshold = max(tried)
        counts[-neg_i] += 1
        total += margins[-neg_i]
        if best is None or objective.utility(value) > objective.utility(best[0]):
            best = (value, counts.copy(), threshold)
    if best is None:  # no candidate within the size limit
        return None
    value, chosen, threshold = best
    members = np.flatnonzero(chosen)
    gain = objective.utility(value) - objective.utility(winner.score)
    if len(members) < 2 or gain <= REL_TOL * max(_EPS, abs(winner.score)):
        return None
    weights = chosen[members] / chosen.sum()
    return Selection(tuple(candidates[i] for i in members), tuple(float(w) for w in weights), float(value),
                     threshold)


def _margin(pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Validation predictions in the margin space the blend averages in."""
    if not n_classes:
        return np.asarray(pred, dtype=np.float64)
    p = np.clip(np.asarray(pred, dtype=np.float64), _EPS, 1.0 - _EPS)
    if n_classes == 2:
        return np.log(p[:, 1]) - np.log(p[:, 0])
    return np.log(p)


def _from_margin(z: np.ndarray, n_classes: int) -> np.ndarray:
    """Blended margins -> values (regression), P(class 1) (binary) or class
    probabilities: what LightGBM's own predict gives (LabelsFromScores' input)."""
    if n_classes == 2:
        return 1.0 / (1.0 + np.exp(-z))
    if n_classes:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return z


def _score(z: np.ndarray, y: np.ndarray, objective: Objective, problem_type: str,
           n_classes: int) -> tuple[float, float | None]:
    out = _from_margin(z, n_classes)
    if n_classes == 2:
        out = np.column_stack([1.0 - out, out])
    threshold = tune_threshold(objective, y, out) if problem_type == BINARY else None
    return score(objective, y, out, problem_type, threshold), threshold


class LGBBlend(LabelsFromScores):
    """LightGBM models (lgbm.LGBModel, fitted) averaged in margin space with
    `weights`: predict/predict_proba as the search's evaluator calls them, and
    `treelite_model()`, the members' trees with leaf values scaled by their weights,
    for the compiler (docs/model-contract.md: a model with `treelite_model()`)."""

    def __init__(self, members: Sequence[Any], weights: Sequence[float], n_classes: int) -> None:
        self.members = list(members)
        self.weights = [float(w) for w in weights]
        self.n_classes = n_classes
        self.classes_ = np.arange(n_classes) if n_classes else None

    def margin(self, X: np.ndarray) -> np.ndarray:
        z = sum(w * np.asarray(m.booster.predict(X, raw_score=True, num_threads=1), dtype=np.float64)
                for m, w in zip(self.members, self.weights))
        return z if self.n_classes <= 2 else z.reshape(len(X), self.n_classes)

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        return _from_margin(self.margin(X), self.n_classes)

    @property
    def feature_importances_(self) -> np.ndarray:
        return sum(w * m.feature_importances_ for m, w in zip(self.members, self.weights))

    def treelite_model(self) -> tuple[Any, str, str]:
        """(Treelite model, input precision, family) for compiler/artifact.py."""
        import treelite

        models = []
        for member, weight in zip(self.members, self.weights):
            model, precision, _ = member.treelite_model()
            for t in range(model.num_tree):
                tree = model.get_tree_accessor(t)
                tree.set_field("leaf_value", tree.get_field("leaf_value") * weight)
            models.append(model)
        base = sum(w * np.asarray(m.get_header_accessor().get_field("base_scores"), dtype=np.float64)
                   for m, w in zip(models, self.weights))
        merged = treelite.Model.concatenate(models)
        merged.get_header_accessor().set_field("base_scores", base)
        return merged, precision, "LightGBM"
