"""The cost of ML on a realistic mix, with pgbench.

A pgbench custom script in prepared mode (-M prepared): each transaction picks a
random id, then 90% of the time runs a plain primary-key select and 10% of the time a
one-row model call (`--model-percent`):

    SELECT x0, ..., c1 FROM bench WHERE id = :id                 (plain)
    SELECT id, predict_bench(x0, ..., c1) FROM bench WHERE id = :id  (model call)

on predict_sql's table and model (benchmarks/predict_sql: a generated table, an XGBOOST
regression trained through the proxy). Targets, at 1/16/64 clients:

    mlproxy         the script with the model call, through mlproxy
    pgbouncer       the same script with the model call replaced by a constant
                    (SELECT id, 0.0::float8 ...), through PgBouncer (session mode)
    mlproxy-const   the constant script through mlproxy: what the proxy costs alone
    direct          the constant script straight to Postgres' unix socket (the floor)

The headline is mlproxy / pgbouncer tps, measured in one run: runs are interleaved
(every target at one client count before the next) and their order rotates. pgbench
-r gives each statement's average latency, so the table also shows what a plain select
costs on a session that has prepared a model statement. PgBouncer comes from Debian's
package (benchmarks/install-pgbouncer.sh); without it the benchmark says so loudly and
measures the rest.

    python -m benchmarks.mix                # 100k rows, 10-second runs
    python -m benchmarks.mix --quick        # 20k rows, 3-second runs
    python -m benchmarks.mix --clients 1,16 --seconds 20 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import re
import statistics
import sys
import tempfile
from pathlib import Path

import psycopg

from benchmarks.passthrough.pgbench import measure_options
from benchmarks.passthrough.servers import (PGBOUNCER_NOT_RUN, Target, embedded_postgres,
                                            mlproxy, pgbouncer, pgbouncer_missing_banner,
                                            pgbouncer_program)
from benchmarks.predict_sql.run import CALL, FEATURES, create_table, train

RESULTS = Path(__file__).resolve().parents[1] / "results"
TARGETS = ("mlproxy", "pgbouncer", "mlproxy-const", "direct")
CONSTANT = "0.0::float8"  # what the model call becomes where there is no model

SCRIPT = """\
\\set id random(1, {rows})
\\set pick random(1, 100)
\\if :pick <= {percent}
SELECT id, {call} FROM bench WHERE id = :id;
\\else
SELECT {features} FROM bench WHERE id = :id;
\\endif
"""

# pgbench -r: "   0.123   0  SELECT ..." per command (average ms, failures, command).
_STATEMENT = re.compile(r"^\s+([\d.]+)\s+\d+\s+(SELECT .*)$", re.M)


def script(rows: int, percent: int, call: str) -> str:
    return SCRIPT.format(rows=rows, percent=percent, call=call, features=", ".join(FEATURES))


def statement_ms(report: str, call: str) -> dict[str, float]:
    """Average latency of the model statement and of the plain one, from pgbench -r."""
    found = {}
    for ms, text in _STATEMENT.findall(report):
        found["model_ms" if call in text else "plain_ms"] = float(ms)
    return found


def run_matrix(targets: list[tuple[str, Target, Path]], clients: list[int], seconds: int,
               repeat: int) -> list[dict]:
    """Every (label, target, script) at each client count, interleaved and rotated."""
    results = []
    turn = 0
    for count in clients:
        for _ in range(repeat):
            turn += 1
            order = targets[turn % len(targets):] + targets[:turn % len(targets)]
            for label, target, path in order:
                run, out = measure_options(target, "mix", ["-r", "-f", str(path)], count,
                                           seconds, "prepared")
                if run.failed:
                    raise RuntimeError(f"{label} c={count}: {run.failed} failed transactions")
                call = CALL if label == "mlproxy" else CONSTANT
                result = {**dataclasses.asdict(dataclasses.replace(run, target=label)),
                          **statement_ms(out, call)}
                results.append(result)
                print(f"  c={count:<3} {label:<13} tps={run.tps:10.1f} lat={run.latency_ms:8.3f} ms"
                      f"  model stmt={result.get('model_ms', 0):.3f} ms"
                      f"  plain stmt={result.get('plain_ms', 0):.3f} ms"
                      + (f"  cpu={run.cpu_us_per_tx:.1f} us/tx" if run.cpu_us_per_tx else ""),
                      flush=True)
    return results


def table(results: list[dict]) -> list[dict]:
    """One row per client count: each target's median run (by tps) and the ratios."""
    rows: dict[int, dict] = {}
    for (count, label) in sorted({(r["clients"], r["target"]) for r in results}):
        group = sorted((r for r in results if (r["clients"], r["target"]) == (count, label)),
                       key=lambda r: r["tps"])
        chosen = group[(len(group) - 1) // 2]
        rows.setdefault(count, {"clients": count})[label] = {
            key: chosen.get(key) for key in ("tps", "latency_ms", "model_ms", "plain_ms",
                                             "cpu_us_per_tx")}
    for row in rows.values():
        ml = row.get("mlproxy", {}).get("tps")
        for other in TARGETS[1:]:
            base = row.get(other, {}).get("tps")
            row[f"mlproxy/{other}"] = round(ml / base, 3) if ml and base else None
    return list(rows.values())


def render(rows: list[dict], percent: int) -> str:
    targets = [t for t in TARGETS if any(t in row for row in rows)]
    head = ["clients", *(f"{t} tps" for t in targets), "ml/bouncer", "ml/ml-const",
            "ml/direct", "model stmt ms", "plain stmt ms", "bouncer plain ms",
            *(f"{t} cpu us/tx" for t in targets if t != "direct")]
    lines = [head]
    for row in rows:
        line = [str(row["clients"])]
        line += [f"{row[t]['tps']:.0f}" if t in row else "-" for t in targets]
        for other in TARGETS[1:]:
            ratio = row.get(f"mlproxy/{other}")
            line.append(f"{ratio:.2f}" if ratio is not None else "-")
        ml, bouncer = row.get("mlproxy", {}), row.get("pgbouncer", {})
        for value in (ml.get("model_ms"), ml.get("plain_ms"), bouncer.get("plain_ms")):
            line.append(f"{value:.3f}" if value is not None else "-")
        # The relay's CPU time per transaction: steadier than tps on a busy machine.
        for t in targets:
            if t != "direct":
                cpu = row.get(t, {}).get("cpu_us_per_tx")
                line.append(f"{cpu:.1f}" if cpu is not None else "-")
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in lines]
    out.insert(1, "  ".join("-" * width for width in widths))
    ratios = [row["mlproxy/pgbouncer"] for row in rows if row.get("mlproxy/pgbouncer")]
    if ratios:
        out.append(f"mlproxy with {percent}% model calls vs PgBouncer with constants: "
                   f"worst {min(ratios):.2f}x, median {statistics.median(ratios):.2f}x")
    cpu = {t: [row[t]["cpu_us_per_tx"] for row in rows if row.get(t, {}).get("cpu_us_per_tx")]
           for t in ("mlproxy", "pgbouncer", "mlproxy-const")}
    if cpu["mlproxy"]:
        out.append("relay CPU per transaction, median over client counts: " + ", ".join(
            f"{t} {statistics.median(v):.1f} us" for t, v in cpu.items() if v))
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mix", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="20k rows, a 50-tree model, 3-second runs (mix-quick.json)")
    parser.add_argument("--seconds", type=int, default=None, help="length of each run (default 10)")
    parser.add_argument("--clients", default="1,16,64", help="client counts (default 1,16,64)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per cell; the table shows the median (default 1)")
    parser.add_argument("--rows", type=int, default=None, help="table rows (default 100_000)")
    parser.add_argument("--model-percent", type=int, default=10,
                        help="share of transactions that call the model (default 10)")
    parser.add_argument("--trees", type=int, default=None, help="NUM_ROUND (default 100)")
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--max-runtime", type=int, default=15, help="CREATE MODEL MAX_RUNTIME")
    parser.add_argument("--no-pgbouncer", action="store_true", help="skip PgBouncer")
    parser.add_argument("--output", type=Path, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    seconds = args.seconds or (3 if args.quick else 10)
    rows = args.rows or (20_000 if args.quick else 100_000)
    trees = args.trees or (50 if args.quick else 100)
    clients = [int(c) for c in args.clients.split(",")]
    if not 0 <= args.model_percent <= 100:
        raise SystemExit("--model-percent must be 0..100")
    use_bouncer = not args.no_pgbouncer and pgbouncer_program() is not None
    if not args.no_pgbouncer and not use_bouncer:
        print(pgbouncer_missing_banner(), file=sys.stderr, flush=True)
    output = args.output or RESULTS / ("mix-quick.json" if args.quick else "mix.json")
    settings = {"max_connections": str(2 * max(clients) + 30), "shared_buffers": "256MB"}
    meta = {
        "benchmark": "mix",
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": seconds, "rows": rows, "clients": clients, "repeat": args.repeat,
        "model_percent": args.model_percent, "mode": "prepared",
        "pgbench_threads": "min(2, clients)", "postgres_settings": settings,
        "pgbouncer": pgbouncer_program() if use_bouncer
        else None if args.no_pgbouncer else PGBOUNCER_NOT_RUN,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_start": os.getloadavg()},
    }
    with tempfile.TemporaryDirectory(prefix="bench-mix-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        direct = stack.enter_context(embedded_postgres(work, settings))
        # The proxy trains and caches models in the temp dir.
        proxy = stack.enter_context(mlproxy(direct, work / "mlproxy.log",
                                            "--data-dir", str(work / "data")))
        direct_dsn = f"host={direct.host} port={direct.port} user=postgres dbname=postgres"
        proxy_dsn = (f"host={proxy.host} port={proxy.port} user=postgres dbname=postgres "
                     f"sslmode=disable")
        with psycopg.connect(direct_dsn, autocommit=True) as conn_direct, \
                psycopg.connect(proxy_dsn, autocommit=True) as conn_proxy:
            print(f"generating {rows:,} rows ...", flush=True)
            create_table(conn_direct, rows)
            print(f"training ({trees} trees, MAX_RUNTIME {args.max_runtime}) ...", flush=True)
            info = train(conn_proxy, min(args.train_rows, rows), args.max_runtime, trees)
            # The predictor loaded and built, and a model call answers a number.
            (prediction,) = conn_proxy.execute(f"SELECT {CALL} FROM bench WHERE id = 1").fetchone()
            if not isinstance(prediction, float):
                raise RuntimeError(f"the model call answered {prediction!r}")
        meta["model"] = {"type": info.get("Model Type"), "trees": trees,
                         "training_time": info.get("Training Time")}
        scripts = {}
        for name, call in (("ml", CALL), ("const", CONSTANT)):
            scripts[name] = work / f"mix-{name}.sql"
            scripts[name].write_text(script(rows, args.model_percent, call))
        meta["scripts"] = {name: path.read_text() for name, path in scripts.items()}
        targets = [("mlproxy", proxy, scripts["ml"]), ("mlproxy-const", proxy, scripts["const"]),
                   ("direct", direct, scripts["const"])]
        if use_bouncer:
            bouncer = stack.enter_context(pgbouncer(direct, max(clients)))
            targets.insert(1, ("pgbouncer", bouncer, scripts["const"]))
        for label, target, path in targets:  # warm caches, connection paths, the predictor
            measure_options(target, "mix", ["-f", str(path)], 1, 1, "prepared")
        print(f"runs: {seconds} s each, -M prepared, {args.model_percent}% model calls", flush=True)
        results = run_matrix(targets, clients, seconds, args.repeat)
    meta["machine"]["loadavg_end"] = os.getloadavg()
    rows_out = table(results)
    print()
    print(render(rows_out, args.model_percent))
    if not args.no_pgbouncer and not use_bouncer:
        print(pgbouncer_missing_banner(), file=sys.stderr)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({**meta, "table": rows_out, "runs": results}, indent=2) + "\n")
    print(f"wrote {output}")
    return 0
