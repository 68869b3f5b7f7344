"""The three native evaluators (TL2cgen's if/else code, the branch-free node
arrays of compiler/node_tables.py and the QuickScorer bitvectors of
compiler/quick_scorer.py) against treelite.gtil and scikit-learn, on rows
built to catch a wrong comparison: every split threshold and its float64 and float32
neighbours, -0.0, NaN, huge and tiny values.

Hand-built Treelite models cover what scikit-learn never produces (the <, >, >=
operators, missing values going either way at any operator, vector and per-class
scalar leaves, base scores); scikit-learn models are built with each evaluator and
compared with the estimator itself."""

from __future__ import annotations

import numpy as np
import pytest
import treelite
from treelite.model_builder import Metadata, ModelBuilder, PostProcessorFunc, TreeAnnotation

import compiler
from compiler import native, trees, worker
from compiler.node_tables import NodeTables, Unsuitable
from compiler.quick_scorer import QuickScorerTables

from .conftest import assert_equivalent

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in reduce:RuntimeWarning")

EVALUATORS = {"tl2cgen": native.EVALUATOR_TL2CGEN, "node_arrays": native.EVALUATOR_NODE_ARRAYS,
              "quick_scorer": native.EVALUATOR_QUICK_SCORER}
#: thresholds chosen to sit on awkward doubles
THRESHOLDS = (0.0, -0.0, 1.5, -2.25, 1e-300, 5e-324, -1e300, 3.0000000000000004, 0.1)
OPS = ("<", "<=", ">", ">=")


def _build(n_out: int, vector_leaves: bool, *, n_trees: int = 6, n_features: int = 3, seed: int = 0,
           average: bool = False, depth: int = 3, prune: float = 0.3) -> treelite.Model:
    """Trees of depth `depth` (pruned at random above it) whose every split draws its
    operator, default direction, feature and threshold from the lists above."""
    rng = np.random.default_rng(seed)
    if vector_leaves:
        class_id, post = [-1] * n_trees, "identity_multiclass"
    elif n_out > 1:
        class_id, post = [t % n_out for t in range(n_trees)], "softmax"
    else:
        class_id, post = [0] * n_trees, "identity"
    builder = ModelBuilder(
        threshold_type="float64", leaf_output_type="float64",
        metadata=Metadata(num_feature=n_features, task_type="kMultiClf" if n_out > 1 else "kRegressor",
                          average_tree_output=average, num_target=1, num_class=[n_out],
                          leaf_vector_shape=(1, n_out if vector_leaves else 1)),
        tree_annotation=TreeAnnotation(num_tree=n_trees, target_id=[0] * n_trees, class_id=class_id),
        postprocessor=PostProcessorFunc(name=post),
        base_scores=[0.25 * (k + 1) for k in range(n_out)])

    def leaf() -> list[float] | float:
        values = rng.normal(size=n_out if vector_leaves else 1).round(3)
        return values.tolist() if vector_leaves else float(values[0])

    for _ in range(n_trees):
        nodes: list[tuple] = []  # pre-order: Treelite takes the first node as the root

        def grow(d: int) -> int:
            me = len(nodes)
            nodes.append(())
            if d == 0 or (d < depth and rng.random() < prune):  # unbalanced on purpose
                nodes[me] = ("leaf", leaf())
            else:
                test = (int(rng.integers(n_features)), float(rng.choice(THRESHOLDS)), bool(rng.integers(2)),
                        str(rng.choice(OPS)))
                left = grow(d - 1)
                nodes[me] = ("split", *test, left, grow(d - 1))
            return me

        grow(depth)
        _emit(builder, nodes)
    return builder.commit()


