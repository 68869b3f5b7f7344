"""Tree engines side by side on one model: YDF's QuickScorer against the compiled
library's evaluators (QuickScorer bitvectors, node arrays), per thread.

The model is YDF's own: a gradient boosted trees classifier of 300 trees of 63
leaves (best-first growth) trained by the `ydf` package on the inference benchmark's data
(20 features, 5% NULLs). Its trees are rebuilt as a Treelite model, test for test and
leaf for leaf (`from_ydf`), so both engines run the same trees; the compiled margins
are checked against YDF's predictions. Measured on one thread, rows/s:

    ydf engine     model.benchmark(num_threads=1): YDF's fastest engine
                   (GradientBoostedTreesQuickScorerExtendedHighway, SIMD QuickScorer),
                   its own C++ timing over batches of rows already in its format
    ydf predict    model.predict(num_threads=1) on numpy columns, CPU time of the process
    compiled       NativeLibrary.margins on the float64 matrix (NaN = missing), one
                   thread: the library's whole work (float32 rounding, keys, trees,
                   margins), per evaluator forced, wall (best) and CPU time

Needs the `ydf` package (`pip install ydf`, in the `bench` extra).

    python -m benchmarks.inference.engines            # 1e5 rows, 300 trees
    python -m benchmarks.inference.engines --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import treelite
from treelite.model_builder import Metadata, ModelBuilder, PostProcessorFunc, TreeAnnotation

import compiler
from compiler import native, trees, worker

from .run import N_FEATURES, RESULTS, TRAIN_ROWS, make_data, rate

N_TREES = 300
LEAVES = 63  # a tree's leaves; QuickScorer takes up to 64
EVALUATORS = {"quick_scorer": native.EVALUATOR_QUICK_SCORER, "node_arrays": native.EVALUATOR_NODE_ARRAYS}


def train_ydf(n_trees: int) -> Any:
    import ydf

    X, y = make_data(TRAIN_ROWS, seed=1)
    data = {**columns(X), "label": y}
    # best-first growth to 63 leaves: the shape issue 16 names (YDF's max_num_nodes)
    return ydf.GradientBoostedTreesLearner(label="label", num_trees=n_trees, growing_strategy="BEST_FIRST_GLOBAL",
                                           max_num_nodes=LEAVES, early_stopping="NONE").train(data, verbose=0)


def columns(X: np.ndarray) -> dict[str, np.ndarray]:
    return {f"f{j}": X[:, j] for j in range(X.shape[1])}


def from_ydf(model: Any) -> treelite.Model:
    """YDF's binary GBT classifier as a Treelite model with the same trees: a YDF
    test "x >= t" (NaN -> its `missing` answer) is Treelite's ">=" with the positive
    child on the left and default_left = missing; margins = leaves + YDF's initial
    prediction, sigmoid."""
    from ydf.model.tree import condition as ydf_condition

    names = [c.name for c in model.data_spec().columns]
    trees_ = model.get_all_trees()
    bias = float(np.asarray(model.initial_predictions()).reshape(-1)[0])
    builder = ModelBuilder(
        threshold_type="float64", leaf_output_type="float64",
        metadata=Metadata(num_feature=N_FEATURES, task_type="kBinaryClf", average_tree_output=False, num_target=1,
                          num_class=[1], leaf_vector_shape=(1, 1)),
        tree_annotation=TreeAnnotation(num_tree=len(trees_), target_id=[0] * len(trees_),
                                       class_id=[0] * len(trees_)),
        postprocessor=PostProcessorFunc(name="sigmoid"), base_scores=[bias])
    for tree in trees_:
        nodes: list[Any] = []  # pre-order: Treelite takes the first node as the root
        children: dict[int, tuple[int, int]] = {}

        def number(node: Any) -> int:
            key = len(nodes)
            nodes.append(node)
            if hasattr(node, "neg_child"):
                pos = number(node.pos_child)
                children[key] = (pos, number(node.neg_child))
            return key

        number(tree.root)
        builder.start_tree()
        for key, node in enumerate(nodes):
            builder.start_node(key)
            if key not in children:
                builder.leaf(float(node.value.value))
            else:
                cond = node.condition
                if not isinstance(cond, ydf_condition.NumericalHigherThanCondition):
                    raise ValueError(f"YDF condition {type(cond).__name__} is not converted")
                builder.numerical_test(int(names[cond.attribute][1:]), float(cond.threshold),
                                       default_left=bool(cond.missing), opname=">=",
                                       left_child_key=children[key][0], right_child_key=children[key][1])
            builder.end_node()
        builder.end_tree()
    return builder.commit()


def run(n_trees: int, rows: int, budget: float) -> dict[str, Any]:
    print(f"== YDF gradient boosted trees: {n_trees} trees of {LEAVES} leaves, {TRAIN_ROWS} training rows", flush=True)
    ydf_model = train_ydf(n_trees)
    model = from_ydf(ydf_model)
    leaves = [int(np.sum(model.get_tree_accessor(t).get_field("node_type") == 0)) for t in range(model.num_tree)]
    X, _ = make_data(rows, seed=2)
    Xf = np.asfortranarray(X)
    cols32 = {k: v.astype(np.float32) for k, v in columns(X).items()}
    chosen, tables, why = worker.choose_evaluator(model)
    result: dict[str, Any] = {
        "trees": int(model.num_tree), "leaves_mean": float(np.mean(leaves)), "leaves_max": int(max(leaves)),
        "depth_max": int(tables.depths.max()) if tables is not None else None,
        "rows": rows, "chosen_evaluator": native.EVALUATOR_NAMES[chosen], "chosen_reason": why, "engines": {},
    }
    t0, c0 = time.perf_counter(), time.process_time()
    engine = ydf_model.benchmark(cols32, benchmark_duration=max(1.0, 3 * budget), warmup_duration=0.5,
                                 batch_size=1000, num_threads=1)
    share = (time.process_time() - c0) / (time.perf_counter() - t0)  # of a core, on a busy machine < 1
    per_row_us = _ydf_single_thread_us(engine)
    result["engines"]["ydf_engine"] = {
        "best": 1e6 / per_row_us, "engine": ydf_model.list_compatible_engines()[0], "report": str(engine),
        # YDF times in wall time only; its rate over the share of a core the call got
        "cpu_estimate": 1e6 / per_row_us / max(min(share, 1.0), 1e-3), "core_share": share}
    want = np.asarray(ydf_model.predict(cols32, num_threads=1), dtype=np.float64).reshape(-1)
    result["engines"]["ydf_predict"] = _process_rate(lambda: ydf_model.predict(cols32, num_threads=1), rows, budget)
    with tempfile.TemporaryDirectory(prefix="mlproxy-engines-") as tmp:
        layout = trees.TreeLayout.of(model)
        for name, evaluator in EVALUATORS.items():
            out = Path(tmp) / name
            out.mkdir()
            info = worker.compile_model(model, "float32", out, toolchain=compiler.find_toolchain(), jobs=1,
                                        evaluator=evaluator)
            lib = native.NativeLibrary(out / compiler.cache.LIBRARY_NAME, n_features=N_FEATURES, n_outputs=1)
            stats, margins = rate(lambda: lib.margins(Xf, round32=True, nthread=1), rows, budget)
            proba = layout.outputs(margins, "BINARY_CLASSIFICATION")[:, 1]
            stats["build_seconds"] = info["build_seconds"]
            # YDF sums its leaves in float32: agreement to float32 precision
            stats["max_abs_diff_vs_ydf"] = float(np.max(np.abs(proba - want)))
            stats["margins"] = margins
            result["engines"][name] = stats
            print(f"   {name:<13} {stats['best']:>11,.0f} rows/s wall, {stats['cpu_best']:>11,.0f} CPU  "
                  f"(build {info['build_seconds']:.1f}s, max |p - ydf| {stats['max_abs_diff_vs_ydf']:.1e})", flush=True)
    qs, na = result["engines"]["quick_scorer"], result["engines"]["node_arrays"]
    result["bit_identical"] = bool(np.array_equal(qs.pop("margins"), na.pop("margins")))
    ydf_best = result["engines"]["ydf_engine"]["best"]
    result["ratios"] = {
        "quick_scorer_vs_ydf_engine": qs["best"] / ydf_best,

        "node_arrays_vs_ydf_engine": na["best"] / ydf_best,
        "node_arrays_cpu_vs_ydf_engine_cpu_estimate":
            na["cpu_best"] / result["engines"]["ydf_engine"]["cpu_estimate"],
        "quick_scorer_vs_node_arrays_cpu": qs["cpu_best"] / na["cpu_best"],
        "chosen_cpu_vs_ydf_engine_cpu_estimate":
            result["engines"][result["chosen_evaluator"]]["cpu_best"] / result["engines"]["ydf_engine"]["cpu_estimate"],
        "quick_scorer_cpu_vs_ydf_engine_cpu_estimate":
            qs["cpu_best"] / result["engines"]["ydf_engine"]["cpu_estimate"],
    }
    return result


def _ydf_single_thread_us(report: Any) -> float:
    """Microseconds per row on one thread from YDF's benchmark report."""
    for attr in ("duration_per_example", "single_thread_duration_per_example"):
        value = getattr(report, attr, None)
        if value is not None:
            return float(value) * 1e6
    line = next(line for line in str(report).splitlines() if line.startswith("Single-thread"))
    return float(line.split(":")[1].split()[0])


