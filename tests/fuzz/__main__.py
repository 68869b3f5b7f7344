"""`python -m tests.fuzz`: run the mutation fuzzer and print the summary by class.

    python -m tests.fuzz --cases 20000 [--start 0] [--time-limit 3600] [--summary out.md]
    python -m tests.fuzz --seed model_psycopg_where --case 123     # one case, in full

It starts an embedded Postgres and a proxy of its own in a temporary directory
(or uses --pg-uri), trains the fuzz model, and runs the cases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from tests.support.servers import start_embedded

from . import corpus
from .env import start_env
from .runner import Fuzzer, Result, case_kind, make_case, run_case, schedule, load_seeds
from .oracle import classify, normalise


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz")
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--alone", type=int, default=40,
                        help="differing cases to run again alone, to tie log tracebacks to them")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--seed", help="run one case of this seed (with --case)")
    parser.add_argument("--only", nargs="+", metavar="SEED",
                        help="spread the cases over these seeds only (mutations still splice "
                             "from every seed, so a case replays with --seed/--case)")
    parser.add_argument("--case", type=int, default=-1)
    parser.add_argument("--summary", type=Path, help="write the summary (markdown) here")
    parser.add_argument("--failures", type=Path, help="write the failing cases (JSON) here")
    parser.add_argument("--triage", type=Path, metavar="FAILURES_JSON",
                        help="run up to --alone of these failing cases alone (spread over seeds "
                             "and classes) and print them grouped by traceback cause")
    parser.add_argument("--pg-uri", help="an existing Postgres (default: an embedded one)")
    parser.add_argument("--add-to-corpus", metavar="NAME",
                        help="with --seed/--case: keep the case in tests/fuzz/corpus as NAME")
    parser.add_argument("--cause", default="", help="with --add-to-corpus: the function at fault")
    parser.add_argument("--open", default=None,
                        help="with --add-to-corpus: why the proxy still fails it (an xfail)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mlproxy-fuzz-") as tmp:
        pg = None
        uri = args.pg_uri
        if not uri:
            pg = start_embedded(Path(tmp) / "pg")
            uri = pg.uri
        env = start_env(uri, Path(tmp) / "data")
        try:
            if args.seed:
                return _one(env, args.seed, args.case, args)
            if args.triage:
                return _triage(env, args)
            return _many(env, args)
        finally:
            env.proxy.stop()
            if pg:
                pg.stop()


def _one(env, seed: str, number: int, args) -> int:
    seeds = load_seeds()
    case = make_case(seeds, seed, number)
    print(f"{seed}#{number}: {'; '.join(case.steps) or 'unmutated'}")
    print(f"writes: {[c.hex() for c in case.chunks()]}")
    fuzzer = Fuzzer(env, seeds)
    pg, px = asyncio.run(run_case(env, case, fuzzer.timeouts.slow()))
    kind = case_kind(seed, case)
    print(f"postgres: {pg.summary(100)}\nmlproxy:  {px.summary(100)}")
    print(f"class: {classify(pg, px, kind)}")
    for side, t in (("postgres", pg), ("mlproxy", px)):
        print(f"-- {side} normalised:")
        for m in normalise(t, kind):
            print("  ", m)
    if args.add_to_corpus:
        corpus.add(args.add_to_corpus, seed, number, case, classify(pg, px, kind), args.cause,
                   args.open)
        print(f"added to {corpus.CORPUS}")
    return 0


def _triage(env, args) -> int:
    failures = json.loads(args.triage.read_text())
    groups: dict[tuple, list[dict]] = {}
    for f in failures:
        groups.setdefault((f["seed"], f["class"]), []).append(f)
    picked: list[dict] = []
    while len(picked) < args.alone and any(groups.values()):
        for members in groups.values():
            if members and len(picked) < args.alone:
                picked.append(members.pop(0))
    fuzzer = Fuzzer(env)

    async def run_all():
        out = []
        for f in picked:
            result = await fuzzer.alone(Result(f["seed"], f["case"], None, []))
            out.append(result)
        return out

    results = asyncio.run(run_all())
    by_cause: dict[str, list] = {}
    for r in results:
        size = len(make_case(fuzzer.seeds, r.seed, r.case).data)
        for cause in sorted(set(r.causes)) or [f"no traceback: {r.klass}"]:
            by_cause.setdefault(cause, []).append((size, r))
    for cause, rs in sorted(by_cause.items(), key=lambda kv: -len(kv[1])):
        rs.sort(key=lambda sr: sr[0])
        print(f"== {cause}: {len(rs)} of {len(results)}")
        for size, r in rs[:3]:
            print(f"  {size} bytes: " + r.describe().replace("\n", "\n  "))
    return 0


def _many(env, args) -> int:
    fuzzer = Fuzzer(env)
    unknown = set(args.only or ()) - set(fuzzer.seeds)
    if unknown:
        print(f"no such seed: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    seeds = {name: fuzzer.seeds[name] for name in args.only} if args.only else fuzzer.seeds
    cases = schedule(seeds, args.cases, args.start)
    deadline = time.monotonic() + args.time_limit if args.time_limit else None
    started = time.monotonic()

    def progress(report) -> None:
        print(f"{report.ran} cases, {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)

    report = asyncio.run(fuzzer.run(cases, args.concurrency, deadline, progress, args.alone))
    text = report.table()
    text += f"\n\nwall time: {time.monotonic() - started:.0f}s"
    print(text)
    for result in report.failures:
        print(result.describe())
    if args.summary:
        body = [text, "", "## Every differing case", ""]
        body += ["```", *(r.describe() for r in report.failures), "```"]
        args.summary.write_text("\n".join(body) + "\n")
    if args.failures:
        args.failures.write_text(json.dumps(
            [{"seed": r.seed, "case": r.case, "class": r.klass, "steps": r.steps,
              "postgres": r.postgres, "mlproxy": r.mlproxy, "log": r.log}
             for r in report.failures], indent=1))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