def _emit(builder: ModelBuilder, nodes: list[tuple]) -> None:
    builder.start_tree()
    for key, node in enumerate(nodes):
        builder.start_node(key)
        if node[0] == "leaf":
            builder.leaf(node[1])
        else:
            _, feature, threshold, default_left, op, left, right = node
            builder.numerical_test(feature, threshold, default_left=default_left, opname=op,
                                   left_child_key=left, right_child_key=right)
        builder.end_node()
    builder.end_tree()


def _regressor(n_trees: int, n_features: int = 1) -> ModelBuilder:
    return ModelBuilder(
        threshold_type="float64", leaf_output_type="float64",
        metadata=Metadata(num_feature=n_features, task_type="kRegressor", average_tree_output=False, num_target=1,
                          num_class=[1], leaf_vector_shape=(1, 1)),
        tree_annotation=TreeAnnotation(num_tree=n_trees, target_id=[0] * n_trees, class_id=[0] * n_trees),
        postprocessor=PostProcessorFunc(name="identity"), base_scores=[0.0])


def _adversarial(model: treelite.Model) -> np.ndarray:
    """All combinations are too many; a permuted mix of every awkward value per column."""
    X = worker.probe_matrix(model, "float32", rows=2045, seed=11)  # partial lane group at the end
    special = np.array([-0.0, 0.0, np.nan, 5e-324, -5e-324, 1.7e308, -1.7e308, 3.5e38, -3.5e38])
    X[:len(special) * 3] = np.resize(special, (len(special) * 3, X.shape[1]))
    return X


def _library(model, precision, tmp_path, evaluator):
    out = tmp_path / f"build-{evaluator}"
    out.mkdir()
    info = worker.compile_model(model, precision, out, toolchain=compiler.find_toolchain(), jobs=1,
                                evaluator=evaluator)
    layout = trees.TreeLayout.of(model)
    lib = native.NativeLibrary(out / compiler.cache.LIBRARY_NAME, n_features=layout.n_features,
                               n_outputs=layout.n_outputs)
    return info, lib


HAND_BUILT = {
    "regression": dict(n_out=1, vector_leaves=False, n_trees=23),  # lane groups of trees and a rest
    "vector_leaves_averaged": dict(n_out=3, vector_leaves=True, average=True),
    "per_class_scalar_leaves": dict(n_out=3, vector_leaves=False, n_trees=9),
    # complete trees of 64 leaves: every bit of QuickScorer's 64-bit words is a leaf
    "64_leaves": dict(n_out=1, vector_leaves=False, n_trees=12, depth=6, prune=0.0, n_features=4),
}


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("shape", sorted(HAND_BUILT))
def test_hand_built_models_match_gtil_with_every_evaluator(shape, precision, tmp_path):
    model = _build(**HAND_BUILT[shape])
    X = _adversarial(model)
    want = trees.gtil_margins(model, X, precision, nthread=1)
    got = {}
    for name, evaluator in EVALUATORS.items():
        info, lib = _library(model, precision, tmp_path, evaluator)
        assert info["evaluator"] == name
        got[name] = lib.margins(X, round32=precision == "float32", nthread=1)
        np.testing.assert_allclose(got[name], want, rtol=1e-12, atol=1e-12, err_msg=f"{shape} {name} vs gtil")
        # the same rows in feature-major order (what Preprocessor.transform makes)
        np.testing.assert_array_equal(lib.margins(np.asfortranarray(X), round32=precision == "float32"),
                                      got[name], err_msg=f"{shape} {name} feature-major")
        # rows alone (the driver's tail path: trees interleaved for one row) and in
        # lane groups give identical bits
        alone = np.vstack([lib.margins(X[r:r + 1], round32=precision == "float32") for r in range(40)])
        np.testing.assert_array_equal(alone, got[name][:40], err_msg=f"{shape} {name} one row at a time")
    # the libraries add the same leaves in the same order: identical bits
    np.testing.assert_array_equal(got["node_arrays"], got["tl2cgen"])
    np.testing.assert_array_equal(got["quick_scorer"], got["tl2cgen"])


