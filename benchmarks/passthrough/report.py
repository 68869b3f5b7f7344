"""The benchmark's outputs: a plain-text table and a JSON document."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from .pgbench import Run

TARGET_ORDER = ("direct", "mlproxy", "pgbouncer")


def median_runs(runs: list[Run]) -> dict[tuple, Run]:
    """One run per (script, mode, clients, target): the median by tps of repeats."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.script, run.mode, run.clients, run.target)].append(run)
    return {key: sorted(group, key=lambda r: r.tps)[(len(group) - 1) // 2]
            for key, group in groups.items()}


def rows(runs: list[Run]) -> list[dict]:
    """One row per (script, mode, clients), with every target and the ratios."""
    chosen = median_runs(runs)
    table: dict[tuple, dict] = {}
    for (script, mode, clients, target), run in chosen.items():
        row = table.setdefault((script, mode, clients),
                               {"script": script, "mode": mode, "clients": clients})
        row[target] = {"tps": run.tps, "latency_ms": run.latency_ms, "failed": run.failed,
                       "cpu_us_per_tx": run.cpu_us_per_tx}
    for row in table.values():
        proxy = row.get("mlproxy", {}).get("tps")
        for other in ("direct", "pgbouncer"):
            base = row.get(other, {}).get("tps")
            row[f"mlproxy/{other}"] = round(proxy / base, 3) if proxy and base else None
    return list(table.values())


def render(table: list[dict]) -> str:
    targets = [t for t in TARGET_ORDER if any(t in row for row in table)]
    head = ["script", "mode", "clients"]
    for target in targets:
        head += [f"{target} tps", f"{target} ms"]
    head += ["proxy/direct", "proxy/bouncer"]
    relays = [t for t in targets if t != "direct"]
    head += [f"{target} cpu us/tx" for target in relays]
    lines = [head]
    for row in table:
        line = [row["script"], row["mode"], str(row["clients"])]
        for target in targets:
            cell = row.get(target)
            line += [f"{cell['tps']:.0f}", f"{cell['latency_ms']:.3f}"] if cell else ["-", "-"]
        for ratio in ("mlproxy/direct", "mlproxy/pgbouncer"):
            line.append(f"{row[ratio]:.2f}" if row.get(ratio) is not None else "-")
        for target in relays:
            cpu = (row.get(target) or {}).get("cpu_us_per_tx")
            line.append(f"{cpu:.1f}" if cpu is not None else "-")
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in lines]
    out.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(out)


def write_json(path: Path, meta: dict, runs: list[Run]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {**meta, "table": rows(runs), "runs": [asdict(run) for run in runs]}
    path.write_text(json.dumps(document, indent=2) + "\n")


def worst_ratio(table: list[dict], key: str) -> float | None:
    values = [row[key] for row in table if row.get(key) is not None]
    return min(values) if values else None


def summary(table: list[dict]) -> str:
    parts = []
    for key, label in (("mlproxy/pgbouncer", "vs PgBouncer"), ("mlproxy/direct", "vs direct")):
        worst = worst_ratio(table, key)
        if worst is not None:
            parts.append(f"mlproxy {label}: worst {worst:.2f}x, median "
                         f"{statistics.median(r[key] for r in table if r.get(key)):.2f}x")
    # CPU per transaction hardly moves with background load, unlike tps.
    cpu = [row["mlproxy"]["cpu_us_per_tx"] / row["pgbouncer"]["cpu_us_per_tx"] for row in table
           if (row.get("mlproxy") or {}).get("cpu_us_per_tx")
           and (row.get("pgbouncer") or {}).get("cpu_us_per_tx")]
    if cpu:
        parts.append(f"relay CPU per transaction mlproxy/PgBouncer: median {statistics.median(cpu):.2f}x"
                     f" (from {min(cpu):.2f}x to {max(cpu):.2f}x)")
    return "; ".join(parts)
