"""Tree ensembles as flat node arrays for the driver's branch-free evaluator.

TL2cgen turns every split into an `if`; on held-out rows about half of a random
forest's splits go the way the CPU's branch predictor did not guess, and those
mispredictions, not the comparisons, are where the time goes. The alternative
evaluator in `driver_source.py` (MLPX_EVALUATOR 2) walks arrays instead:

    node = {threshold, column, first child}     second child = first child + 1
    step:  i = first_child[i] + (x[column[i]] > threshold[i])

The step has no branch, so nothing is mispredicted; several rows walk one tree at
once so their load chains overlap. Every Treelite test is rewritten into this single
form "go to the first child iff x <= threshold" (children swapped for > and >=;
x < t is x <= the next double below t), missing values go where the node's
default_left says by choosing which copy of the feature the node reads (the driver
stores each feature with NaN as -inf and as +inf), and a leaf is a node that leads
to itself, so every row can take exactly `depth` steps per tree.

The tables are generated from the Treelite model at build time and compiled into
the library (`native.render_node_driver` packs them, thresholds as exact 32-bit keys:
`native.node_keys`); the artifact stays the Treelite checkpoint (DESIGN principle 5).
Models this form cannot express exactly (categorical splits, == tests, non-finite
thresholds, leaf layouts other than scalar-per-output or full vectors) are left to
the TL2cgen evaluator: `NodeTables.of` raises `Unsuitable` for them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import treelite

#: Treelite's Operator enum (treelite/enum/operator.h)
_LT, _LE, _GT, _GE = 2, 3, 4, 5
_NUMERICAL, _LEAF = 1, 0


class Unsuitable(ValueError):
    """The model has something the node-array evaluator does not express exactly."""


@dataclass(frozen=True)
class NodeTables:
    """The arrays the driver walks. Node i: `threshold[i]`, `feature[i]`, whether its
    missing values go to the second child (`missing_second[i]`), and `first[i]`, the
    index of its first child (itself for leaves, whose threshold is +inf)."""

    threshold: np.ndarray  # float64
    feature: np.ndarray  # int32
    missing_second: np.ndarray  # bool
    first: np.ndarray  # int32
    leaf_of: np.ndarray  # int32: row of `leaves` for leaf nodes, 0 for splits
    leaves: np.ndarray  # float64 (n_leaves, leaf_width)
    roots: np.ndarray  # int32 per tree
    depths: np.ndarray  # int32 per tree: steps from the root to its deepest leaf
    outputs: np.ndarray  # int32 per tree: the output a scalar leaf adds to (0 for vectors)
    #: per tree, the mean depth of its leaves (a branchy walk's steps, roughly)
    mean_leaf_depths: np.ndarray

    @property
    def leaf_width(self) -> int:
        return int(self.leaves.shape[1])

    @classmethod
    def of(cls, model: treelite.Model) -> NodeTables:
        header = model.get_header_accessor()
        n_out = int(header.get_field("num_class")[0])
        if int(header.get_field("num_target")[0]) != 1:
            raise Unsuitable("multi-target model")
        class_id = np.asarray(header.get_field("class_id"), dtype=np.int64)
        trees = [model.get_tree_accessor(t) for t in range(int(model.num_tree))]
        vector = [_leaf_vector_width(tree) for tree in trees]
        width = n_out if any(v > 1 for v in vector) else 1
        if width > 1 and not all(v == n_out and c == -1 for v, c in zip(vector, class_id)):
            raise Unsuitable("trees mix scalar and vector leaves")
        if width == 1 and np.any((class_id < 0) & (n_out > 1)):
            raise Unsuitable("scalar leaves shared by several outputs")

        thr: list[float] = []
        feat: list[int] = []
        miss2: list[bool] = []
        first: list[int] = []
        leaf_of: list[int] = []
        leaves: list[np.ndarray] = []
        roots, depths, outputs, mean_depths = [], [], [], []
        for t, tree in enumerate(trees):
            fields = _tree_fields(tree)
            node_type = fields["node_type"]
            if np.any((node_type != _LEAF) & (node_type != _NUMERICAL)):
                raise Unsuitable("categorical splits")
            root = len(thr)
            roots.append(root)
            outputs.append(max(int(class_id[t]), 0) if width == 1 else 0)
            _append(thr, feat, miss2, first, leaf_of)  # slot for the root
            queue = deque([(0, root, 0)])  # (Treelite node id, slot, depth)
            deepest, leaf_depths = 0, []
            while queue:
                nid, slot, depth = queue.popleft()
                if node_type[nid] == _LEAF:
                    thr[slot], feat[slot], miss2[slot], first[slot] = np.inf, 0, False, slot
                    leaf_of[slot] = len(leaves)
                    leaves.append(_leaf(fields, nid, width))
                    deepest = max(deepest, depth)
                    leaf_depths.append(depth)
                    continue
                a, b, threshold = _normalized_test(fields, nid)
                missing_goes = int(fields["cleft" if fields["default_left"][nid] else "cright"][nid])
                thr[slot], feat[slot] = threshold, int(fields["split_index"][nid])
                miss2[slot] = missing_goes == b
                first[slot] = len(thr)
                _append(thr, feat, miss2, first, leaf_of)
                _append(thr, feat, miss2, first, leaf_of)
                queue.append((a, first[slot], depth + 1))
                queue.append((b, first[slot] + 1, depth + 1))
            depths.append(deepest)
            mean_depths.append(float(np.mean(leaf_depths)))
        if len(thr) >= 2**31 or int(model.num_feature) >= 2**20:
            raise Unsuitable("too large for the driver's 32-bit node fields")
        return cls(
            threshold=np.asarray(thr, dtype=np.float64),
            feature=np.asarray(feat, dtype=np.int32),
            missing_second=np.asarray(miss2, dtype=bool),
            first=np.asarray(first, dtype=np.int32),
            leaf_of=np.asarray(leaf_of, dtype=np.int32),
            leaves=np.asarray(leaves, dtype=np.float64).reshape(len(leaves), width),
            roots=np.asarray(roots, dtype=np.int32),
            depths=np.asarray(depths, dtype=np.int32),
            outputs=np.asarray(outputs, dtype=np.int32),
            mean_leaf_depths=np.asarray(mean_depths, dtype=np.float64),
        )


def _append(*lists: list) -> None:
    for values in lists:
        values.append(0)


def _tree_fields(tree: object) -> dict[str, np.ndarray]:
    names = ("node_type", "cleft", "cright", "split_index", "default_left", "threshold", "cmp", "leaf_value",
             "leaf_vector", "leaf_vector_begin", "leaf_vector_end")
    return {name: tree.get_field(name) for name in names}  # type: ignore[attr-defined]


def _leaf_vector_width(tree: object) -> int:
    """1 for scalar leaves, else the (common) length of the tree's leaf vectors."""
    fields = _tree_fields(tree)
    leaf = fields["node_type"] == _LEAF
    lengths = (fields["leaf_vector_end"].astype(np.int64) - fields["leaf_vector_begin"].astype(np.int64))[leaf]
    if not np.any(lengths):
        return 1
    if np.any(lengths != lengths[0]):
        raise Unsuitable("leaf vectors of different lengths")
    return int(lengths[0])


