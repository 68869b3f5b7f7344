"""Prometheus metrics at http://HOST:PORT/metrics (`--metrics-listen`), off by default.

Served by prometheus-client's own HTTP server, on its thread, with a registry of its
own holding one custom Collector. A scrape reads the stats source (stats.py) on the
event loop (the sessions and the relay pump belong to it; the scrape's thread waits
for that reading, a few microseconds per session) and turns it into metric families
there in its own thread, so nothing here ever blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)
from prometheus_client.utils import floatToGoString

from .stats import (BATCH_BOUNDS, PROMETHEUS_LATENCY_BOUNDS, Histogram, Stats, session_relay)
from .commands import training_job_rows

log = logging.getLogger("mlproxy.metrics")

_SCRAPE_TIMEOUT = 5.0


@dataclass
class Reading:
    """Everything a scrape shows, copied on the event loop."""

    connections: dict[tuple[str, str], int]
    traffic: dict[str, Any]
    predictors: list[Any]
    small: dict[str, Any]
    jobs: dict[str, int]


class StatsCollector:
    def __init__(self, stats: Stats, loop: asyncio.AbstractEventLoop) -> None:
        self.stats = stats
        self.loop = loop

    def _read(self) -> Reading:  # on the event loop
        lent = self.stats.pump_counters()
        connections: dict[tuple[str, str], int] = {}
        for session in self.stats.live_sessions():
            key = session_relay(session, lent)
            connections[key] = connections.get(key, 0) + 1
        jobs = self.stats.jobs.counts() if self.stats.jobs is not None else {}
        return Reading(connections, self.stats.traffic(), self.stats.predictor_snapshot(),
                       self.stats.snapshot(), jobs)

    async def _read_async(self) -> Reading:
        reading = self._read()
        runner = self.stats.jobs
        catalog = getattr(runner, "catalog", None)
        if catalog is not None:  # queued jobs wait in the catalog's queue, any proxy's to take
            try:
                rows = await training_job_rows(catalog)
            except Exception:  # noqa: BLE001 - catalog unreachable: this proxy's own count stays
                log.debug("metrics: training queue not read", exc_info=True)
            else:
                reading.jobs = {**reading.jobs, "queued": sum(1 for r in rows if r[4] == "queued")}
        return reading

    def collect(self):  # on the HTTP server's thread
        reading = asyncio.run_coroutine_threadsafe(self._read_async(), self.loop).result(_SCRAPE_TIMEOUT)
        yield from families(reading)


def families(r: Reading):
    conns = GaugeMetricFamily("mlproxy_client_connections",
                              "Client sessions now, by state and relay kind",
                              labels=["state", "relay"])
    for (state, relay), n in sorted(r.connections.items()):
        conns.add_metric([state, relay], n)
    yield conns

    statements = CounterMetricFamily("mlproxy_statements",
                                     "Statements answered (ReadyForQuery relayed), per database",
                                     labels=["database"])
    received = CounterMetricFamily("mlproxy_client_received_bytes",
                                   "Bytes received from clients, per database", labels=["database"])
    sent = CounterMetricFamily("mlproxy_client_sent_bytes",
                               "Bytes sent to clients, per database", labels=["database"])
    logins = CounterMetricFamily("mlproxy_sessions", "Client sessions closed, per database",
                                 labels=["database"])
    for db, t in sorted(r.traffic.items()):
        statements.add_metric([db], t.statements)
        received.add_metric([db], t.bytes_in)
        sent.add_metric([db], t.bytes_out)
        logins.add_metric([db], t.sessions)
    yield from (statements, received, sent, logins)

    labels = ["database", "schema", "model"]
    calls = CounterMetricFamily("mlproxy_model_calls",
                                "Predictor calls (one per batch of rows), per model", labels=labels)
    rows = CounterMetricFamily("mlproxy_rows_predicted", "Rows predicted, per model", labels=labels)
    latency = HistogramMetricFamily("mlproxy_prediction_seconds",
                                    "Time of one predictor call (a batch)", labels=labels)
    batches = HistogramMetricFamily("mlproxy_prediction_batch_rows",
                                    "Rows per predictor call", labels=labels)
    loaded = GaugeMetricFamily("mlproxy_predictors_loaded", "Predictors loaded, by evaluator",
                               labels=["evaluator"])
    evaluators: dict[str, int] = {}
    for pr in sorted(r.predictors, key=lambda x: (x.schema, x.model, x.sha256)):
        key = [",".join(sorted(pr.databases)), pr.schema, pr.model]
        calls.add_metric(key, pr.calls)
        rows.add_metric(key, pr.rows)
        latency.add_metric(key, _buckets(pr.latency, PROMETHEUS_LATENCY_BOUNDS), pr.latency.sum)
        batches.add_metric(key, _buckets(pr.batches, BATCH_BOUNDS), pr.batches.sum)
        evaluators[pr.evaluator] = evaluators.get(pr.evaluator, 0) + 1
    for evaluator, n in sorted(evaluators.items()):
        loaded.add_metric([evaluator], n)
    yield from (calls, rows, latency, batches, loaded)

    small = r.small
    model_statements = HistogramMetricFamily(
        "mlproxy_model_statement_seconds",
        "Statements that called a model, from going upstream to their end, by path",
        labels=["path"])
    statement_rows = CounterMetricFamily("mlproxy_model_statement_rows",
                                         "Rows predicted by statements that called a model, by path",
                                         labels=["path"])
    for path, hist in sorted(small["model_statements"].items()):
        model_statements.add_metric([path], _buckets(hist, PROMETHEUS_LATENCY_BOUNDS), hist.sum)
        statement_rows.add_metric([path], small["model_statement_rows"].get(path, 0))
    yield from (model_statements, statement_rows)

    cache = CounterMetricFamily("mlproxy_build_cache_lookups",
                                "Compiled-model cache lookups as predictors load", labels=["result"])
    for result, n in sorted(small["cache"].items()):
        cache.add_metric([result], n)
    yield cache

    jobs = GaugeMetricFamily("mlproxy_training_jobs",
                             "Training jobs now: queued in the catalog (any proxy's to take), "
                             "running on this proxy",
                             labels=["state"])
    for state in ("queued", "running"):
        jobs.add_metric([state], r.jobs.get(state, 0))
    yield jobs
    started = CounterMetricFamily("mlproxy_training_jobs_started", "Training worker processes started")
    started.add_metric([], small["jobs_started"])
    yield started
    durations = HistogramMetricFamily("mlproxy_training_job_seconds",
                                      "Training jobs ended, by outcome, and their durations",
                                      labels=["outcome"])
    for outcome, hist in sorted(small["jobs_ended"].items()):
        durations.add_metric([outcome], _buckets(hist, PROMETHEUS_LATENCY_BOUNDS), hist.sum)
    yield durations

    errors = CounterMetricFamily("mlproxy_errors",
                                 "ErrorResponses by SQLSTATE class and source (upstream or mlproxy)",
                                 labels=["source", "sqlstate_class"])
    for (source, klass), n in sorted(small["errors"].items()):
        errors.add_metric([source, klass], n)
    yield errors


def _buckets(hist: Histogram, bounds: tuple[float, ...]) -> list[tuple[str, int]]:
    return [(le if le == "+Inf" else floatToGoString(float(le)), n)
            for le, n in hist.cumulative(bounds)]


class MetricsServer:
    def __init__(self, server: Any, thread: Any) -> None:
        self._server = server
        self._thread = thread

    @classmethod
    def start(cls, stats: Stats, host: str, port: int) -> "MetricsServer":
        """Serve /metrics now (raises OSError if the address is taken)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StatsCollector(stats, asyncio.get_running_loop()))
        server, thread = start_http_server(port, addr=host, registry=registry)
        return cls(server, thread)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
