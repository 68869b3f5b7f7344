"""The build itself, run in a worker process: `python -m compiler.worker`.

Reads artifact bytes on stdin, generates C with TL2cgen, adds the batch driver,
compiles with the local C compiler (translation units in parallel), checks the
library against treelite.gtil on probe rows that sit on and next to every split
threshold, and publishes it into the cache. Prints one JSON line: the result, or
{"error": ...} with exit status 1. Running in its own process keeps a compiler that
hangs or a generator that crashes away from the proxy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tl2cgen
import treelite

from . import cache, native, quick_scorer, trees
from .artifact import Artifact, load
from .errors import BuildError
from .node_tables import NodeTables, Unsuitable

#: not a multiple of the block or lane counts, so each thread's share ends in a
#: partial block and a partial lane group (the driver's tail paths are tested too)
PROBE_ROWS = 4093


def choose_units(model: treelite.Model, jobs: int) -> int:
    """TL2cgen's parallel_comp: enough units to keep every compile job busy and to
    bound each unit's size; never more than there are trees."""
    nodes = sum(int(model.get_tree_accessor(t).get_field("num_nodes")[0]) for t in range(model.num_tree))
    wanted = max(jobs, math.ceil(nodes / native.NODES_PER_UNIT))
    return int(max(1, min(wanted, model.num_tree, native.MAX_UNITS)))


def build(artifact: Artifact, cache_dir: Path, *, toolchain: str, jobs: int) -> dict[str, Any]:
    """Build (or find) the library for a tree artifact; returns the build.json dict
    plus "library" and "cached"."""
    with cache.build_lock(cache_dir, artifact.sha256):
        hit = cache.lookup(cache_dir, artifact.sha256)
        if hit is not None:
            return {**hit.info, "library": str(hit.library), "cached": True}
        tmp = cache.temp_dir(cache_dir, artifact.sha256)
        try:
            info = _compile(artifact, tmp, toolchain=toolchain, jobs=jobs)
            entry = cache.publish(tmp, cache_dir, artifact.sha256)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return {**info, "library": str(entry / cache.LIBRARY_NAME), "cached": False}


def choose_evaluator(model: treelite.Model) -> tuple[int, NodeTables | None, str]:
    """(evaluator, its node tables or None, why). QuickScorer when every tree has at
    most 64 leaves and its tests number at most QUICK_SCORER_MAX_TESTS_PER_STEP per
    step of the node-array walk; else node arrays unless too unbalanced
    (NODE_ARRAYS_MAX_WASTE); else TL2cgen. See docs/compiler.md."""
    try:
        tables = NodeTables.of(model)
    except Unsuitable as exc:
        return native.EVALUATOR_TL2CGEN, None, f"node arrays cannot express it: {exc}"
    waste = float(tables.depths.sum() / max(tables.mean_leaf_depths.sum(), 1e-9))
    leaves = np.diff(np.searchsorted(np.flatnonzero(tables.first == np.arange(len(tables.first))),
                                     np.append(tables.roots, len(tables.first))))
    per_step = float((leaves - 1).sum() / max(int(tables.depths.sum()), 1))
    if leaves.max() <= quick_scorer.MAX_LEAVES and per_step <= native.QUICK_SCORER_MAX_TESTS_PER_STEP:
        return (native.EVALUATOR_QUICK_SCORER, tables,
                f"at most {int(leaves.max())} leaves a tree, {per_step:.2f} tests per node-array step")
    if waste > native.NODE_ARRAYS_MAX_WASTE:
        return (native.EVALUATOR_TL2CGEN, None,
                f"unbalanced trees: fixed-depth walks take {waste:.2f}x the mean leaf depth")
    return native.EVALUATOR_NODE_ARRAYS, tables, f"fixed-depth walks take {waste:.2f}x the mean leaf depth"


def _compile(artifact: Artifact, out: Path, *, toolchain: str, jobs: int) -> dict[str, Any]:
    info = compile_model(artifact.treelite_model(), artifact.manifest["estimator"]["input_precision"], out,
                         toolchain=toolchain, jobs=jobs)
    info = {"artifact_sha256": artifact.sha256, **info}
    (out / cache.BUILD_INFO).write_text(json.dumps(info, indent=1, sort_keys=True))
    return info


