"""The mutation fuzzer in the suite: malformed variants of recorded sessions must get
from the proxy what they get from Postgres (tests/fuzz/oracle.py says what is
compared), and must never leave a traceback in the proxy's log.

- every seed, unmutated, behaves through the proxy as on Postgres (the oracle's own check);
- every case of the corpus of past failures (tests/fuzz/corpus/cases.json);
- a bounded run of mutated cases (--fuzz-cases / MLPROXY_FUZZ_CASES for a long one).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from . import corpus
from .runner import Fuzzer, load_seeds, schedule, traceback_causes

SEEDS = load_seeds()
CORPUS = corpus.load()

# Seeds Postgres and the proxy answer differently with no mutation at all: bugs, not
# fuzz findings, kept here (strict) until fixed.
UNMUTATED_OPEN: dict[str, str] = {}


@pytest.fixture(scope="session")
def replayed(fuzz_env):
    """Every unmutated seed and every corpus case, run side by side once: name -> Result,
    and the tracebacks the proxy logged while the cases expected to pass ran."""
    fuzzer = Fuzzer(fuzz_env, SEEDS)
    jobs = [(f"seed:{name}", name, -1, None) for name in SEEDS]
    jobs += [(f"corpus:{e['name']}", e["seed"], e["case"], corpus.case_of(e)) for e in CORPUS]

    async def run_all():
        limit = asyncio.Semaphore(8)

        async def one(seed, number, case):
            async with limit:
                return await fuzzer.one(seed, number, fuzzer.timeouts.slow(), case)

        # what should pass first, with the log read after it; the expected failures after
        known = {f"seed:{name}" for name in UNMUTATED_OPEN}
        known |= {f"corpus:{e['name']}" for e in CORPUS if e.get("open")}
        out = {}
        for phase in ([j for j in jobs if j[0] not in known], [j for j in jobs if j[0] in known]):
            fuzzer._new_log()
            results = await asyncio.gather(*(one(s, n, c) for _, s, n, c in phase))
            out.update({key: r for (key, *_), r in zip(phase, results)})
            if not any(j[0] in known for j in phase):
                await asyncio.sleep(0.3)
                causes = traceback_causes(fuzzer._new_log())
        return out, causes

    return asyncio.run(run_all())


@pytest.mark.parametrize("seed", [
    pytest.param(name, marks=pytest.mark.xfail(strict=False, reason=UNMUTATED_OPEN[name]))
    if name in UNMUTATED_OPEN else name for name in SEEDS])
def test_unmutated_seed_gets_what_postgres_answers(replayed, seed):
    result = replayed[0][f"seed:{seed}"]
    assert result.klass is None, result.describe()


@pytest.mark.parametrize("entry", [
    pytest.param(e, id=e["name"], marks=pytest.mark.xfail(strict=e.get("strict", True),
                                                          reason=e["open"]))
    if e.get("open") else pytest.param(e, id=e["name"]) for e in CORPUS])
def test_corpus_case_gets_what_postgres_answers(replayed, entry):
    result = replayed[0][f"corpus:{entry['name']}"]
    assert result.klass is None, f"{entry['name']} ({entry.get('cause')}): {result.describe()}"


def test_seeds_and_corpus_leave_no_traceback(replayed):
    causes = replayed[1]
    assert not causes, "\n".join(f"{n} x {where}: {exc}" for (where, exc), n in causes.items())


def test_mutated_sessions_get_what_postgres_answers(fuzz_env, fuzz_cases):
    count, start = fuzz_cases
    fuzzer = Fuzzer(fuzz_env, SEEDS)
    # a seed that differs unmutated (UNMUTATED_OPEN) differs in all its variants: left out
    mutated = [case for case in schedule(SEEDS, count, start)
               if case[1] >= 0 and case[0] not in UNMUTATED_OPEN]
    began = time.monotonic()
    report = asyncio.run(fuzzer.run(mutated, concurrency=8, alone_limit=10))
    elapsed = time.monotonic() - began
    assert report.ran == len(mutated)
    # cases the corpus keeps as open (expected failures there) are not counted twice
    known = {(e["seed"], e["case"]) for e in CORPUS if e.get("open")}
    problems = [r.describe() for r in report.failures if (r.seed, r.case) not in known]
    if report.tracebacks:
        problems.append(f"{report.tracebacks} tracebacks in the proxy's log:\n"
                        + "\n".join(line for line in fuzz_env.proxy.read_log().splitlines()
                                    if "Traceback" in line or "never retrieved" in line)[:2000])
    assert not problems, (f"{len(problems)} of {report.ran} cases differ from Postgres "
                          f"({elapsed:.0f}s)\n{report.table()}\n\n" + "\n".join(problems))