def _process_rate(fn: Any, rows: int, budget: float) -> dict[str, float]:
    """Rows/s of fn, best of repeats, in wall time and in the process's CPU time
    (YDF predicts on a thread of its own, so the caller's thread time says nothing)."""
    fn()
    walls, cpus, spent = [], [], 0.0
    while not walls or (spent < budget and len(walls) < 30):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        spent += walls[-1]
    return {"best": rows / min(walls), "cpu_best": rows / max(min(cpus), 1e-9), "runs": len(walls)}


def table(result: dict[str, Any]) -> str:
    e, r = result["engines"], result["ratios"]
    lines = [f"{result['trees']} trees, {result['leaves_mean']:.1f} leaves on average (at most "
             f"{result['leaves_max']}, depth up to {result['depth_max']}), {result['rows']:,} rows, one thread",
             f"{'engine':<34} {'rows/s (wall, best)':>20} {'rows/s (CPU)':>14}",
             f"{'ydf engine (QuickScorer, SIMD)':<34} {e['ydf_engine']['best']:>20,.0f} "
             f"{e['ydf_engine']['cpu_estimate']:>13,.0f}*",
             *(f"{label:<34} {e[key]['best']:>20,.0f} {e[key]['cpu_best']:>14,.0f}"
               for label, key in (("ydf predict (numpy columns)", "ydf_predict"),
                                  ("compiled, QuickScorer", "quick_scorer"), ("compiled, node arrays", "node_arrays"))),
             f"QuickScorer / ydf engine: {r['quick_scorer_vs_ydf_engine']:.2f}x in wall time, "
             f"{r['quick_scorer_cpu_vs_ydf_engine_cpu_estimate']:.2f}x in CPU time*; node arrays / ydf engine: "
             f"{r['node_arrays_vs_ydf_engine']:.2f}x, {r['node_arrays_cpu_vs_ydf_engine_cpu_estimate']:.2f}x*; "
             f"QuickScorer / node arrays (CPU): {r['quick_scorer_vs_node_arrays_cpu']:.2f}x",
             "* YDF's own timing is wall time: its rate over the share of a core its call got",
             f"chosen for this model: {result['chosen_evaluator']} ({result['chosen_reason']}); evaluators "
             f"bit-identical: {result['bit_identical']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inference.engines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2e4 rows, short budget")
    parser.add_argument("--rows", type=int, help="rows per batch (default 1e5)")
    parser.add_argument("--trees", type=int, default=N_TREES)
    parser.add_argument("--output", type=Path, help="JSON output (default benchmarks/results/engines[-quick].json)")
    args = parser.parse_args(argv)
    try:
        import ydf  # noqa: F401
    except ImportError:
        print("needs the ydf package: pip install ydf (or pip install -e '.[bench]')", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    result = run(args.trees, args.rows or (20_000 if args.quick else 100_000), 0.3 if args.quick else 1.0)
    text = table(result)
    print("\n" + text)
    out = args.output or RESULTS / ("engines-quick.json" if args.quick else "engines.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "inference.engines", "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "result": result, "table": text,
    }, indent=1, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
