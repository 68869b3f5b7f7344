"""Shapley values: per row (batched) and the global summary EXPLAIN_MODEL returns.

Tree models: exact TreeSHAP (path-dependent, node covers as weights) by XGBoost's
`pred_contribs`, on every tree family. The artifact's Treelite checkpoint is turned
into an XGBoost model (`xgboost_json`): each Treelite test becomes XGBoost's
"left iff float32(x) < t" (exact for models that compare float32 inputs: XGBoost's
own and scikit-learn's tree module; HistGradientBoosting compares float64, so a
value within float32 rounding of one of its thresholds may be routed differently
for the explanation than for the prediction), node covers are Treelite's sum_hess
(XGBoost, forests) or data_count (HistGradientBoosting), averaged ensembles have
their leaves divided by the tree count, and a tree with vector leaves becomes one
tree per output. Values are in the model's margin space: log-odds for boosted
classifiers, averaged probabilities for forests, the value for regression.

Linear models: exact for independent features, phi_j = w_j (x_j - mean_j), the
means over the explained rows, in margin (logit) space.

MLP: a sampling estimate (permutation sampling, each input column one player, its
absent players filled from background rows), on the model's outputs (probabilities
for classifiers).

`contributions(...)` is the batched per-row entry point (rows x outputs x
(features + 1), the last column the expected value); `by_input` sums the features an
input column feeds (one-hot indicators, date parts) back into that column;
`global_explanations` gives Redshift's EXPLAIN_MODEL shape.
"""

from __future__ import annotations

import functools
import json
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
import treelite

from . import dense, trees
from .artifact import Artifact
from .node_tables import _LEAF, _normalized_test, _tree_fields

#: rows summarised by the global explanation (a seeded sample of those given)
MAX_GLOBAL_ROWS = 1000
#: MLP sampling: permutations per row, background rows, rows explained
MLP_PERMUTATIONS = 16
MLP_BACKGROUND = 32
MLP_ROWS = 200


def xgboost_json(model: treelite.Model) -> bytes:
    """An XGBoost JSON model with the trees, margins and covers of a Treelite model
    (see the module docstring), for XGBoost's TreeSHAP."""
    layout = trees.TreeLayout.of(model)
    header = model.get_header_accessor()
    class_id = np.asarray(header.get_field("class_id"), dtype=np.int64)
    n_out, n_feat = layout.n_outputs, layout.n_features
    out_trees: list[dict[str, Any]] = []
    info: list[int] = []
    for t in range(layout.n_trees):
        fields = {**_tree_fields(model.get_tree_accessor(t)), **_cover_fields(model.get_tree_accessor(t))}
        width = int(np.max(fields["leaf_vector_end"] - fields["leaf_vector_begin"], initial=0))
        outputs = range(n_out) if width > 1 else [max(int(class_id[t]), 0)]
        for k in outputs:
            out_trees.append(_xgb_tree(fields, k if width > 1 else None, 1.0 / layout.divisor[k],
                                       len(out_trees), n_feat))
            info.append(k)
    multi = n_out > 1
    base = layout.base_scores
    doc = {
        "learner": {
            "attributes": {}, "feature_names": [], "feature_types": [],
            "gradient_booster": {"model": {
                "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": str(len(out_trees))},
                "iteration_indptr": [0, len(out_trees)], "tree_info": info, "trees": out_trees},
                "name": "gbtree"},
            "learner_model_param": {
                "base_score": ("[" + ",".join(repr(float(b)) for b in base) + "]") if multi else repr(float(base[0])),
                "boost_from_average": "0", "num_class": str(n_out if multi else 0),
                "num_feature": str(n_feat), "num_target": "1"},
            "objective": ({"name": "multi:softprob", "softmax_multiclass_param": {"num_class": str(n_out)}} if multi
                          else {"name": "reg:squarederror", "reg_loss_param": {"scale_pos_weight": "1"}}),
        },
        "version": [3, 0, 0],
    }
    return json.dumps(doc).encode()


def _cover_fields(tree: Any) -> dict[str, np.ndarray]:
    hess = tree.get_field("sum_hess")
    if len(hess) and np.all(tree.get_field("sum_hess_present")):
        return {"cover": np.asarray(hess, dtype=np.float64)}
    count = tree.get_field("data_count")
    if len(count) and np.all(tree.get_field("data_count_present")):
        return {"cover": np.asarray(count, dtype=np.float64)}
    raise ValueError("the model's trees carry no node covers (sum_hess or data_count); TreeSHAP needs them")