@pytest.mark.parametrize(("evaluator", "define"), [("node_arrays", "-DMLPX_PORTABLE_STEP"),
                                                   ("quick_scorer", "-DMLPX_PORTABLE_STEP"),
                                                   ("quick_scorer", "-DMLPX_QS_NO_AVX512")])
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_portable_code_matches_the_x86_code(precision, evaluator, define, tmp_path, monkeypatch):
    """The node-array walk is inline assembly on x86-64 and C elsewhere, and the
    QuickScorer loop is compiled for AVX-512 and AVX2 next to plain C, picked at run
    time (MLPX_PORTABLE_STEP forces the C here, MLPX_QS_NO_AVX512 the AVX2 code where
    the CPU has both): all give GTIL's margins, bit for bit the same, in groups of
    rows and for single rows."""
    model = _build(**HAND_BUILT["64_leaves" if evaluator == "quick_scorer" else "regression"])
    X = _adversarial(model)
    round32 = precision == "float32"
    _, lib = _library(model, precision, tmp_path, EVALUATORS[evaluator])
    for options in ("NODE_ARRAYS_COMPILE_OPTIONS", "QUICK_SCORER_COMPILE_OPTIONS"):
        monkeypatch.setattr(native, options, [*getattr(native, options), define])
    (tmp_path / "portable").mkdir()
    _, portable = _library(model, precision, tmp_path / "portable", EVALUATORS[evaluator])
    got = portable.margins(X, round32=round32)
    np.testing.assert_allclose(got, trees.gtil_margins(model, X, precision, nthread=1), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got, lib.margins(X, round32=round32))
    alone = np.vstack([portable.margins(X[r:r + 1], round32=round32) for r in range(25)])
    np.testing.assert_array_equal(alone, got[:25])


def test_every_operator_and_default_direction_is_exercised():
    """Guard for the test above: its models really contain each operator with
    missing values going both ways."""
    model = _build(**HAND_BUILT["per_class_scalar_leaves"])
    seen = set()
    for t in range(model.num_tree):
        tree = model.get_tree_accessor(t)
        split = tree.get_field("node_type") == 1
        seen |= set(zip(tree.get_field("cmp")[split].tolist(), tree.get_field("default_left")[split].tolist()))
    assert seen == {(op, dl) for op in (2, 3, 4, 5) for dl in (0, 1)}


def test_node_tables_rewrite_tests_into_one_form():
    """x < t is x <= (the double below t); > and >= swap the children; a leaf is a
    fixed point with an infinite threshold."""
    model = _build(n_out=1, vector_leaves=False, n_trees=30, seed=3)
    tables = NodeTables.of(model)
    is_leaf = tables.first == np.arange(len(tables.first))
    assert np.all(np.isposinf(tables.threshold[is_leaf]))
    assert np.all(np.isfinite(tables.threshold[~is_leaf]))
    allowed = set(THRESHOLDS) | {float(np.nextafter(t, -np.inf)) for t in THRESHOLDS}
    assert set(tables.threshold[~is_leaf].tolist()) <= allowed
    assert np.all(tables.depths >= np.ceil(tables.mean_leaf_depths))


