"""Scraping a proxy's /metrics (`--metrics-listen`) in tests, parsed by
prometheus-client's own text parser."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client.parser import text_string_to_metric_families

_LISTENING = re.compile(r"metrics on http://([^:/]+):(\d+)/metrics")


def metrics_url(proxy) -> str:
    """The /metrics URL a proxy started with `--metrics-listen HOST:0` logged."""
    assert proxy.wait_for_log("metrics on http://"), proxy.read_log()
    host, port = _LISTENING.search(proxy.read_log()).groups()
    return f"http://{host}:{port}/metrics"


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


@contextmanager
def scraping(url: str, every: float = 0.05) -> Iterator[list[dict]]:
    """Scrape `url` on a thread every `every` seconds while the block runs (to see
    a run from the middle); the list yielded fills with the scrapes as they come."""
    scrapes: list[dict] = []
    stop = threading.Event()

    def scraper() -> None:
        while not stop.is_set():
            scrapes.append(scrape(url))
            time.sleep(every)
    thread = threading.Thread(target=scraper)
    thread.start()
    try:
        yield scrapes
    finally:
        stop.set()
        thread.join()
