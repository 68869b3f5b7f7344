"""One INFO line per finished statement that called a model, rate-limited.

`model call: models=customer_churn rows=1200 ms=14.2 path=streaming`: the models the
statement called, the rows predicted, the time from when the statement went
upstream to its end, and the path (streaming: calls in the select list, rewritten as
the rows pass; general: predictions computed into temporary tables first). At most
`per_second` such lines a second; the statements over that are counted and one line
says how many were not logged. Reported by the response tracker (streaming, as a
result ends), the interceptor (general path, simple protocol) and prepared_general
(general path, extended protocol: when an execution's predictions are made, at its
Bind; its rows then pass through as Postgres sends them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from ..observe.stats import STATS

log = logging.getLogger("mlproxy.inference.calls")


class CallLog:
    def __init__(self, per_second: int = 20) -> None:
        self.per_second = per_second
        self._window = float("-inf")  # start of the current one-second window
        self._lines = 0
        self._suppressed = 0
        self._summary_due = False

    def finished(self, models: Iterable[str], rows: int, started: float, path: str) -> None:
        """A statement that called `models` ended (`started`: its time.perf_counter())."""
        STATS.model_statement(path, rows, time.perf_counter() - started)
        if not log.isEnabledFor(logging.INFO):
            return
        now = time.monotonic()
        if now - self._window >= 1.0:
            self._summarize()
            self._window, self._lines = now, 0
        if self._lines >= self.per_second:
            self._suppressed += 1
            self._schedule_summary()
            return
        self._lines += 1
        log.info("model call: models=%s rows=%d ms=%.1f path=%s",
                 ",".join(sorted(set(models))), rows, (time.perf_counter() - started) * 1e3,
                 path)

    def _summarize(self) -> None:
        if self._suppressed:
            log.info("model call: %d more statements not logged (at most %d lines a second)",
                     self._suppressed, self.per_second)
            self._suppressed = 0

    def _schedule_summary(self) -> None:
        """Say how many went unlogged even if no statement follows."""
        if self._summary_due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # the next statement's line says it
        self._summary_due = True

        def summary() -> None:
            self._summary_due = False
            self._summarize()
        loop.call_later(max(0.0, self._window + 1.0 - time.monotonic()), summary)


CALLS = CallLog()