def test_float32_keys_order_like_the_floats():
    f32 = np.finfo(np.float32)
    values = np.array([-np.inf, -f32.max, -1.0, -f32.smallest_subnormal, -0.0, 0.0, f32.smallest_subnormal,
                       f32.tiny, 1.0, f32.max, np.inf], dtype=np.float32)
    keys = native.float32_keys(values)
    assert np.all(np.diff(keys.astype(np.int64)) >= 0)
    assert keys[4] == keys[5]  # -0.0 and 0.0 compare equal
    assert len(set(keys.tolist())) == len(values) - 1
    assert 0 < keys.min() and keys.max() < 2**32 - 1  # 0 and UINT32_MAX are NaN's and leaves' keys


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_node_keys_compare_like_the_thresholds(precision):
    """x <= t exactly when key(x) <= key(t): float32 images against the largest float32
    at or below t, float64 ranks among the feature's thresholds."""
    model = _build(n_out=1, vector_leaves=False, n_trees=30, seed=3)
    tables = NodeTables.of(model)
    keys, ranks = native.node_keys(tables, precision, int(model.num_feature))
    split = tables.first != np.arange(len(tables.first))
    assert np.all(keys[~split] == 2**32 - 1)
    t = tables.threshold[split]
    x = np.concatenate([t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf), [-1e300, 1e300, 0.0, -0.0]])
    if precision == "float32":
        x = np.clip(x, -np.finfo(np.float32).max, np.finfo(np.float32).max).astype(np.float32)
        with np.errstate(over="ignore"):  # FLT_MAX steps to inf: a key too
            x = np.concatenate([x, np.nextafter(x, np.float32(-np.inf)), np.nextafter(x, np.float32(np.inf))])
        x_keys = native.float32_keys(x)
    else:
        assert ranks is not None
    for node in np.flatnonzero(split):
        if precision == "float64":
            x_keys = np.searchsorted(ranks[tables.feature[node]], x, side="left") + 1
        want = x.astype(np.float64) <= tables.threshold[node]
        np.testing.assert_array_equal(x_keys <= keys[node], want)


def test_unsuitable_models_go_to_tl2cgen():
    """A model the node arrays cannot express exactly is left to TL2cgen (an ==
    test here), and so is one whose trees are too unbalanced to walk at full depth."""
    builder = _regressor(1)
    _emit(builder, [("split", 0, 1.0, True, "==", 1, 2), ("leaf", 1.0), ("leaf", 2.0)])
    model = builder.commit()
    with pytest.raises(Unsuitable, match="operator"):
        NodeTables.of(model)
    evaluator, tables, why = worker.choose_evaluator(model)
    assert evaluator == native.EVALUATOR_TL2CGEN and tables is None and "operator" in why

    broom = _regressor(1)  # 63 leaves at depth 6, then a chain of 30: full depth 36, mean 11
    _emit(broom, _broom(6, 30))
    evaluator, _, why = worker.choose_evaluator(broom.commit())
    assert evaluator == native.EVALUATOR_TL2CGEN and "unbalanced" in why


def test_quick_scorer_takes_trees_of_at_most_64_leaves(tmp_path, monkeypatch):
    """64 leaves fill QuickScorer's word; a tree of 65 is refused to it (the model
    then gets node arrays), and so is a model whose trees have many more tests than
    a node-array walk has steps."""
    small = _build(**HAND_BUILT["regression"])  # depth <= 3: at most 7 tests to 3 steps
    evaluator, _, why = worker.choose_evaluator(small)
    assert evaluator == native.EVALUATOR_QUICK_SCORER and "tests per node-array step" in why
    full = _build(**HAND_BUILT["64_leaves"])  # 63 tests a tree to 6 steps
    assert worker.choose_evaluator(full)[0] == native.EVALUATOR_NODE_ARRAYS
    monkeypatch.setattr(native, "QUICK_SCORER_MAX_TESTS_PER_STEP", 63 / 6)
    evaluator, _, why = worker.choose_evaluator(full)
    assert evaluator == native.EVALUATOR_QUICK_SCORER and "at most 64 leaves" in why
    monkeypatch.undo()

    over = _regressor(1)  # 63 leaves at depth 6 and a chain of one split: 65 leaves
    _emit(over, _broom(6, 1))
    over = over.commit()
    tables = NodeTables.of(over)
    keys, _ = native.node_keys(tables, "float64", 1)
    with pytest.raises(Unsuitable, match="65 leaves"):
        QuickScorerTables.of(tables, keys)
    evaluator, _, why = worker.choose_evaluator(over)
    assert evaluator == native.EVALUATOR_NODE_ARRAYS
    with pytest.raises(compiler.BuildError, match="65 leaves"):
        _library(over, "float64", tmp_path, native.EVALUATOR_QUICK_SCORER)


