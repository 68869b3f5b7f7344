"""The proxy's statistics, in one place: what the admin console and /metrics show.

Plain in-process counters, fed where the work happens and read on demand:

- per database, statements (ReadyForQuery messages that reached the client: a simple
  Query, or an extended-protocol batch up to its Sync, as PgBouncer counts them) and
  bytes from and to the clients. Sessions keep their own counts (`bytes_in`,
  `bytes_out`, `readies`: one addition per chunk, never per message in Python) and
  the relay pump its own for the sessions it holds (`RelayPump.counters`); a closed
  session's counts are folded into its database's totals here, and a reading adds
  the live sessions' counts, so the fast paths pay nothing for statistics;
- per loaded predictor (by artifact hash): where it was loaded for, its evaluator,
  build seconds, build cache hit or miss, and its calls (one per batch), rows,
  latency and batch-size histograms (fed by inference.evaluate, once per batch);
- statements that called a model, by path (from the model-call log, call_log.py);
- errors by SQLSTATE class, from the upstream and from mlproxy itself;
- training jobs started and ended by outcome, with their durations (training/jobs.py).

Predictor calls run on worker threads: the counters behind one lock (an uncontended
acquire per batch, not per row).
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..session import Session

# Latency buckets (seconds): ten a decade from 10 us to 100 s, about 26 % apart, so a
# quantile read from them is within a bucket's width. Prometheus gets the 1-2.5-5 subset.
_MANTISSAS = (1.0, 1.25, 1.6, 2.0, 2.5, 3.2, 4.0, 5.0, 6.4, 8.0)
LATENCY_BOUNDS: tuple[float, ...] = tuple(
    round(m * 10.0 ** e, 12) for e in range(-5, 2) for m in _MANTISSAS) + (100.0,)
PROMETHEUS_LATENCY_BOUNDS: tuple[float, ...] = tuple(
    b for b in LATENCY_BOUNDS if round(b / 10 ** int(f"{b:e}".split("e")[1]), 6) in (1.0, 2.5, 5.0))
# Batch sizes (rows per predictor call): powers of two.
BATCH_BOUNDS: tuple[float, ...] = tuple(float(1 << k) for k in range(0, 17))


class Histogram:
    """Counts per bucket (`bounds` are upper bounds; one more bucket above them),
    their sum and count. Not locked: its owner's lock guards it."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def merge(self, other: "Histogram") -> None:
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.sum += other.sum
        self.count += other.count

    def copy(self) -> "Histogram":
        new = Histogram(self.bounds)
        new.merge(self)
        return new

    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the q-quantile (None: no values)."""
        if not self.count:
            return None
        rank = q * self.count
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank and n:
                return self.bounds[i] if i < len(self.bounds) else self.bounds[-1]
        return self.bounds[-1]

    def cumulative(self, bounds: tuple[float, ...]) -> list[tuple[str, int]]:
        """Prometheus buckets at `bounds` (a subset of ours): (le, count up to it), +Inf last."""
        out: list[tuple[str, int]] = []
        seen, i = 0, 0
        for bound in bounds:
            while i < len(self.bounds) and self.bounds[i] <= bound:
                seen += self.counts[i]
                i += 1
            out.append((repr(float(bound)), seen))
        out.append(("+Inf", self.count))
        return out


@dataclass
class Traffic:
    """Statements and bytes of one database."""

    statements: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    sessions: int = 0  # sessions that logged in (closed ones, in the totals)

    def add(self, other: "Traffic") -> None:
        self.statements += other.statements
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.sessions += other.sessions


@dataclass
class PredictorStats:
    """One loaded predictor (a model's artifact) and how it has been used."""

    sha256: str
    schema: str
    model: str
    databases: set[str]
    evaluator: str
    build_seconds: float | None
    load_seconds: float
    cache: str  # "hit", "miss" or "none" (no native library involved)
    loaded_at: float = field(default_factory=time.time)
    calls: int = 0
    rows: int = 0
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BOUNDS))
    batches: Histogram = field(default_factory=lambda: Histogram(BATCH_BOUNDS))


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.closed: dict[str, Traffic] = {}
        self.predictors: dict[str, PredictorStats] = {}
        self.model_statements: dict[str, Histogram] = {}  # path -> statement latency
        self.model_statement_rows: dict[str, int] = {}
        self.errors: dict[tuple[str, str], int] = {}  # (source, SQLSTATE class) -> count
        self.cache: dict[str, int] = {"hit": 0, "miss": 0}
        self.jobs_started = 0
        self.jobs_ended: dict[str, Histogram] = {}  # outcome -> durations (seconds)
        self.server: Any = None  # the ProxyServer whose sessions are live (set at start)
        self.jobs: Any = None  # the JobRunner (its jobs now, for /metrics)

    # -- fed by the relay ------------------------------------------------------------------
    def session_closed(self, session: "Session") -> None:
        """Fold a closed session's counts into its database's totals."""
        if session.startup is None or getattr(session, "console", False):
            return
        traffic = _session_traffic(session, None)
        traffic.sessions = 1
        with self._lock:
            self.closed.setdefault(session.database, Traffic()).add(traffic)

    def error(self, source: str, sqlstate: str | None) -> None:
        """An ErrorResponse (from "upstream" or "mlproxy") with this SQLSTATE."""
        key = (source, (sqlstate or "XX")[:2])
        with self._lock:
            self.errors[key] = self.errors.get(key, 0) + 1

    # -- fed by inference ------------------------------------------------------------------
    def predictor_loaded(self, database: str, entry: Any, info: dict[str, Any] | None,
                         seconds: float) -> None:
        info = info or {}
        cache = info.get("cache", "none")
        evaluator = info.get("backend", "numpy")
        if info.get("evaluator"):
            evaluator = f"{evaluator}/{info['evaluator']}"
        with self._lock:
            if cache in self.cache:
                self.cache[cache] += 1
            found = self.predictors.get(entry.artifact_sha256)
            if found is not None:
                found.databases.add(database)
                return
            self.predictors[entry.artifact_sha256] = PredictorStats(
                entry.artifact_sha256, entry.schema, entry.model_name, {database}, evaluator,
                info.get("build_seconds"), seconds, cache)

    def predictor_used(self, database: str, entry: Any) -> None:
        """A cached predictor served `database` (it may have been loaded for another)."""
        found = self.predictors.get(entry.artifact_sha256 or "")
        if found is not None and database not in found.databases:
            with self._lock:
                found.databases.add(database)

    def predicted(self, entry: Any, rows: int, seconds: float) -> None:
        """One predictor call (a batch of `rows`), on whatever thread ran it."""
        found = self.predictors.get(entry.artifact_sha256 or "")
        if found is None:
            return
        with self._lock:
            found.calls += 1
            found.rows += rows
            found.latency.observe(seconds)
            found.batches.observe(rows)

    def model_statement(self, path: str, rows: int, seconds: float) -> None:
        with self._lock:
            hist = self.model_statements.get(path)
            if hist is None:
                hist = self.model_statements[path] = Histogram(LATENCY_BOUNDS)
            hist.observe(seconds)
            self.model_statement_rows[path] = self.model_statement_rows.get(path, 0) + rows

    # -- fed by training ---------------------------------------------------------------------
    def job_started(self) -> None:
        with self._lock:
            self.jobs_started += 1

    def job_ended(self, outcome: str, seconds: float) -> None:
        with self._lock:
            hist = self.jobs_ended.get(outcome)
            if hist is None:
                hist = self.jobs_ended[outcome] = Histogram(LATENCY_BOUNDS)
            hist.observe(seconds)

    # -- readings (event loop) -----------------------------------------------------------------
    def live_sessions(self) -> list["Session"]:
        return list(self.server.sessions) if self.server is not None else []

    def pump_counters(self) -> dict[int, tuple[int, int, int, int]]:
        pump = self.server.pump if self.server is not None else None
        return pump.counters() if pump is not None else {}

    def traffic(self) -> dict[str, Traffic]:
        """Per database: closed sessions' totals plus the live sessions' counts."""
        with self._lock:
            out = {db: Traffic(**vars(t)) for db, t in self.closed.items()}
        lent = self.pump_counters()
        for session in self.live_sessions():
            if session.startup is None or getattr(session, "console", False):
                continue
            out.setdefault(session.database, Traffic()).add(_session_traffic(session, lent))
        return out

    def predictor_snapshot(self) -> list[PredictorStats]:
        with self._lock:
            return [PredictorStats(p.sha256, p.schema, p.model, set(p.databases), p.evaluator,
                                   p.build_seconds, p.load_seconds, p.cache, p.loaded_at,
                                   p.calls, p.rows, p.latency.copy(), p.batches.copy())
                    for p in self.predictors.values()]

    def database_latency(self) -> dict[str, Histogram]:
        """Per database, the predictor calls' latencies of the models it used."""
        out: dict[str, Histogram] = {}
        for p in self.predictor_snapshot():
            for db in p.databases:
                out.setdefault(db, Histogram(LATENCY_BOUNDS)).merge(p.latency)
        return out

    def snapshot(self) -> dict[str, Any]:
        """The small counters, copied under the lock."""
        with self._lock:
            return {"errors": dict(self.errors), "cache": dict(self.cache),
                    "jobs_started": self.jobs_started,
                    "jobs_ended": {k: v.copy() for k, v in self.jobs_ended.items()},
                    "model_statements": {k: v.copy() for k, v in self.model_statements.items()},
                    "model_statement_rows": dict(self.model_statement_rows)}


