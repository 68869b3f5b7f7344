"""The general path's lookup table: a hash index on its text[] key vs a btree.

A model call outside the select list reads its prediction from a temporary table,
`WHERE ARRAY[a0::text, ...] = ARRAY[...]` (proxy/inference/rewrite/lookups.py). The
index on that key is a hash index, so an argument of any size has its row (a btree
refuses index rows over ~2.7 kB). This measures, on an embedded Postgres, building
each index (and ANALYZE) over N keys and probing all N from an outer query, and one
lookup of a 5 MB key (hash only: the btree cannot index it). Prints a table and
writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from proxy.embedded import EmbeddedPostgres

RESULTS = Path(__file__).resolve().parents[1] / "results"
PROBE = ("SELECT count(*) FROM src WHERE (SELECT m.p FROM t AS m WHERE ARRAY[m.a0::text, m.a1::text] = "
         "ARRAY[(src.a)::text, (src.b)::text] LIMIT 1) IS NOT NULL")


def run_case(conn: psycopg.Connection, n: int, method: str, repeat: int) -> dict[str, Any]:
    conn.execute("DROP TABLE IF EXISTS src")
    conn.execute("CREATE TABLE src AS SELECT g %% 97 AS a, md5(g::text) AS b FROM generate_series(1, %s) g", (n,))
    build, probe = [], []
    for _ in range(repeat):
        with conn.transaction():
            conn.execute("CREATE TEMP TABLE t (a0 int, a1 text, p float8) ON COMMIT DROP")
            conn.execute("INSERT INTO t SELECT a, b, 1.0 FROM src")
            start = time.perf_counter()
            conn.execute(f"CREATE INDEX ON t USING {method} ((ARRAY[a0::text, a1::text]))")
            conn.execute("ANALYZE t")
            built = time.perf_counter()
            assert conn.execute(PROBE).fetchone() == (n,)
            build.append(built - start)
            probe.append(time.perf_counter() - built)
    return {"rows": n, "index": method, "build_s": min(build), "probe_s": min(probe)}


def big_key(conn: psycopg.Connection, size: int) -> dict[str, Any]:
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE t (a0 int, a1 text, p float8) ON COMMIT DROP")
        conn.execute("INSERT INTO t VALUES (1, repeat('x', %s), 2.0)", (size,))
        start = time.perf_counter()
        conn.execute("CREATE INDEX ON t USING hash ((ARRAY[a0::text, a1::text]))")
        got = conn.execute("SELECT p FROM t WHERE ARRAY[a0::text, a1::text] = ARRAY['1', repeat('x', %s)]",
                           (size,)).fetchone()
        assert got == (2.0,)
        return {"rows": 1, "index": "hash", "key_bytes": size, "build_and_probe_s": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 200_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "lookup_index.json")
    args = ap.parse_args(argv)
    server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="mlproxy-bench-")))
    server.start()
    try:
        with psycopg.connect(server.uri, autocommit=True) as conn:
            results = [run_case(conn, n, method, args.repeat) for n in args.sizes for method in ("btree", "hash")]
            results.append(big_key(conn, 5 << 20))
    finally:
        server.stop()
    print(f"{'rows':>8} {'index':>6} {'build s':>9} {'probe s':>9}")
    for r in results[:-1]:
        print(f"{r['rows']:>8} {r['index']:>6} {r['build_s']:9.3f} {r['probe_s']:9.3f}")
    print(f"5 MB key, hash index: build and probe {results[-1]['build_and_probe_s']:.3f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0