def compile_model(model: treelite.Model, precision: str, out: Path, *, toolchain: str, jobs: int,
                  evaluator: int | None = None) -> dict[str, Any]:
    """Compile `model` into out/model.so and self-test it against GTIL; returns the
    build facts. `evaluator` overrides choose_evaluator (tests compare the two)."""
    start = time.perf_counter()
    layout = trees.TreeLayout.of(model)
    src = out / "src"
    chosen, tables, why = choose_evaluator(model)
    if evaluator is not None and evaluator != chosen:
        why = "requested"
        tables = NodeTables.of(model) if evaluator != native.EVALUATOR_TL2CGEN else None
    else:
        evaluator = chosen
    units = choose_units(model, jobs) if evaluator == native.EVALUATOR_TL2CGEN else 1
    try:
        if tables is not None:
            src.mkdir()
            quick = evaluator == native.EVALUATOR_QUICK_SCORER
            (src / "mlpx_driver.c").write_text(native.render_node_driver(model, tables, precision,
                                                                         quick_scorer=quick))
            recipe = {"target": "predictor", "sources": [{"name": "mlpx_driver", "length": 0}]}
            (src / "recipe.json").write_text(json.dumps(recipe))
            options = native.QUICK_SCORER_COMPILE_OPTIONS if quick else native.NODE_ARRAYS_COMPILE_OPTIONS
            n_units = 1
        else:
            tl2cgen.generate_c_code(model, src, params={"quantize": 1, "parallel_comp": units})
            n_units = native.unit_count((src / "header.h").read_text())
            (src / "mlpx_driver.c").write_text(native.render_driver(model, n_units))
            recipe_path = src / "recipe.json"
            recipe = json.loads(recipe_path.read_text())
            recipe["sources"].append({"name": "mlpx_driver", "length": 0})
            recipe_path.write_text(json.dumps(recipe))
            options = native.COMPILE_OPTIONS
        generated = time.perf_counter()
        built = tl2cgen.create_shared(toolchain, src, nthread=jobs, options=list(options),
                                      long_build_time_warning=False)
    except (tl2cgen.TL2cgenError, treelite.TreeliteError, ValueError, OSError) as exc:  # Unsuitable too
        raise BuildError(f"native build with {toolchain!r} failed: {_tail(str(exc))}") from exc
    compiled = time.perf_counter()
    library = out / cache.LIBRARY_NAME
    os.replace(built, library)
    shutil.rmtree(src, ignore_errors=True)
    worst = self_test(model, layout, library, precision)
    return {
        "library_sha256": cache.file_sha256(library),
        "build_seconds": round(time.perf_counter() - start, 3),
        "codegen_seconds": round(generated - start, 3),
        "compile_seconds": round(compiled - generated, 3),
        "toolchain": toolchain,
        "options": options,
        "evaluator": native.EVALUATOR_NAMES[evaluator],
        "evaluator_reason": why,
        "params": {"quantize": 1, "parallel_comp": units} if tables is None else {"lanes": native.LANES},
        "translation_units": n_units,
        "jobs": jobs,
        "n_trees": layout.n_trees,
        "self_test_max_abs_diff": worst,
        "tl2cgen": tl2cgen.__version__,
        "treelite": treelite.__version__,
        "built_at": time.time(),
    }


def probe_matrix(model: treelite.Model, precision: str, rows: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """Rows whose values sit exactly on, and one step either side of, every split
    threshold (in float64 and, for float32 models, float32 steps), plus NaN and
    extremes: the values where a wrong comparison or quantization would show."""
    tables, categorical = trees.split_thresholds(model)
    rng = np.random.default_rng(seed)
    X = np.empty((rows, len(tables)))
    for j, t in enumerate(tables):
        if categorical[j]:
            values = np.concatenate([np.arange(-1.0, 70.0), [np.nan, 0.5]])
        else:
            values = [t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf), [np.nan, 0.0, -1e300, 1e300, 3.5e38]]
            if precision == "float32" and len(t):
                t32 = t.astype(np.float32)
                values += [np.nextafter(t32, np.float32(-np.inf)), np.nextafter(t32, np.float32(np.inf))]
            values = np.concatenate([np.asarray(v, dtype=np.float64) for v in values])
        X[:, j] = rng.permutation(np.resize(values, rows))
    return X


def self_test(model: treelite.Model, layout: trees.TreeLayout, library: Path, precision: str) -> float:
    """Compare the library with treelite.gtil; raise BuildError on any disagreement."""
    lib = native.NativeLibrary(library, n_features=layout.n_features, n_outputs=layout.n_outputs)
    X = probe_matrix(model, precision)
    got = lib.margins(X, round32=precision == "float32", nthread=2)
    want = trees.gtil_margins(model, X, precision, nthread=1)
    if model.get_tree_accessor(0).get_field("leaf_value").dtype == np.float32 and len(X):
        # GTIL sums float32 leaves (XGBoost models) in float32, the library in
        # float64: the reference is then GTIL's leaves summed in float64
        want = trees.leaf_sum_margins(model, layout, X, precision)
    diff = np.abs(got - want)
    if not np.all(diff <= 1e-9 * np.maximum(1.0, np.abs(want))):
        row = int(np.argmax(diff.max(axis=1)))
        raise BuildError(f"compiled library disagrees with treelite.gtil on probe row {row} "
                         f"(max difference {float(diff.max()):.3g}); not using it")
    return float(diff.max()) if diff.size else 0.0


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compiler.worker", description=__doc__)
    parser.add_argument("--cache-dir", required=True, type=Path)
    parser.add_argument("--toolchain", required=True)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--expected-sha256")
    args = parser.parse_args(argv)
    try:
        artifact = load(sys.stdin.buffer.read(), args.expected_sha256)
        if artifact.kind != "tree":
            raise BuildError(f"only tree models are compiled; this artifact is {artifact.kind!r}")
        result = build(artifact, args.cache_dir, toolchain=args.toolchain, jobs=max(1, args.jobs))
    except Exception as exc:  # reported to the parent as data, never as a traceback
        print(json.dumps({"error": str(exc), "type": type(exc).__name__}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
