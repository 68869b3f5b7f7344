"""`python -m benchmarks.passthrough`: run the matrix, print the table, write JSON.

Runs are interleaved (every target at one client count before the next count), and
the order of targets rotates, so slow drift (background load, table bloat from the
TPC-B-like script) does not favour one target.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from proxy import pump
from proxy.embedded import bin_dir

from . import report
from .pgbench import SCRIPTS, Run, initialise, measure
from .servers import (PGBOUNCER_NOT_RUN, REPO, embedded_postgres, mlproxy, pgbouncer,
                      pgbouncer_missing_banner, pgbouncer_program)

RESULTS = REPO / "benchmarks" / "results"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.passthrough",
        description="pgbench direct to Postgres (unix socket), through mlproxy and "
                    "through PgBouncer (session mode), both on 127.0.0.1 TCP.")
    parser.add_argument("--seconds", type=int, default=10, help="length of each run (default 10)")
    parser.add_argument("--quick", action="store_true",
                        help="3-second runs, written to passthrough-quick.json")
    parser.add_argument("--clients", default="1,16,64",
                        help="comma-separated client counts (default 1,16,64)")
    parser.add_argument("--scripts", default=",".join(SCRIPTS),
                        help=f"comma-separated from {', '.join(SCRIPTS)} (default: all)")
    parser.add_argument("--prepared", action="store_true",
                        help="also run select-only with -M prepared")
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale factor (default 10)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per cell; the table shows the median (default 1)")
    parser.add_argument("--no-pgbouncer", action="store_true", help="skip PgBouncer")
    parser.add_argument("--relay", choices=["native", "python"], default="native",
                        help="mlproxy's --relay: the native pump (default) or the event loop")
    parser.add_argument("--output", type=Path, help="JSON path (default benchmarks/results/"
                                                   "passthrough.json or passthrough-quick.json)")
    return parser


def _version(*cmd: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.split("\n")[0]
    return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seconds = 3 if args.quick else args.seconds
    clients = [int(c) for c in args.clients.split(",")]
    cells = [(script, "simple") for script in args.scripts.split(",")]
    if args.prepared:
        cells.append(("select-only", "prepared"))
    use_bouncer = not args.no_pgbouncer and pgbouncer_program() is not None
    if not args.no_pgbouncer and not use_bouncer:
        print(pgbouncer_missing_banner(), file=sys.stderr, flush=True)
    settings = {"max_connections": str(2 * max(clients) + 30), "shared_buffers": "256MB",
                "synchronous_commit": "off"}
    meta = {
        "benchmark": "passthrough",
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": seconds, "scale": args.scale, "clients": clients, "repeat": args.repeat,
        "pgbench_threads": "min(2, clients)", "postgres_settings": settings,
        "mlproxy_relay": args.relay if pump.AVAILABLE else "python (the native relay is not built)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_start": os.getloadavg()},
        "versions": {"pgbench": _version(str(bin_dir() / "pgbench"), "--version"),
                     "pgbouncer": _version(pgbouncer_program(), "--version")
                     if use_bouncer else None if args.no_pgbouncer else PGBOUNCER_NOT_RUN,
                     "python": platform.python_version()},
        "targets": {"direct": "pgbench -> Postgres unix socket (the floor)",
                    "mlproxy": "pgbench -> 127.0.0.1 TCP -> mlproxy -> unix socket",
                    "pgbouncer": "pgbench -> 127.0.0.1 TCP -> PgBouncer session mode -> "
                                 "unix socket"},
    }
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-passthrough-") as tmp, \
            embedded_postgres(Path(tmp), settings) as direct, contextlib.ExitStack() as stack:
        print(f"initialising pgbench tables, scale {args.scale} ...", flush=True)
        initialise(direct, args.scale)
        targets = [direct, stack.enter_context(
            mlproxy(direct, Path(tmp) / "mlproxy.log", "--relay", args.relay))]
        if use_bouncer:
            targets.append(stack.enter_context(pgbouncer(direct, max(clients))))
        for target in targets:  # warm caches and connections paths once
            measure(target, "select-only", 1, 1)
        turn = 0
        for script, mode in cells:
            for count in clients:
                for _ in range(args.repeat):
                    turn += 1
                    for target in targets[turn % len(targets):] + targets[:turn % len(targets)]:
                        run = measure(target, script, count, seconds, mode)
                        runs.append(run)
                        print(f"  {script:<11} {mode:<8} c={count:<3} {target.name:<9} "
                              f"tps={run.tps:10.1f} lat={run.latency_ms:8.3f} ms "
                              f"failed={run.failed}"
                              + (f" cpu={run.cpu_us_per_tx:.1f} us/tx" if run.cpu_us_per_tx else ""),
                              flush=True)
    meta["machine"]["loadavg_end"] = os.getloadavg()
    table = report.rows(runs)
    print()
    print(report.render(table))
    print(report.summary(table))
    if not args.no_pgbouncer and not use_bouncer:
        print(pgbouncer_missing_banner(), file=sys.stderr)
    output = args.output or RESULTS / ("passthrough-quick.json" if args.quick else "passthrough.json")
    report.write_json(output, meta, runs)
    print(f"wrote {output}")
    return 0
