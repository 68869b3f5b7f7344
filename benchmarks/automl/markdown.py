"""Markdown table of benchmark results, several runs side by side.

    python -m benchmarks.automl.markdown "before=results/a.json:mlproxy" \
        "after=results/b.json:mlproxy" "FLAML=results/a.json:flaml"

Each column is LABEL=FILE[+FILE...]:CONTESTANT (a contestant of those runs' rows:
mlproxy, a variant, flaml, autogluon, baseline). A cell is the mean ± sample standard deviation
over the seeds the run has for that table and budget (R2 beside MSE when present);
the best mean of a row is in bold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def cells(columns: list[tuple[str, list[Path], str]]) -> tuple[list[tuple[str, float, str, bool]], dict]:
    table: dict[tuple[str, float], dict[str, list[tuple[float, float | None]]]] = {}
    meta: dict[tuple[str, float], tuple[str, bool]] = {}
    for label, paths, contestant in columns:
        for r in (r for path in paths for r in json.loads(path.read_text())["rows"]):
            if contestant not in r:
                continue
            key = (r["dataset"], r["budget"])
            meta[key] = (r["objective"], r["lower_is_better"])
            table.setdefault(key, {}).setdefault(label, []).append((r[contestant], r.get(f"{contestant}_r2")))
    keys = sorted(table, key=lambda k: (k[1], list(meta).index(k)))
    return [(k[0], k[1], *meta[k]) for k in keys], table


def render(columns: list[tuple[str, list[Path], str]]) -> str:
    rows, table = cells(columns)
    labels = [c[0] for c in columns]
    out = ["| table | budget | objective | " + " | ".join(labels) + " |",
           "|---|---|---|" + "---|" * len(labels)]
    for name, budget, objective, lower in rows:
        got = table[(name, budget)]
        means = {lab: float(np.mean([v for v, _ in got[lab]])) for lab in labels if lab in got}
        best = (min if lower else max)(means.values()) if means else None
        parts = []
        for lab in labels:
            if lab not in got:
                parts.append("")
                continue
            vals = np.array([v for v, _ in got[lab]])
            r2 = [r for _, r in got[lab] if r is not None]
            fmt = (lambda x: f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4f}")
            text = fmt(vals.mean()) + (f" ± {fmt(vals.std(ddof=1))}" if len(vals) > 1 else "")
            if r2:
                text += f" (R2 {np.mean(r2):.3f})"
            if len(vals) != 3:
                text += f" [{len(vals)} seed{'s' if len(vals) > 1 else ''}]"
            parts.append(f"**{text}**" if means[lab] == best and len(means) > 1 else text)
        obj = objective + (" (lower is better)" if lower else "")
        out.append(f"| {name} | {budget:g} s | {obj} | " + " | ".join(parts) + " |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    columns = []
    for spec in argv:
        label, rest = spec.split("=", 1)
        path, contestant = rest.rsplit(":", 1)
        columns.append((label, [Path(p) for p in path.split("+")], contestant))
    print(render(columns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


