"""Remote models (CREATE MODEL ... SAGEMAKER) through mlproxy, measured at the client.

A table of `--rows` rows (id, 4 float8 features) and an inference endpoint of the
benchmark's own (server.py: aiohttp in its own process, each row's sum: the cost of
a model is left out). For MAX_BATCH_ROWS 1, 100 and 10,000:

  through mlproxy  SELECT id, f(x0, x1, x2, x3) FROM bench LIMIT n   rows/s at the client
  endpoint alone   the same rows POSTed by a client of its own (aiohttp, the same CSV,
                   the same batches, as many at once as mlproxy sends: --connections)

and the latency a model call adds to a one-row query (prepared `... WHERE id = $1`
through mlproxy, p50/p99 over interleaved iterations, with and without the call),
next to one one-row POST to the endpoint alone. Prints a table and writes JSON
under benchmarks/results/.

    python -m benchmarks.endpoint            # 100k rows
    python -m benchmarks.endpoint --quick    # 20k rows, fewer iterations
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.passthrough.servers import embedded_postgres, mlproxy  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
BATCHES = (1, 100, 10_000)
FEATURES = "x0, x1, x2, x3"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_endpoint(log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    with open(log, "wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "benchmarks.endpoint.server", str(port)],
                                   stdout=err, stderr=err, cwd=Path(__file__).resolve().parents[2])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/ping", timeout=1):
                return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the benchmark endpoint did not start; see {log}")


def rows_for(batch: int, rows: int) -> int:
    """Rows scored at a batch size: one request per row costs a round trip each."""
    return min(rows, {1: 2_000, 100: 50_000}.get(batch, rows))


def through_mlproxy(proxy: psycopg.Connection, batch: int, n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        with proxy.cursor(binary=True) as cur:
            cur.execute(f"SELECT id, f_{batch}({FEATURES}) FROM bench ORDER BY id LIMIT {n}")
            got = len(cur.fetchall())
        best = min(best, time.perf_counter() - started)
        assert got == n
    return n / best


def endpoint_alone(url: str, direct: psycopg.Connection, batch: int, n: int, connections: int,
                   repeat: int) -> float:
    import aiohttp

    lines = [",".join(repr(v) for v in row).encode() + b"\n" for row in
             direct.execute(f"SELECT {FEATURES} FROM bench ORDER BY id LIMIT {n}").fetchall()]
    bodies = [b"".join(lines[i:i + batch]) for i in range(0, n, batch)]

    async def run() -> float:
        limit = asyncio.Semaphore(connections)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit_per_host=connections)) as session:
            async def one(body: bytes) -> None:
                async with limit, session.post(url + "/invocations", data=body,
                                               headers={"Content-Type": "text/csv"}) as answer:
                    await answer.read()

            best = float("inf")
            for _ in range(repeat):
                started = time.perf_counter()
                await asyncio.gather(*(one(body) for body in bodies))
                best = min(best, time.perf_counter() - started)
            return n / best

    return asyncio.run(run())


def one_row_latency(proxy_dsn: str, url: str, iterations: int) -> dict[str, Any]:
    with_call, without = [], []
    with psycopg.connect(proxy_dsn, autocommit=True) as conn:
        queries = {"with_model": f"SELECT id, f_1({FEATURES}) FROM bench WHERE id = %s",
                   "without_model": f"SELECT id, {FEATURES} FROM bench WHERE id = %s"}
        for sql in queries.values():
            for i in range(20):  # prepared, warm
                conn.execute(sql, (i + 1,), prepare=True).fetchall()
        for i in range(iterations):
            for sql, times in ((queries["with_model"], with_call), (queries["without_model"], without)):
                started = time.perf_counter()
                conn.execute(sql, (i % 1000 + 1,), prepare=True).fetchall()
                times.append(time.perf_counter() - started)
    post = []
    body = b"1.0,2.0,3.0,4.0\n"
    for _ in range(min(iterations, 500)):
        request = urllib.request.Request(url + "/invocations", data=body, headers={"Content-Type": "text/csv"})
        started = time.perf_counter()
        with urllib.request.urlopen(request) as answer:
            answer.read()
        post.append(time.perf_counter() - started)

    def pct(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1e6 if q != 50 else statistics.median(values) * 1e6

    return {
        "with_model_us": {"p50": pct(with_call, 50), "p99": pct(with_call, 99)},
        "without_model_us": {"p50": pct(without, 50), "p99": pct(without, 99)},
        "added_p50_us": pct(with_call, 50) - pct(without, 50),
        "endpoint_post_p50_us": pct(post, 50),
        "iterations": iterations,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.endpoint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="table rows (default 100_000; 20_000 with --quick)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=None, help="rounds per figure, the best kept (default 3)")
    parser.add_argument("--iterations", type=int, default=None, help="one-row iterations (default 1000)")
    parser.add_argument("--connections", type=int, default=4, help="--endpoint-connections of the proxy")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = args.rows or (20_000 if args.quick else 100_000)
    repeat = args.repeat or (1 if args.quick else 3)
    iterations = args.iterations or (300 if args.quick else 1000)
    output = args.output or RESULTS / ("endpoint-quick.json" if args.quick else "endpoint.json")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="endpoint-bench-") as tmp:
        work = Path(tmp)
        os.environ["MLPROXY_DATA_DIR"] = str(work / "data")
        server, url = start_endpoint(work / "endpoint.log")
        try:
            with embedded_postgres(work, {"max_connections": "50"}) as pg, \
                    mlproxy(pg, work / "mlproxy.log", "--endpoint", f"bench={url}",
                            "--endpoint-connections", str(args.connections)) as proxy:
                direct_dsn = f"host={pg.host} port={pg.port} user=postgres dbname=postgres"
                proxy_dsn = f"host={proxy.host} port={proxy.port} user=postgres dbname=postgres sslmode=disable"
                with psycopg.connect(direct_dsn, autocommit=True) as direct, \
                        psycopg.connect(proxy_dsn, autocommit=True) as conn:
                    direct.execute("SELECT setseed(0.5)")
                    direct.execute(f"CREATE TABLE bench AS SELECT g::bigint AS id, random() * 10 AS x0, "
                                   f"random() * 10 AS x1, random() AS x2, random() * 100 AS x3 "
                                   f"FROM generate_series(1, {rows}) g")
                    direct.execute("ALTER TABLE bench ADD PRIMARY KEY (id)")
                    for batch in BATCHES:
                        conn.execute(f"CREATE MODEL m_{batch} FUNCTION f_{batch} (float8, float8, float8, float8) "
                                     f"RETURNS float8 SAGEMAKER 'bench' SETTINGS (MAX_BATCH_ROWS {batch})")
                    conn.execute(f"SELECT f_1({FEATURES}) FROM bench LIMIT 1").fetchall()  # warm
                    throughput = []
                    for batch in BATCHES:
                        n = rows_for(batch, rows)
                        print(f"MAX_BATCH_ROWS {batch}: {n:,} rows ...", flush=True)
                        throughput.append({
                            "max_batch_rows": batch, "rows": n,
                            "mlproxy_rows_per_s": through_mlproxy(conn, batch, n, repeat),
                            "endpoint_alone_rows_per_s": endpoint_alone(url, direct, batch, n, args.connections,
                                                                        repeat),
                        })
                print("one-row latency ...", flush=True)
                latency = one_row_latency(proxy_dsn, url, iterations)
        finally:
            server.terminate()
            server.wait(10)
    result = {
        "benchmark": "endpoint", "rows": rows, "repeat": repeat, "connections": args.connections,
        "throughput": throughput, "one_row": latency,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_before": load_before, "load_after": os.getloadavg()},
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(f"\nwrote {output}")
    return 0


def render(result: dict[str, Any]) -> str:
    lines = [f"remote model through mlproxy ({result['connections']} requests at once), best of {result['repeat']}",
             f"{'MAX_BATCH_ROWS':>15} {'rows':>8} {'mlproxy rows/s':>15} {'endpoint alone':>15} {'ratio':>6}"]
    for t in result["throughput"]:
        ratio = t["mlproxy_rows_per_s"] / t["endpoint_alone_rows_per_s"]
        lines.append(f"{t['max_batch_rows']:>15,} {t['rows']:>8,} {t['mlproxy_rows_per_s']:>15,.0f} "
                     f"{t['endpoint_alone_rows_per_s']:>15,.0f} {ratio:>6.2f}")
    one = result["one_row"]
    lines.append("")
    lines.append(f"one-row prepared query, p50 / p99 us ({one['iterations']} iterations):")
    lines.append(f"  with the remote model call   {one['with_model_us']['p50']:>9.0f} / {one['with_model_us']['p99']:.0f}")
    lines.append(f"  without it                   {one['without_model_us']['p50']:>9.0f} / "
                 f"{one['without_model_us']['p99']:.0f}")
    lines.append(f"  added by the call (p50)      {one['added_p50_us']:>9.0f}")
    lines.append(f"  one POST to the endpoint     {one['endpoint_post_p50_us']:>9.0f}  (p50, urllib, a new connection each)")
    lines.append(f"load average {result['machine']['load_before'][0]:.1f} -> {result['machine']['load_after'][0]:.1f}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