def _xgb_tree(f: dict[str, np.ndarray], output: int | None, scale: float, tree_id: int, n_feat: int
              ) -> dict[str, Any]:
    """One Treelite tree (for one output of a vector-leaf tree) as XGBoost's JSON tree."""
    left, right, parents, cond, index, default_left, cover, weight = [], [], [], [], [], [], [], []
    queue = deque([(0, 2147483647)])
    order: list[tuple[int, int]] = []
    while queue:  # breadth-first numbering, as XGBoost's own trees
        nid, parent = queue.popleft()
        order.append((nid, parent))
        if f["node_type"][nid] != _LEAF:
            a, b, _ = _normalized_test(f, nid)
            queue.append((a, len(order) - 1))
            queue.append((b, len(order) - 1))
    new_id = {nid: i for i, (nid, _) in enumerate(order)}
    for nid, parent in order:
        parents.append(parent)
        cover.append(float(f["cover"][nid]))
        if f["node_type"][nid] == _LEAF:
            begin, end = int(f["leaf_vector_begin"][nid]), int(f["leaf_vector_end"][nid])
            value = float(f["leaf_vector"][begin + output]) if output is not None and end > begin \
                else float(f["leaf_value"][nid])
            value *= scale
            left.append(-1), right.append(-1), cond.append(value), index.append(0), default_left.append(0)
            weight.append(value)
            continue
        a, b, threshold = _normalized_test(f, nid)
        # x <= threshold (float64)  <=>  float32(x) <= f32  <=>  float32(x) < next float32 above f32
        f32 = np.float32(threshold)
        if float(f32) > threshold:
            f32 = np.nextafter(f32, np.float32(-np.inf))
        missing = int(f["cleft"][nid] if f["default_left"][nid] else f["cright"][nid])
        left.append(new_id[a]), right.append(new_id[b])
        cond.append(float(np.nextafter(f32, np.float32(np.inf))))
        index.append(int(f["split_index"][nid]))
        default_left.append(int(missing == a))
        weight.append(0.0)
    n = len(order)
    return {"base_weights": weight, "categories": [], "categories_nodes": [], "categories_segments": [],
            "categories_sizes": [], "default_left": default_left, "id": tree_id, "left_children": left,
            "loss_changes": [0.0] * n, "parents": parents, "right_children": right, "split_conditions": cond,
            "split_indices": index, "split_type": [0] * n, "sum_hessian": cover,
            "tree_param": {"num_deleted": "0", "num_feature": str(n_feat), "num_nodes": str(n),
                           "size_leaf_vector": "1"}}


@functools.lru_cache(maxsize=16)
def _booster(sha256: str, payload: bytes) -> Any:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(xgboost_json(treelite.Model.deserialize_bytes(payload))))
    booster.set_param({"nthread": 1})
    return booster


def contributions(artifact: Artifact, X: np.ndarray, *, background: np.ndarray | None = None,
                  seed: int = 0) -> np.ndarray:
    """Per-row Shapley values of a preprocessed matrix X: (rows, outputs, features + 1),
    the last column each output's expected value. Tree and linear models are exact
    and batched (one XGBoost call, one matrix product); MLPs are estimated. Linear
    and MLP values are relative to `background` rows (X itself when None), so a
    per-row caller of those passes a background; tree values need none (the covers
    are the training data's)."""
    X = np.asarray(X, dtype=np.float64)
    if artifact.kind == "tree":
        import xgboost as xgb

        booster = _booster(artifact.sha256, artifact.payload)
        X32 = trees.round_inputs(X, "float32")
        phi = np.asarray(booster.predict(xgb.DMatrix(X32, nthread=1), pred_contribs=True), dtype=np.float64)
        return phi.reshape(len(X), -1, X.shape[1] + 1)
    model = dense.dense_model(artifact.manifest["estimator"])
    mean = (X if background is None else background).mean(axis=0)
    if model.kind == "linear":
        W = model.coef_t.T  # (outputs, features)
        phi = W[None, :, :] * (X - mean)[:, None, :]
        expected = W @ mean + model.intercept
        return np.concatenate([phi, np.broadcast_to(expected, (len(X), len(expected)))[:, :, None]], axis=2)
    if model.kind == "mlp":
        return sampled_shapley(lambda M: _outputs_2d(model, M), X, X if background is None else background, seed)
    raise ValueError(f"no Shapley values for a {model.kind} model")