def _leaf(fields: dict[str, np.ndarray], nid: int, width: int) -> np.ndarray:
    begin, end = int(fields["leaf_vector_begin"][nid]), int(fields["leaf_vector_end"][nid])
    values = fields["leaf_vector"][begin:end] if end > begin else fields["leaf_value"][nid:nid + 1]
    values = np.asarray(values, dtype=np.float64)
    if len(values) != width:
        raise Unsuitable("leaf width differs from the model's outputs")
    return values


def _normalized_test(fields: dict[str, np.ndarray], nid: int) -> tuple[int, int, float]:
    """(child taken when x <= threshold, child taken otherwise, threshold), exactly
    equivalent to the node's Treelite test on every double x."""
    t = float(fields["threshold"][nid])
    op = int(fields["cmp"][nid])
    left, right = int(fields["cleft"][nid]), int(fields["cright"][nid])
    below = float(np.nextafter(t, -np.inf))
    if op == _LE:
        a, b, threshold = left, right, t
    elif op == _LT:
        a, b, threshold = left, right, below  # x < t  <=>  x <= largest double below t
    elif op == _GT:
        a, b, threshold = right, left, t  # left iff x > t: first child is the right one
    elif op == _GE:
        a, b, threshold = right, left, below  # left iff x >= t  <=>  not x <= below
    else:
        raise Unsuitable(f"comparison operator {op}")
    if not np.isfinite(threshold):
        raise Unsuitable("non-finite threshold")  # NaN stands in as +-inf; a finite bound keeps that exact
    return a, b, threshold
