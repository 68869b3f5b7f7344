"""Training at scale: local worker vs a Dask LocalCluster of N workers.

For each size (cells = rows x columns of the exported table: 1M, 10M, 50M) the same
table (10 numeric features and a binary target with an interaction and noise) is
written once as a snapshot would be (Parquet, row groups of ROW_GROUP_CELLS), then
trained twice with MODEL_TYPE XGBOOST and the same MAX_RUNTIME, each in a fresh
process (the job process, whose peak memory is reported):

- local: the snapshot read into the process and automl.train on it, as the proxy's
  local worker does;
- cluster: automl.train on the snapshot's path with a dask.distributed LocalCluster
  of N worker processes: the workers read the partitions, the search runs on the
  sample drawn there (automl/partitioned.py), and an XGBoost winner's final fit
  reads every non-test row on the workers (xgboost.dask).

Reports wall time, trials, held-out F1/AUC, rows used, the final fit and the job
process's peak RSS; and the per-partition cost: one fixed XGBoost fit (50 rounds,
depth 6) on the non-test rows of the 10M table (or the largest run below it),
locally in one process and read on the workers at 2, 4, 8 partitions.

    python -m benchmarks.scale.run                 # 1M cells only (bounded default)
    python -m benchmarks.scale.run --full             # 1M, 10M and 50M cells
    python -m benchmarks.scale.run --workers 2 --budget 60

Prints a table and writes JSON under benchmarks/results/ (scale-*.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

RESULTS = Path(__file__).resolve().parents[1] / "results"
REPO = Path(__file__).resolve().parents[2]
FEATURES = 10
SIZES = {"1M": 1_000_000, "10M": 10_000_000, "50M": 50_000_000}
#: rows generated at a time (the benchmark's own memory stays small too)
CHUNK_ROWS = 250_000


def _chunk(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, FEATURES)).astype(np.float64)
    y = X[:, 0] + X[:, 1] * X[:, 2] - 0.5 * X[:, 3] + 0.3 * np.sin(3 * X[:, 4]) + rng.normal(0, 0.7, rows) > 0
    return pa.table({**{f"f{i}": X[:, i] for i in range(FEATURES)}, "label": y})


def write_snapshot(cells: int, path: Path, seed: int = 0) -> int:
    """The table of `cells` cells as a snapshot's Parquet file; returns its rows."""
    import pyarrow.parquet as pq

    from proxy.training.snapshot import ROW_GROUP_CELLS

    rows = cells // (FEATURES + 1)
    group = max(1024, ROW_GROUP_CELLS // (FEATURES + 1))
    writer = None
    try:
        for i, start in enumerate(range(0, rows, CHUNK_ROWS)):
            chunk = _chunk(min(CHUNK_ROWS, rows - start), seed * 100_003 + i)
            writer = writer or pq.ParquetWriter(path, chunk.schema)
            writer.write_table(chunk, row_group_size=group)
    finally:
        if writer is not None:
            writer.close()
    return rows


def _options(cells: int, budget: float) -> dict[str, Any]:
    return {"target": "label", "model_type": "XGBOOST", "max_runtime": budget, "max_cells": cells, "seed": 0}


def run_one(path: str, mode: str, cells: int, budget: float, scheduler: str | None) -> dict[str, Any]:
    """One training in this process (a child of main): what it measured."""
    import automl
    from automl.partitioned import ParquetData

    if mode == "local":
        import pyarrow.parquet as pq

        started = time.monotonic()
        data: Any = pq.read_table(path)  # what the local worker's load_table does
        model = automl.train(data, _options(cells, budget))
        seconds = time.monotonic() - started
    else:
        from distributed import Client

        with Client(scheduler, set_as_default=False) as client:
            started = time.monotonic()
            model = automl.train(ParquetData(path), _options(cells, budget), cluster=client)
            seconds = time.monotonic() - started
    final = next((line for line in model.report if line.startswith("refit") or "kept" in line), "")
    sample = next((line for line in model.report if line.startswith("training data read where it is")), None)
    return {"seconds": round(seconds, 2), "trials": len(model.leaderboard),
            "f1": round(model.metrics["f1"], 4), "auc": round(model.metrics["auc"], 4),
            "rows_used": model.rows_used, "final_fit": final, "sample": sample,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def partition_costs(path: str, scheduler: str, parts_list: tuple[int, ...] = (2, 4, 8)) -> list[dict[str, Any]]:
    """One fixed XGBoost fit (50 rounds, depth 6) on the non-test rows of `path`:
    locally (read here, all cores), and read and fitted on the workers at P
    partitions (fit_xgboost_source, as a winner's final fit)."""
    import pyarrow.parquet as pq
    from distributed import Client

    from automl.boosting import XGBModel
    from automl.cluster import fit_xgboost_source
    from automl.partitioned import ParquetData, Plan, TargetCoding, row_uniforms
    from automl.validation import MAX_TEST_ROWS, TEST_FRACTION

    names = [f"f{i}" for i in range(FEATURES)]
    spec = {"version": 1, "inputs": [{"name": n, "type": "double precision"} for n in names],
            "features": [{"input": n, "op": "numeric", "fill": 0.0, "center": 0.0, "scale": 1.0} for n in names]}
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.3, "seed": 0}
    rows = pq.read_metadata(path).num_rows
    out = []
    table = pq.read_table(path)
    plan = Plan.make(rows, FEATURES + 1, 0, 1, TEST_FRACTION, MAX_TEST_ROWS)
    keep = row_uniforms(0, 0, rows) >= plan.test_share
    X = np.column_stack([table.column(n).to_numpy()[keep] for n in names])
    y = table.column("label").to_numpy(zero_copy_only=False)[keep].astype(np.float64)
    del table
    started = time.monotonic()
    XGBModel(dict(params), 50, 2).fit(X, y, None, nthread=os.cpu_count() or 1)
    out.append({"where": "local", "partitions": 1, "rows": len(y), "seconds": round(time.monotonic() - started, 2)})
    del X, y
    with Client(scheduler, set_as_default=False) as client:
        for parts in parts_list:
            bounds = tuple(int(b) for b in np.linspace(0, rows, parts + 1).astype(np.int64))
            p = Plan(rows, FEATURES + 1, 0, plan.test_share, plan.sample_share, bounds)
            started = time.monotonic()
            est = fit_xgboost_source(client, XGBModel(dict(params), 50, 2), ParquetData(path), p, names, spec,
                                     TargetCoding("label", False, (False, True)), time.monotonic() + 3600)
            seconds = time.monotonic() - started
            out.append({"where": "cluster", "partitions": parts, "rows": est.rows, "seconds": round(seconds, 2),
                        "seconds_per_partition": round(seconds / parts, 3)})
    return out


def _warm(scheduler: str) -> None:
    """The workers import the training modules and run one tiny xgboost.dask fit
    (~15 s once per cluster), as a long-running cluster has after its first job."""
    from distributed import Client

    from automl.boosting import XGBModel
    from automl.cluster import fit_xgboost_partitioned

    def preload() -> None:
        import automl.cluster  # noqa: F401
        import automl.train  # noqa: F401
        import xgboost.dask  # noqa: F401

    with Client(scheduler, set_as_default=False) as client:
        client.run(preload)
        X = np.random.default_rng(0).normal(size=(400, 2))
        fit_xgboost_partitioned(client, XGBModel({"objective": "binary:logistic"}, 2, 2), X,
                                (X[:, 0] > 0).astype(float), time.monotonic() + 300)


def convert_memory(csv_path: str, how: str) -> dict[str, Any]:
    """The proxy's side of the export: COPY's CSV of the table -> the snapshot's
    Parquet, as CREATE MODEL does it now (`streamed`: snapshot.convert_csv, keeping
    the check's 2M-cell sample) or as it did before (`whole`: read whole, written
    whole). In a fresh process: its peak RSS."""
    import shutil

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from automl.partitioned import SAMPLE_CELLS
    from proxy.training.snapshot import JobDir, convert_csv

    names = [*(f"f{i}" for i in range(FEATURES)), "label"]
    types = ["double precision"] * FEATURES + ["boolean"]
    job = JobDir(Path(csv_path).parent / f"job-{how}")
    job.path.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(csv_path, job.csv_file)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    rows = sum(1 for _ in open(job.csv_file, "rb"))
    if how == "streamed":
        kept = convert_csv(job, names, types, keep=min(1.0, SAMPLE_CELLS / (rows * len(names)))).num_rows
    else:
        table = pacsv.read_csv(job.csv_file, read_options=pacsv.ReadOptions(column_names=names),
                               convert_options=pacsv.ConvertOptions(column_types={n: pa.float64() for n in names[:-1]}
                                                                    | {"label": pa.bool_()},
                                                                    true_values=["1"], false_values=["0"]))
        pq.write_table(table, job.parquet_file)
        kept = table.num_rows
    seconds = time.monotonic() - started
    groups = pq.read_metadata(job.parquet_file).num_row_groups
    job.remove()
    return {"how": how, "rows": rows, "kept_in_memory": kept, "row_groups": groups, "seconds": round(seconds, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rss_before_mb": round(base / 1024)}


def write_csv(parquet: str, csv_path: str) -> None:
    """The snapshot's table as COPY (FORMAT csv) writes it: booleans as 1/0."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(parquet)
    with pacsv.CSVWriter(csv_path, pf.schema_arrow.remove(pf.schema_arrow.get_field_index("label"))
                         .append(pa.field("label", pa.int8())),
                         write_options=pacsv.WriteOptions(include_header=False)) as writer:
        for g in range(pf.num_row_groups):
            t = pf.read_row_group(g)
            writer.write_table(t.set_column(t.schema.get_field_index("label"), "label",
                                            t.column("label").cast(pa.int8())))


def _child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.scale.run", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="all sizes (1M, 10M, 50M cells), not only 1M")
    ap.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=None)
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (1 thread each)")
    ap.add_argument("--budget", type=float, default=30.0, help="MAX_RUNTIME of each training, seconds")
    ap.add_argument("--budget-50m", type=float, default=None, help="MAX_RUNTIME at 50M cells (default: --budget)")
    ap.add_argument("--no-costs", action="store_true", help="skip the per-partition costs")
    ap.add_argument("--out", type=Path, default=None, help="JSON file (default: benchmarks/results/scale-*.json)")
    # (internal: one measurement in a fresh process)
    ap.add_argument("--one", nargs=4, metavar=("PATH", "MODE", "CELLS", "BUDGET"), help=argparse.SUPPRESS)
    ap.add_argument("--costs", metavar="PATH", help=argparse.SUPPRESS)
    ap.add_argument("--scheduler", help=argparse.SUPPRESS)
    ap.add_argument("--convert", nargs=2, metavar=("CSV", "HOW"), help=argparse.SUPPRESS)
    ap.add_argument("--convert-only", action="store_true",
                    help="only the proxy's side: COPY's CSV -> Parquet, streamed vs read whole (peak RSS)")
    args = ap.parse_args(argv)
    if args.convert:
        print(json.dumps(convert_memory(*args.convert)))
        return 0
    if args.one:
        path, mode, cells, budget = args.one
        print(json.dumps(run_one(path, mode, int(cells), float(budget), args.scheduler)))
        return 0
    if args.costs:
        print(json.dumps(partition_costs(args.costs, args.scheduler)))
        return 0
    sizes = args.sizes or (list(SIZES) if args.full else ["1M"])
    if args.convert_only:
        return _convert_only(sizes, args.out)
    from distributed import LocalCluster

    rows = []
    costs: list[dict[str, Any]] = []
    print(f"{'cells':>6} {'mode':<12} {'seconds':>8} {'trials':>6} {'F1':>7} {'AUC':>7} {'RSS MB':>7}  final fit",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="mlproxy-scale-") as tmp, \
            LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                         silence_logs=40) as cluster:
        _warm(cluster.scheduler_address)
        paths = {}
        for size in sizes:
            paths[size] = str(Path(tmp) / f"{size}.parquet")
            n = write_snapshot(SIZES[size], Path(paths[size]))
            budget = args.budget_50m if size == "50M" and args.budget_50m else args.budget
            for mode in ("local", "cluster"):
                row = {"cells": size, "rows": n, "mode": mode if mode == "local" else f"cluster x{args.workers}",
                       "budget": budget}
                try:
                    row.update(_child(["--one", paths[size], mode, str(SIZES[size]), str(budget),
                                       "--scheduler", cluster.scheduler_address]))
                except RuntimeError as exc:  # e.g. MAX_RUNTIME too short for one trial: said, not fatal
                    row["error"] = str(exc).splitlines()[-1]
                    rows.append(row)
                    print(f"{size:>6} {row['mode']:<12} failed: {row['error']}", flush=True)
                    continue
                rows.append(row)
                print(f"{size:>6} {row['mode']:<12} {row['seconds']:>8.1f} {row['trials']:>6} {row['f1']:>7.4f} "
                      f"{row['auc']:>7.4f} {row['peak_rss_mb']:>7}  {row['final_fit']}", flush=True)
        if not args.no_costs:
            at = max((s for s in sizes if SIZES[s] <= SIZES["10M"]), key=SIZES.get)
            costs = _child(["--costs", paths[at], "--scheduler", cluster.scheduler_address])
            print(f"\nper-partition cost (one fit, 50 rounds, depth 6, on the {at} table's non-test rows):")
            for c in costs:
                print(f"  {c['where']:<8} partitions {c['partitions']:>2}: {c['seconds']:>7.2f} s")
    result = {"benchmark": "scale", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "load": os.getloadavg()[0]},
              "workers": args.workers, "budget": args.budget, "rows": rows, "partition_costs": costs}
    out = args.out or RESULTS / f"scale-{'-'.join(sizes)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {out}")
    return 0


def _convert_only(sizes: list[str], out: Path | None) -> int:
    results = []
    print(f"{'cells':>6} {'how':<9} {'seconds':>8} {'RSS MB':>7}  kept in memory, row groups", flush=True)
    with tempfile.TemporaryDirectory(prefix="mlproxy-convert-") as tmp:
        for size in sizes:
            parquet, csv_path = str(Path(tmp) / "t.parquet"), str(Path(tmp) / "t.csv")
            write_snapshot(SIZES[size], Path(parquet))
            write_csv(parquet, csv_path)
            os.unlink(parquet)
            for how in ("whole", "streamed"):
                row = {"cells": size, **_child(["--convert", csv_path, how])}
                results.append(row)
                print(f"{size:>6} {how:<9} {row['seconds']:>8.1f} {row['peak_rss_mb']:>7}  {row['kept_in_memory']} "
                      f"of {row['rows']} rows, {row['row_groups']} row groups", flush=True)
            os.unlink(csv_path)
    path = out or RESULTS / f"scale-convert-{'-'.join(sizes)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": "scale-convert", "rows": results}, indent=2) + "\n")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