def _outputs_2d(model: Any, X: np.ndarray) -> np.ndarray:
    out = model.outputs(X)
    return out.reshape(len(X), -1)


def sampled_shapley(f: Any, X: np.ndarray, background: np.ndarray, seed: int) -> np.ndarray:
    """Permutation-sampling estimate of Shapley values (players: the features): for
    random orders of the features, the change of the mean output over background
    rows as each feature takes the row's value, averaged. (rows, outputs, features + 1).
    Every order's changes add up to f(x) - E f, so the estimate is locally exact."""
    rng = np.random.default_rng([seed, 505])
    bg = background[rng.choice(len(background), min(MLP_BACKGROUND, len(background)), replace=False)]
    n, g = X.shape
    n_out = f(X[:1]).shape[1]
    phi = np.zeros((n, n_out, g))
    base = f(bg).mean(axis=0)
    for _ in range(MLP_PERMUTATIONS):
        order = rng.permutation(g)
        # hybrid[r, b] = background row b with the groups seen so far taken from row r
        hybrid = np.repeat(bg[None, :, :], n, axis=0)
        prev = np.broadcast_to(base, (n, n_out)).copy()
        for gi in order:
            hybrid[:, :, gi] = X[:, None, gi]
            cur = f(hybrid.reshape(-1, X.shape[1])).reshape(n, len(bg), n_out).mean(axis=1)
            phi[:, :, gi] += cur - prev
            prev = cur
    phi /= MLP_PERMUTATIONS
    return np.concatenate([phi, np.broadcast_to(base, (n, n_out))[:, :, None]], axis=2)


def by_input(phi: np.ndarray, preprocessing: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """Feature-level values (rows, outputs, features + 1) -> per input column
    (rows, outputs, inputs): each input's features summed (one-hot indicators, date
    parts). Inputs that feed no feature get 0."""
    names = [i["name"] for i in preprocessing["inputs"]]
    where = {name: k for k, name in enumerate(names)}
    out = np.zeros(phi.shape[:2] + (len(names),))
    for j, feat in enumerate(preprocessing["features"]):
        out[:, :, where[feat["input"]]] += phi[:, :, j]
    return names, out


def global_sample(artifact: Artifact, X: np.ndarray, seed: int = 0) -> np.ndarray:
    """The rows global_explanations summarises (a seeded sample of X): their feature
    means are the background of a linear model's per-row values, so that those
    share the global expected value."""
    rng = np.random.default_rng([seed, 606])
    limit = MLP_ROWS if artifact.kind == "mlp" else MAX_GLOBAL_ROWS
    if len(X) > limit:
        X = X[np.sort(rng.choice(len(X), limit, replace=False))]
    return np.asarray(X, dtype=np.float64)


def global_explanations(artifact: Artifact, X: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Redshift's EXPLAIN_MODEL document for a preprocessed sample X: per output
    (label0, label1, ...; one per class for multiclass), the mean absolute Shapley
    value of each input column and the expected value."""
    X = global_sample(artifact, X, seed)
    phi = contributions(artifact, X, seed=seed)
    names, per_input = by_input(phi, artifact.manifest["preprocessing"])
    problem = artifact.manifest["problem_type"]
    outputs = range(phi.shape[1])
    if problem == "BINARY_CLASSIFICATION" and phi.shape[1] == 2:
        outputs = [1]  # the positive class (classes[1]); P(classes[0]) mirrors it
    labels = {}
    for i, k in enumerate(outputs):
        mean_abs = np.abs(per_input[:, k, :]).mean(axis=0)
        labels[f"label{i}"] = {
            "global_shap_values": {name: float(v) for name, v in zip(names, mean_abs)},
            "expected_value": float(phi[0, k, -1]) if artifact.kind != "mlp" else float(phi[:, k, -1].mean()),
        }
    return {"version": "1.0", "explanations": {"kernel_shap": labels}}
