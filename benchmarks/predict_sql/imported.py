"""An imported XGBoost model (bring your own model) in SQL vs xgboost in the client.

A regression model of `--trees` trees (500 by default, depth 6) is trained with
xgboost in this process on generated rows, imported with
`CREATE MODEL ... FROM (SELECT body FROM model_files) FUNCTION ... RETURNS float8`
(the bytea form: no --import-dir needed), and then, on a table of `--rows` rows (id
and 10 float8 features, generated server-side), the time until the client (psycopg,
streaming in chunks) has seen the last row of:

  (a) mlproxy   SELECT id, predict_imported(<features>) FROM bench_imp   through mlproxy
  (b) floor     SELECT id, <features> FROM bench_imp                     straight to Postgres
  (c) xgboost   the same fetch straight to Postgres, and xgboost's own predict
                (Booster.inplace_predict) on each chunk in the client, one thread
                (as mlproxy predicts a batch on one); --xgb-threads changes that

It also records the import itself (CREATE MODEL: read, check, compile) and checks
that the SQL answers equal xgboost's on a sample (float32 precision, as XGBoost sums
leaves in float32). Prints a table and writes JSON under benchmarks/results/.

    python -m benchmarks.predict_sql.imported            # 1M rows, 500 trees, 3 repeats
    python -m benchmarks.predict_sql.imported --quick    # 100k rows, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from benchmarks.passthrough.servers import embedded_postgres, mlproxy

from .run import CHUNK, RESULTS, stream

FEATURES = [f"x{i}" for i in range(10)]
CALL = f"predict_imported({', '.join(FEATURES)})"
TABLE = """
SELECT setseed(0.25);
CREATE TABLE bench_imp AS
SELECT g::bigint AS id, {random} FROM generate_series(1, {rows}) g;
ALTER TABLE bench_imp ADD PRIMARY KEY (id);
"""


def train(direct: psycopg.Connection, train_rows: int, trees: int):
    import xgboost as xgb

    X = np.array(direct.execute(f"SELECT {', '.join(FEATURES)} FROM bench_imp WHERE id <= {train_rows}").fetchall())
    y = 3 * X[:, 0] - 2 * X[:, 1] + X[:, 2] * X[:, 3] + np.sin(X[:, 4]) * 4 + (X[:, 5] > 5) * 6
    y = y + np.random.default_rng(0).normal(size=len(y))
    return xgb.train({"objective": "reg:squarederror", "max_depth": 6, "eta": 0.1, "nthread": 1},
                     xgb.DMatrix(X, y), trees)


def import_model(proxy: psycopg.Connection, booster) -> float:
    body = bytes(booster.save_raw("json"))
    proxy.execute("DROP TABLE IF EXISTS model_files")
    proxy.execute("CREATE TABLE model_files (name text PRIMARY KEY, body bytea)")
    proxy.execute("INSERT INTO model_files VALUES ('bench', %s)", (body,))
    started = time.perf_counter()
    proxy.execute(f"CREATE MODEL imported_bench FROM (SELECT body FROM model_files WHERE name = 'bench') "
                  f"FUNCTION predict_imported ({', '.join(['float8'] * len(FEATURES))}) RETURNS float8")
    return time.perf_counter() - started


def check_equal(proxy: psycopg.Connection, booster, rows: int = 2000) -> float:
    """The largest difference between SQL's answers and xgboost's on `rows` rows."""
    got = proxy.execute(f"SELECT {', '.join(FEATURES)}, {CALL} FROM bench_imp ORDER BY id LIMIT {rows}").fetchall()
    X = np.array([r[:-1] for r in got])
    expected = booster.inplace_predict(X)
    diff = float(np.max(np.abs(np.array([r[-1] for r in got]) - expected)))
    scale = float(np.max(np.abs(expected)))
    if diff > 1e-5 * max(1.0, scale):
        raise AssertionError(f"imported model answers differ from xgboost's by {diff}")
    return diff


def scans(direct_dsn: str, proxy_dsn: str, booster, binary: bool, repeat: int, xgb_threads: int) -> dict[str, Any]:
    predict_seconds: list[float] = []
    booster.set_param({"nthread": xgb_threads})

    def predict_chunk(rows: list) -> None:
        started = time.perf_counter()
        booster.inplace_predict(np.array([r[1:] for r in rows], dtype=np.float64))
        predict_seconds.append(time.perf_counter() - started)

    cases = {
        "mlproxy": (proxy_dsn, f"SELECT id, {CALL} FROM bench_imp", None),
        "floor": (direct_dsn, f"SELECT id, {', '.join(FEATURES)} FROM bench_imp", None),
        "xgboost": (direct_dsn, f"SELECT id, {', '.join(FEATURES)} FROM bench_imp", predict_chunk),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    rows = None
    for _ in range(repeat):  # rounds interleave the cases, so load changes hit all alike
        for name, (dsn, sql, on_chunk) in cases.items():
            seconds, count = stream(dsn, sql, binary, on_chunk)
            rows = count if rows is None else rows
            assert count == rows, (name, count, rows)
            times[name].append(seconds)
    out: dict[str, Any] = {name: {"seconds": t, "median": statistics.median(t), "best": min(t)}
                           for name, t in times.items()}
    out["xgboost"]["predict_seconds_per_round"] = sum(predict_seconds) / repeat
    out["rows"] = rows
    return out


def render(result: dict[str, Any]) -> str:
    scan = result["scan"]
    lines = [f"imported XGBoost model, {result['trees']} trees: CREATE MODEL took {result['import_seconds']:.2f} s; "
             f"max |SQL - xgboost| on {result['checked_rows']} rows = {result['max_abs_diff']:.2e}",
             f"{scan['rows']:,} rows, {'text' if result['text'] else 'binary'} results, "
             f"median of {len(scan['mlproxy']['seconds'])} (best in brackets)",
             f"{'':34}{'seconds':>10}{'rows/s':>14}"]
    labels = {"mlproxy": "(a) SELECT id, fn() mlproxy", "floor": "(b) SELECT id, features",
              "xgboost": f"(c) fetch + xgboost ({result['xgb_threads']} thr)"}
    for name, label in labels.items():
        s = scan[name]
        lines.append(f"{label:34}{s['median']:>10.2f}{scan['rows'] / s['median']:>14,.0f}  [{s['best']:.2f}]")
    lines.append(f"of (c), xgboost's predict alone: {scan['xgboost']['predict_seconds_per_round']:.2f} s")
    lines.append(f"(a)/(b) = {result['a_over_b']:.2f}   (a)/(c) = {result['a_over_c']:.2f}")
    lines.append(f"load average before {result['load_before']}, after {result['load_after']} "
                 f"on {os.cpu_count()} CPUs (shared machine: figures move with other work)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.predict_sql.imported", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="table rows (default 1_000_000; 100_000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer rows, one repeat")
    parser.add_argument("--repeat", type=int, default=None, help="rounds of the scans (default 3; 1 with --quick)")
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--trees", type=int, default=500)
    parser.add_argument("--xgb-threads", type=int, default=1, help="threads of xgboost's predict in (c)")
    parser.add_argument("--text", action="store_true", help="text result format (default binary)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    repeat = args.repeat or (1 if args.quick else 3)
    output = args.output or RESULTS / ("predict_sql_imported-quick.json" if args.quick else "predict_sql_imported.json")
    with tempfile.TemporaryDirectory(prefix="predict-imported-") as tmp:
        work = Path(tmp)
        os.environ["MLPROXY_DATA_DIR"] = str(work / "data")
        with embedded_postgres(work, {"max_connections": "50"}) as pg, \
                mlproxy(pg, work / "mlproxy.log") as proxy:
            direct_dsn = f"host={pg.host} port={pg.port} user=postgres dbname=postgres"
            proxy_dsn = f"host={proxy.host} port={proxy.port} user=postgres dbname=postgres sslmode=disable"
            result = run(direct_dsn, proxy_dsn, rows, repeat, args)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(f"\nwrote {output}")
    return 0


def run(direct_dsn: str, proxy_dsn: str, rows: int, repeat: int, args) -> dict[str, Any]:
    with psycopg.connect(direct_dsn, autocommit=True) as direct, \
            psycopg.connect(proxy_dsn, autocommit=True) as proxy:
        print(f"generating {rows:,} rows ...", flush=True)
        direct.execute(TABLE.format(rows=rows, random=", ".join(f"random() * 10 AS {c}" for c in FEATURES)))
        direct.execute("VACUUM ANALYZE bench_imp")
        print(f"training {args.trees} trees with xgboost ...", flush=True)
        booster = train(direct, min(args.train_rows, rows), args.trees)
        print("importing ...", flush=True)
        import_seconds = import_model(proxy, booster)
        checked = min(2000, rows)
        diff = check_equal(proxy, booster, checked)
    load_before = [round(x, 2) for x in os.getloadavg()]
    print("scans ...", flush=True)
    scan = scans(direct_dsn, proxy_dsn, booster, not args.text, repeat, args.xgb_threads)
    load_after = [round(x, 2) for x in os.getloadavg()]
    a, b, c = (scan[name]["median"] for name in ("mlproxy", "floor", "xgboost"))
    return {
        "benchmark": "predict_sql_imported", "rows": rows, "text": args.text, "repeat": repeat,
        "trees": args.trees, "train_rows": min(args.train_rows, rows), "xgb_threads": args.xgb_threads,
        "chunk": CHUNK, "import_seconds": round(import_seconds, 3), "checked_rows": checked, "max_abs_diff": diff,
        "scan": scan, "a_over_b": a / b, "a_over_c": a / c,
        "load_before": load_before, "load_after": load_after,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    raise SystemExit(main())
