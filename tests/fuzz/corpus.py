"""The corpus of past failures: each case's exact bytes, replayed as a regression test.

tests/fuzz/corpus/cases.json holds one entry per case: where it came from (seed and
case number, and the mutations), the writes (hex) so it does not depend on the
seeds staying the same, what went wrong (`class`, `cause`: the function at fault)
and, while the proxy still fails it, `open` (why; the test is then an expected
failure until a fix makes it pass; `strict: false` when it fails only most of the
time). `python -m tests.fuzz --seed S --case K
--add-to-corpus NAME --cause TEXT` adds one.
"""

from __future__ import annotations

import json
from pathlib import Path

from .mutate import Case

CORPUS = Path(__file__).with_name("corpus") / "cases.json"


def load() -> list[dict]:
    return json.loads(CORPUS.read_text()) if CORPUS.exists() else []


def case_of(entry: dict) -> Case:
    chunks = [bytes.fromhex(h) for h in entry["writes"]]
    offsets, pos = [], 0
    for chunk in chunks[:-1]:
        pos += len(chunk)
        offsets.append(pos)
    return Case(b"".join(chunks), offsets, entry.get("steps", []), entry.get("spliced", []))


def add(name: str, seed: str, number: int, case: Case, klass: str | None, cause: str,
        open_reason: str | None) -> None:
    entries = [e for e in load() if e["name"] != name]
    entry = {"name": name, "seed": seed, "case": number, "steps": case.steps,
             "writes": [c.hex() for c in case.chunks()], "spliced": case.spliced,
             "class": klass, "cause": cause}
    if open_reason:
        entry["open"] = open_reason
    entries.append(entry)
    CORPUS.parent.mkdir(exist_ok=True)
    CORPUS.write_text(json.dumps(sorted(entries, key=lambda e: e["name"]), indent=1) + "\n")
