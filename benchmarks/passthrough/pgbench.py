"""Running pgbench against a target and reading its summary."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from proxy.embedded import bin_dir

from .servers import Target, cpu_seconds

# name -> (pgbench options, description)
SCRIPTS = {
    "select-only": (["-S"], "pgbench -S: one primary-key SELECT per transaction"),
    "tpcb-like": ([], "pgbench default: 3 UPDATEs, 1 SELECT, 1 INSERT per transaction"),
}

_TPS = re.compile(r"^tps = ([\d.]+) \(without initial connection time\)", re.M)
_LATENCY = re.compile(r"^latency average = ([\d.]+) ms", re.M)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)


@dataclass(frozen=True)
class Run:
    target: str
    script: str
    mode: str
    clients: int
    tps: float
    latency_ms: float
    transactions: int
    failed: int
    # CPU time of the relay process per transaction (None for direct): unlike tps,
    # it hardly moves with background load, so it compares relays on a busy machine.
    cpu_us_per_tx: float | None = None


def pgbench(target: Target, *args: str, timeout: float) -> str:
    done = subprocess.run(
        [str(bin_dir() / "pgbench"), "-h", target.host, "-p", str(target.port),
         "-U", "postgres", *args, "postgres"],
        capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"pgbench {' '.join(args)} on {target.name} failed:\n"
                           f"{done.stdout[-1500:]}{done.stderr[-1500:]}")
    return done.stdout


def initialise(target: Target, scale: int) -> None:
    pgbench(target, "-i", "-q", "-s", str(scale), timeout=600)


def measure(target: Target, script: str, clients: int, seconds: int,
            mode: str = "simple") -> Run:
    options, _ = SCRIPTS[script]
    return measure_options(target, script, options, clients, seconds, mode)[0]


def measure_options(target: Target, script: str, options: list[str], clients: int,
                    seconds: int, mode: str = "simple") -> tuple[Run, str]:
    """One pgbench run of `options` (e.g. ["-f", file]) labelled `script`: the Run
    and pgbench's whole report (for what only some callers read, like -r's)."""
    cpu_before = cpu_seconds(target.pid) if target.pid else None
    out = pgbench(target, *options, "-M", mode, "-n", "-c", str(clients),
                  "-j", str(min(2, clients)), "-T", str(seconds), timeout=seconds + 120)
    cpu = cpu_seconds(target.pid) - cpu_before if cpu_before is not None else None
    found = [pattern.search(out) for pattern in (_TPS, _LATENCY, _PROCESSED)]
    if not all(found):
        raise RuntimeError(f"unexpected pgbench output:\n{out}")
    failed = _FAILED.search(out)
    transactions = int(found[2].group(1))
    return Run(target.name, script, mode, clients, float(found[0].group(1)),
               float(found[1].group(1)), transactions, int(failed.group(1)) if failed else 0,
               round(cpu * 1e6 / transactions, 1) if cpu is not None and transactions
               else None), out
