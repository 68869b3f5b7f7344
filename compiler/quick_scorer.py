"""Tree ensembles as QuickScorer bitvectors for the driver's third evaluator.

QuickScorer (Lucchese et al., SIGIR 2015) does not walk a tree. It numbers a tree's
leaves left to right (at most 64, so a set of them is one 64-bit word) and gives
every split the set of leaves that stay reachable when its test fails: all but the
leaves under its first child. A row's exit leaf is the lowest leaf left in the AND of
the sets of its failed tests, whatever order the tests are applied in: the leftmost
leaf no failed test excludes is the one a walk reaches (every test on its path
holds, or sends the walk right of every leaf left of it).

The tests come from `NodeTables` (every test already in the form "first child iff
x <= threshold", with its missing-value copy) and their 32-bit keys from
`native.node_keys`, so a failed test is `key < row key`, the same integer compare
the node-array walk makes. The driver (MLPX_EVALUATOR 3) applies every test of a
tree to 16 rows at once with SIMD selects and no branch, the tree's tests sorted by
feature and key (QuickScorer's per-feature order, which keeps the row keys a tree
reads together), and finds each row's exit leaf with one count-trailing-zeros;
rows left over from groups of 16 (a one-row call) take the node-array walk, which
reaches the same leaves. Leaves are added tree by tree in model order as the other
evaluators do, so all three give bit-identical margins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .node_tables import NodeTables, Unsuitable

#: a tree's leaves must fit one 64-bit word
MAX_LEAVES = 64


@dataclass(frozen=True)
class QuickScorerTables:
    """Per tree t, its tests `begin[t]:begin[t + 1]` (sorted by feature, then key):
    the NodeTables node each test is (`node`), and `keep`, the leaves still reachable
    when the test fails; and its leaves left to right, `leaf_begin[t]:leaf_begin[t + 1]`
    of `leaf_node` (NodeTables node ids, whose leaf values the driver already has)."""

    node: np.ndarray  # int32 per test
    keep: np.ndarray  # uint64 per test
    begin: np.ndarray  # int32 per tree + 1
    leaf_node: np.ndarray  # int32 per leaf
    leaf_begin: np.ndarray  # int32 per tree + 1

    @property
    def n_tests(self) -> int:
        return int(len(self.node))

    @classmethod
    def of(cls, tables: NodeTables, keys: np.ndarray) -> QuickScorerTables:
        """`keys`: the uint32 key of every NodeTables node (native.node_keys)."""
        is_leaf = tables.first == np.arange(len(tables.first))
        node: list[int] = []
        keep: list[int] = []
        begin, leaf_node, leaf_begin = [0], [], [0]
        for root in tables.roots.tolist():
            leaves: list[int] = []
            under: dict[int, tuple[int, int]] = {}  # split -> (first leaf under its first child, count)
            _number_leaves(root, is_leaf, tables.first, leaves, under)
            if len(leaves) > MAX_LEAVES:
                raise Unsuitable(f"a tree has {len(leaves)} leaves (QuickScorer's bitvectors hold {MAX_LEAVES})")
            tests = sorted(under, key=lambda i: (int(tables.feature[i]), bool(tables.missing_second[i]),
                                                 int(keys[i]), i))
            for i in tests:
                first, count = under[i]
                cut = ((1 << count) - 1) << first
                node.append(i)
                keep.append(~cut & (2**64 - 1))
            begin.append(len(node))
            leaf_node.extend(leaves)
            leaf_begin.append(len(leaf_node))
        return cls(node=np.asarray(node, dtype=np.int32), keep=np.asarray(keep, dtype=np.uint64),
                   begin=np.asarray(begin, dtype=np.int32), leaf_node=np.asarray(leaf_node, dtype=np.int32),
                   leaf_begin=np.asarray(leaf_begin, dtype=np.int32))


def _number_leaves(root: int, is_leaf: np.ndarray, first: np.ndarray, leaves: list[int],
                   under: dict[int, tuple[int, int]]) -> None:
    """The tree's leaves left to right (first child before second), and per split
    (first leaf under its first child, how many leaves are there); no recursion, as
    unbalanced trees can be deep."""
    stack: list[tuple[int, int]] = [(root, 0)]
    start: dict[int, int] = {}
    while stack:
        i, state = stack.pop()
        if is_leaf[i]:
            leaves.append(i)
        elif state == 0:
            start[i] = len(leaves)
            stack += [(i, 1), (int(first[i]), 0)]
        elif state == 1:
            under[i] = (start[i], len(leaves) - start[i])
            stack.append((int(first[i]) + 1, 0))
