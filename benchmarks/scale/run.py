"""Training at scale: local worker vs a Dask LocalCluster of N workers.

For each size (cells = rows x columns of the exported table: 1M, 10M, 50M) the same
table (10 numeric features and a binary target with an interaction and noise) is
trained twice with MODEL_TYPE XGBOOST and the same MAX_RUNTIME: once as a local
job (automl.train in this process, all its cores) and once with `cluster=` a
dask.distributed LocalCluster of N worker processes, where the search's trials run
as tasks and the winner's final fit runs with xgboost.dask on row partitions. Reports
wall time, trials, held-out F1/AUC and the partitions of the final fit; and the
per-partition cost: one fixed XGBoost fit (50 rounds, depth 6) on the largest
size's selection rows, locally and with xgboost.dask at 2, 4, 8 partitions.

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
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import automl  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
FEATURES = 10
SIZES = {"1M": 1_000_000, "10M": 10_000_000, "50M": 50_000_000}


def make_table(cells: int, seed: int = 0) -> pa.Table:
    rows = cells // (FEATURES + 1)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, FEATURES)).astype(np.float64)
    y = X[:, 0] + X[:, 1] * X[:, 2] - 0.5 * X[:, 3] + 0.3 * np.sin(3 * X[:, 4]) + rng.normal(0, 0.7, rows) > 0
    return pa.table({**{f"f{i}": X[:, i] for i in range(FEATURES)}, "label": y})


def _train(table: pa.Table, cells: int, budget: float, client: Any) -> dict[str, Any]:
    started = time.monotonic()
    model = automl.train(table, {"target": "label", "model_type": "XGBOOST", "max_runtime": budget,
                                 "max_cells": cells, "seed": 0}, cluster=client)
    seconds = time.monotonic() - started
    partitions = next((line for line in model.report if "xgboost.dask" in line), None)
    return {"seconds": round(seconds, 2), "trials": len(model.leaderboard),
            "f1": round(model.metrics["f1"], 4), "auc": round(model.metrics["auc"], 4),
            "rows_used": model.rows_used, "final_fit": partitions or "local refit"}


def partition_costs(client: Any, table: pa.Table) -> list[dict[str, Any]]:
    """One fixed XGBoost fit on the table, locally and via xgboost.dask at P partitions."""
    from automl.boosting import XGBModel
    from automl.cluster import fit_xgboost_partitioned

    X = np.column_stack([table.column(f"f{i}").to_numpy() for i in range(FEATURES)])
    y = table.column("label").to_numpy(zero_copy_only=False).astype(np.float64)
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.3, "seed": 0}
    out = []
    started = time.monotonic()
    XGBModel(dict(params), 50, 2).fit(X, y, None, nthread=os.cpu_count() or 1)
    out.append({"where": "local", "partitions": 1, "seconds": round(time.monotonic() - started, 2)})
    for parts in (2, 4, 8):
        started = time.monotonic()
        fit_xgboost_partitioned(client, XGBModel(dict(params), 50, 2), X, y, float("inf"), partitions=parts)
        seconds = time.monotonic() - started
        out.append({"where": "cluster", "partitions": parts, "seconds": round(seconds, 2),
                    "seconds_per_partition": round(seconds / parts, 3)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="all sizes (1M, 10M, 50M cells), not only 1M")
    ap.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=None)
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (1 thread each)")
    ap.add_argument("--budget", type=float, default=30.0, help="MAX_RUNTIME of each training, seconds")
    ap.add_argument("--out", type=Path, default=None, help="JSON file (default: benchmarks/results/scale-*.json)")
    args = ap.parse_args(argv)
    sizes = args.sizes or (list(SIZES) if args.full else ["1M"])
    from distributed import Client, LocalCluster

    rows = []
    print(f"{'cells':>6} {'mode':<12} {'seconds':>8} {'trials':>6} {'F1':>7} {'AUC':>7}  final fit", flush=True)
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster, set_as_default=False) as client:
        table = None
        for size in sizes:
            table = make_table(SIZES[size])
            for mode, target in (("local", None), (f"cluster x{args.workers}", client)):
                row = {"cells": size, "mode": mode, **_train(table, SIZES[size], args.budget, target)}
                rows.append(row)
                print(f"{size:>6} {mode:<12} {row['seconds']:>8.1f} {row['trials']:>6} {row['f1']:>7.4f} "
                      f"{row['auc']:>7.4f}  {row['final_fit']}", flush=True)
        costs = partition_costs(client, table)
    print("\nper-partition cost (one fit, 50 rounds, depth 6, on the largest table):")
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


if __name__ == "__main__":
    raise SystemExit(main())
