"""The fleet's throughput: 1, 2 and 3 `mlproxy serve` behind HAProxy (TCP mode).

One embedded Postgres, up to three proxies in front of it sharing its catalog and a
snapshot store (a shared temporary directory), and HAProxy round-robin over the first
N of them. pgbench runs mix's custom script through HAProxy in prepared mode: each
transaction picks a random id and runs a plain primary-key select, or (`--model-percent`
of the time) a one-row model call on predict_sql's table and XGBOOST model, trained
through the first proxy and served by all. The table gives tps and latency per fleet
size, and the speed-up over one proxy.

On this machine (2 cores shared with Postgres, pgbench and HAProxy) more proxies
cannot add CPU: the figure shows what the load balancer and the extra processes cost,
not the scaling a fleet on separate hosts gets. HAProxy comes from Debian's package
(.ci/install-haproxy); without it the benchmark says so and stops (exit 2).

    python -m benchmarks.scale                 # 20k rows, 16 clients, 10-second runs
    python -m benchmarks.scale --quick         # 5k rows, 3-second runs
    python -m benchmarks.scale --proxies 1,3 --clients 32 --seconds 20
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import psycopg

from benchmarks.mix.run import script
from benchmarks.passthrough.pgbench import measure_options
from benchmarks.passthrough.servers import Target, embedded_postgres, mlproxy
from benchmarks.predict_sql.run import CALL, create_table, train

from .haproxy import INSTALL, haproxy_program, start_haproxy

RESULTS = Path(__file__).resolve().parents[1] / "results"


def run_fleets(haproxy: str, proxies: list[Target], sizes: list[int], clients: int, seconds: int,
               script_path: Path, work: Path) -> list[dict]:
    results = []
    for size in sizes:
        balancer = start_haproxy(haproxy, [(p.host, p.port) for p in proxies[:size]], work)
        try:
            target = Target(f"haproxy-{size}", balancer.host, balancer.port)
            run, _ = measure_options(target, "fleet", ["-f", str(script_path)], clients, seconds,
                                     "prepared")
        finally:
            balancer.stop()
        if run.failed:
            raise RuntimeError(f"{size} proxies: {run.failed} failed transactions")
        results.append({**dataclasses.asdict(run), "proxies": size})
        print(f"  proxies={size}  tps={run.tps:10.1f}  latency={run.latency_ms:8.3f} ms", flush=True)
    return results


def render(results: list[dict]) -> str:
    base = next((r["tps"] for r in results if r["proxies"] == 1), None)
    lines = [["proxies", "clients", "tps", "latency ms", "vs 1 proxy"]]
    for r in results:
        lines.append([str(r["proxies"]), str(r["clients"]), f"{r['tps']:.0f}", f"{r['latency_ms']:.3f}",
                      f"{r['tps'] / base:.2f}x" if base else "-"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5k rows, 3-second runs (scale-fleet-quick.json)")
    parser.add_argument("--proxies", default="1,2,3", help="fleet sizes (default 1,2,3; at most 3)")
    parser.add_argument("--clients", type=int, default=16, help="pgbench clients (default 16)")
    parser.add_argument("--seconds", type=int, default=None, help="length of each run (default 10)")
    parser.add_argument("--rows", type=int, default=None, help="table rows (default 20_000)")
    parser.add_argument("--model-percent", type=int, default=10,
                        help="share of transactions that call the model (default 10)")
    parser.add_argument("--trees", type=int, default=20, help="NUM_ROUND of the model (default 20)")
    parser.add_argument("--max-runtime", type=int, default=10, help="CREATE MODEL MAX_RUNTIME")
    parser.add_argument("--output", type=Path, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = [int(n) for n in args.proxies.split(",")]
    if not sizes or min(sizes) < 1 or max(sizes) > 3:
        raise SystemExit("--proxies: fleet sizes between 1 and 3")
    haproxy = haproxy_program()
    if haproxy is None:
        print(f"HAProxy NOT INSTALLED: the fleet benchmark cannot run; install it with {INSTALL} "
              "(Debian's haproxy package)", file=sys.stderr, flush=True)
        return 2
    seconds = args.seconds or (3 if args.quick else 10)
    rows = args.rows or (5_000 if args.quick else 20_000)
    output = args.output or RESULTS / ("scale-fleet-quick.json" if args.quick else "scale-fleet.json")
    settings = {"max_connections": str(4 * args.clients + 60), "shared_buffers": "256MB"}
    meta = {
        "benchmark": "scale-fleet",
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": seconds, "rows": rows, "clients": args.clients, "proxies": sizes,
        "model_percent": args.model_percent, "mode": "prepared", "haproxy": haproxy,
        "postgres_settings": settings,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_start": os.getloadavg()},
    }
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        direct = stack.enter_context(embedded_postgres(work, settings))
        store = work / "store"
        store.mkdir()
        proxies = [stack.enter_context(mlproxy(direct, work / f"mlproxy{i}.log",
                                               "--data-dir", str(work / f"data{i}"),
                                               "--snapshot-store", f"file://{store}"))
                   for i in range(max(sizes))]
        dsns = [f"host={p.host} port={p.port} user=postgres dbname=postgres sslmode=disable"
                for p in proxies]
        with psycopg.connect(f"host={direct.host} port={direct.port} user=postgres dbname=postgres",
                             autocommit=True) as conn_direct, \
                psycopg.connect(dsns[0], autocommit=True) as first:
            print(f"generating {rows:,} rows ...", flush=True)
            create_table(conn_direct, rows)
            print(f"training ({args.trees} trees) through proxy 1 ...", flush=True)
            train(first, rows, args.max_runtime, args.trees)
        # every proxy serves the model before it is measured
        for dsn in dsns:
            with psycopg.connect(dsn, autocommit=True) as conn:
                (value,) = conn.execute(f"SELECT {CALL} FROM bench WHERE id = 1").fetchone()
                assert isinstance(value, float), value
        script_path = work / "fleet.sql"
        script_path.write_text(script(rows, args.model_percent, CALL))
        results = run_fleets(haproxy, proxies, sizes, args.clients, seconds, script_path, work)
    meta["loadavg_end"] = os.getloadavg()
    table = render(results)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({**meta, "runs": results,
                                  "script": script(rows, args.model_percent, CALL)}, indent=2))
    print(table)
    print(f"wrote {output}")
    return 0