def test_quick_scorer_words_keep_the_leaves_a_failed_test_leaves_reachable():
    """Leaves are numbered left to right; a test's `keep` clears exactly the leaves
    under its first child, and a tree's tests are sorted by feature and key."""
    model = _build(**HAND_BUILT["64_leaves"])
    tables = NodeTables.of(model)
    keys, _ = native.node_keys(tables, "float64", int(model.num_feature))
    qs = QuickScorerTables.of(tables, keys)
    assert np.all(np.diff(qs.leaf_begin) == 64) and np.all(np.diff(qs.begin) == 63)
    for t in range(len(qs.begin) - 1):
        order = [(int(tables.feature[i]), bool(tables.missing_second[i]), int(keys[i]))
                 for i in qs.node[qs.begin[t]:qs.begin[t + 1]]]
        assert order == sorted(order)
        cleared = sorted(64 - bin(int(k)).count("1") for k in qs.keep[qs.begin[t]:qs.begin[t + 1]])
        # a complete tree of depth 6: 32 tests clear 1 leaf, 16 clear 2, ... 1 clears 32
        assert cleared == sorted([2**d for d in range(6) for _ in range(2**(5 - d))])


def _broom(depth: int, chain: int) -> list[tuple]:
    """A complete tree of `depth` whose last leaf is replaced by a chain of splits."""
    nodes: list[tuple] = []

    def grow(d: int, last: bool) -> int:
        me = len(nodes)
        nodes.append(())
        if d == depth and last:
            link = me
            for c in range(chain):  # each link: a leaf on the left, the rest on the right
                nodes[link] = ("split", 0, float(c), False, "<=", link + 1, link + 2)
                nodes.extend([("leaf", float(c)), ("leaf", -1.0)])
                link += 2
        elif d == depth:
            nodes[me] = ("leaf", float(me))
        else:
            left = grow(d + 1, False)
            nodes[me] = ("split", 0, float(-d), True, "<=", left, grow(d + 1, last))
        return me

    grow(0, True)
    return nodes


SKLEARN = ("sk_random_forest_multiclass", "sk_gradient_boosting_binary", "sk_hist_poisson",
           "sk_gradient_boosting_regression")


@pytest.mark.parametrize("evaluator", sorted(EVALUATORS))
@pytest.mark.parametrize("name", SKLEARN)
def test_sklearn_models_on_threshold_rows_with_every_evaluator(registry, name, evaluator, tmp_path):
    """The estimator itself is the reference here: rows at every threshold and one
    float64/float32 step either side (no NaN: the estimator sees imputed values)."""
    art = registry.artifact(name)
    est = registry.trained(name).estimator
    model = art.treelite_model()
    precision = art.manifest["estimator"]["input_precision"]
    X = worker.probe_matrix(model, precision, rows=3000, seed=5)
    X = np.where(np.isnan(X), 0.5, X)
    X = np.clip(X, -3.4e38, 3.4e38)  # the tree module refuses values beyond float32
    _, lib = _library(model, precision, tmp_path, EVALUATORS[evaluator])
    layout = trees.TreeLayout.of(model)
    got = layout.outputs(lib.margins(X, round32=precision == "float32"), art.manifest["problem_type"])
    want = est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)
    assert_equivalent(got, want, what=f"{name} {evaluator}")


def test_chosen_evaluator_is_reported(registry):
    pred = registry.predictor("random_forest_binary")
    evaluator, _, why = worker.choose_evaluator(registry.artifact("random_forest_binary").treelite_model())
    assert pred.info["evaluator"] == native.EVALUATOR_NAMES[evaluator]
    assert pred.info["evaluator_reason"] == why and ("leaf depth" in why or "tests per" in why)