def _session_traffic(session: "Session", lent: dict[int, tuple[int, int, int, int]] | None) -> Traffic:
    """A session's own counts, plus the pump's for it if it holds it now. Its
    login's ReadyForQuery is no statement."""
    statements, bytes_in, bytes_out = session.readies, session.bytes_in, session.bytes_out
    extra = lent.get(session.id) if lent else None
    if extra is not None:
        bytes_in += extra[0]
        bytes_out += extra[1]
        statements += extra[2]
    return Traffic(max(0, statements - 1), bytes_in, bytes_out)


def session_relay(session: "Session", lent: dict[int, tuple[int, int, int, int]]) -> tuple[str, str]:
    """(state, relay kind) of a live session as SHOW SESSIONS and /metrics name them.
    State: login (startup and upstream authentication), idle, active (a request in
    flight), intercepted (an interceptor owns it), console; relay kind: native (the
    relay pump holds it), python (the event loop relays it), tracked (results being
    rewritten), console."""
    if getattr(session, "console", False):
        return "console", "console"
    name = session.state.name
    if name in ("STARTUP", "CONNECTING"):
        return "login", "python"
    if name == "CLOSED":
        return "closed", "python"
    pending = session.pending
    if session.id in lent:
        pending = lent[session.id][3]
        kind = "native"
    else:
        kind = "tracked" if session.rewrite is not None else "python"
    if name in ("HANDOVER", "TAKEOVER"):
        return "intercepted", kind
    return ("active" if pending else "idle"), kind


STATS = Stats()
