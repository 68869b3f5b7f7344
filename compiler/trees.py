"""Tree ensembles through Treelite: import, output layout, and margins -> outputs.

Both tree backends (the compiled library and treelite.gtil) produce Treelite margins;
the step from margins to probabilities/values is done once, here, in float64 numpy, with
the constants read from the Treelite model header. That keeps the two backends
identical and avoids GTIL's float32 softmax.

XGBoost models come through Treelite's XGBoost frontend from XGBoost's JSON
(`import_xgboost`); their postprocessors include `hinge` (binary:hinge: class 1 iff
the margin is positive) and `sigmoid` for a regression (reg:logistic).

Input precision matters for exact equivalence: scikit-learn's `tree` module
(RandomForest, ExtraTrees, GradientBoosting) casts X to float32 before comparing with
its float64 thresholds, while HistGradientBoosting compares float64 values. The
predictor rounds inputs the same way (see `round_inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import treelite

from .links import binary_proba, sigmoid, softmax

FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Treelite postprocessors whose formula is reproduced here
POSTPROCESSORS = ("identity", "identity_multiclass", "sigmoid", "softmax", "exponential", "hinge")
#: scikit-learn classes whose trees are evaluated on float32 inputs
_FLOAT32_TREE_CLASSES = ("RandomForest", "ExtraTrees", "GradientBoosting")


def import_sklearn(estimator: Any) -> tuple[treelite.Model, str]:
    """Treelite model plus input precision ('float32' | 'float64') for a fitted
    scikit-learn tree ensemble. Raises whatever Treelite raises for other objects."""
    import treelite.sklearn  # imported lazily: it pulls in scikit-learn

    name = type(estimator).__name__
    categorical = getattr(estimator, "is_categorical_", None)
    if categorical is not None and np.any(categorical):
        # Treelite sends categories unseen in training right; scikit-learn treats them
        # as missing. Not equivalent, so refused (automl encodes categories itself).
        raise ValueError(f"{name} with native categorical features is not supported")
    model = treelite.sklearn.import_model(estimator)
    if name == "GradientBoostingClassifier" and getattr(estimator, "loss", None) == "exponential":
        # scikit-learn's exponential (AdaBoost) loss gives P = expit(2 * raw); Treelite
        # records the plain sigmoid, so fix the checkpoint's header here.
        model.get_header_accessor().set_field("sigmoid_alpha", np.array([2.0], dtype=np.float32))
    hist = name.startswith("HistGradientBoosting")
    precision = "float32" if not hist and name.startswith(_FLOAT32_TREE_CLASSES) else "float64"
    return model, precision


def import_xgboost(model_json: bytes) -> tuple[treelite.Model, str]:
    """Treelite model plus input precision for an XGBoost model in XGBoost's JSON
    format (Treelite's XGBoost frontend; XGBoost 3.x JSON reads as is). XGBoost casts
    inputs to float32 and tests `x < threshold` on float32 thresholds, so the
    predictor rounds inputs to float32 as for scikit-learn's tree module."""
    return treelite.frontend.from_xgboost_json(bytearray(model_json)), "float32"


def round_inputs(X: np.ndarray, precision: str) -> np.ndarray:
    """X as the trees see it: float32-rounded (clamped to the float32 range, where every
    threshold lies, so huge values take the same branch as in float64) or unchanged."""
    if precision != "float32":
        return X
    return np.clip(X, -FLOAT32_MAX, FLOAT32_MAX).astype(np.float32).astype(np.float64)


@dataclass(frozen=True)
class TreeLayout:
    """What the margins of a Treelite model mean, read from its header."""

    n_features: int
    n_trees: int
    n_outputs: int
    postprocessor: str
    sigmoid_alpha: float
    #: per output: trees summed into it when the model averages (random forests), else 1
    divisor: np.ndarray
    base_scores: np.ndarray
    #: whether any divisor differs from 1 (forests), so the driver can skip the division
    averaged: bool = False

    @classmethod
    def of(cls, model: treelite.Model) -> TreeLayout:
        header = model.get_header_accessor()
        num_target = int(header.get_field("num_target")[0])
        num_class = header.get_field("num_class")
        if num_target != 1:
            raise ValueError(f"multi-target tree models are not supported (num_target={num_target})")
        n_out = int(num_class[0])
        post = header.get_field("postprocessor")
        if post not in POSTPROCESSORS:
            raise ValueError(f"Treelite postprocessor {post!r} is not supported; expected one of {POSTPROCESSORS}")
        class_id = np.asarray(header.get_field("class_id"), dtype=np.int64)
        if bool(header.get_field("average_tree_output")[0]):
            # a tree feeds every output (class_id -1) or just its own class
            divisor = np.array([np.sum((class_id == -1) | (class_id == k)) for k in range(n_out)], dtype=np.float64)
            divisor[divisor == 0] = 1.0
        else:
            divisor = np.ones(n_out)
        base = np.asarray(header.get_field("base_scores"), dtype=np.float64).reshape(-1)[:n_out]
        return cls(
            n_features=int(model.num_feature),
            n_trees=int(model.num_tree),
            n_outputs=n_out,
            postprocessor=post,
            sigmoid_alpha=float(header.get_field("sigmoid_alpha")[0]),
            divisor=divisor,
            base_scores=base,
            averaged=bool(np.any(divisor != 1.0)),
        )

    @property
    def can_overflow(self) -> bool:
        """Only exp() of a margin can leave the finite range; sums of finite leaves cannot."""
        return self.postprocessor == "exponential"

    def outputs(self, margins: np.ndarray, problem_type: str) -> np.ndarray:
        """Margins (n, n_outputs) -> probabilities (n, n_classes) or values (n,)."""
        post = self.postprocessor
        if post == "sigmoid":
            if problem_type.endswith("CLASSIFICATION"):
                return binary_proba(margins, self.sigmoid_alpha)
            return sigmoid(margins, self.sigmoid_alpha).reshape(-1)
        if post == "softmax":
            return softmax(margins)
        if post == "exponential":
            return np.exp(margins).reshape(-1)
        if post == "hinge":  # XGBoost's binary:hinge: label 1 iff the margin is > 0
            hit = (margins.reshape(-1) > 0.0).astype(np.float64)
            return np.column_stack([1.0 - hit, hit])
        if post == "identity" and self.n_outputs == 1:
            return margins.reshape(-1)
        return margins

    def check_problem(self, problem_type: str, n_classes: int) -> None:
        """Raise ValueError unless this layout yields what the problem type needs."""
        post, n_out = self.postprocessor, self.n_outputs
        if problem_type == "REGRESSION":
            # sigmoid: XGBoost's reg:logistic
            ok = n_out == 1 and post in ("identity", "exponential", "sigmoid")
        elif problem_type == "BINARY_CLASSIFICATION":
            ok = n_classes == 2 and ((n_out == 1 and post in ("sigmoid", "hinge"))
                                     or (n_out == 2 and post in ("identity_multiclass", "softmax")))
        elif problem_type == "MULTICLASS_CLASSIFICATION":
            ok = n_out == n_classes and post in ("identity_multiclass", "softmax")
        else:
            ok = False
        if not ok:
            raise ValueError(
                f"a tree model with {n_out} output(s) and postprocessor {post!r} cannot serve "
                f"{problem_type} with {n_classes} class(es)")


def gtil_margins(model: treelite.Model, X: np.ndarray, precision: str, nthread: int) -> np.ndarray:
    """Margins from Treelite's own interpreter (the fallback backend)."""
    out = treelite.gtil.predict(model, round_inputs(X, precision), nthread=nthread, pred_margin=True)
    return np.asarray(out, dtype=np.float64).reshape(len(X), -1)


def leaf_sum_margins(model: treelite.Model, layout: TreeLayout, X: np.ndarray, precision: str) -> np.ndarray:
    """Margins as GTIL's leaves summed in float64, tree by tree (scalar-leaf models):
    the library's arithmetic, for models whose GTIL margins are float32 sums."""
    leaves = np.asarray(treelite.gtil.predict_leaf(model, round_inputs(X, precision)), dtype=np.int64)
    leaves = leaves.reshape(len(X), layout.n_trees)
    class_id = np.asarray(model.get_header_accessor().get_field("class_id"), dtype=np.int64)
    out = np.zeros((len(X), layout.n_outputs))
    for t in range(layout.n_trees):
        values = np.asarray(model.get_tree_accessor(t).get_field("leaf_value"), dtype=np.float64)
        out[:, max(int(class_id[t]), 0)] += values[leaves[:, t]]
    return out / layout.divisor + layout.base_scores


def split_thresholds(model: treelite.Model) -> tuple[list[np.ndarray], np.ndarray]:
    """Per feature, the sorted distinct thresholds of its numerical splits; plus a
    mask of features used in categorical splits. This is the quantization table the
    native driver searches (TL2cgen builds the same one for its own `quantize`)."""
    n = int(model.num_feature)
    per_feature: list[list[np.ndarray]] = [[] for _ in range(n)]
    categorical = np.zeros(n, dtype=bool)
    for t in range(int(model.num_tree)):
        tree = model.get_tree_accessor(t)
        node_type = tree.get_field("node_type")
        split = tree.get_field("split_index")
        numerical = node_type == 1
        thresholds = tree.get_field("threshold")
        for f in np.unique(split[numerical]):
            per_feature[f].append(thresholds[numerical & (split == f)])
        categorical[np.unique(split[node_type == 2])] = True
    tables = [np.unique(np.concatenate(parts)) if parts else np.empty(0) for parts in per_feature]
    return tables, categorical
