"""A 100 MB COPY round trip through a proxy of the test's own, watching its memory:
the relay must stream CopyData, never hold the stream, in either direction, and
must stop reading one side while the other cannot keep up."""

from __future__ import annotations

import hashlib
import threading
import time

import psycopg
import pytest

ROWS = 100_000
FILLER = ("0123456789abcdef" * 63).encode()  # ~1 KB per row, ~100 MB in all
RSS_GROWTH_LIMIT = 50 << 20


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class PeakRss:
    """Samples a process's resident set size in a thread; `peak` is the largest seen."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.pid, self.every = pid, every
        self.baseline = self.peak = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, rss(self.pid))

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def chunks(rows_per_chunk: int = 1000):
    for start in range(0, ROWS, rows_per_chunk):
        yield b"".join(b"%d\t%s%d\n" % (i, FILLER, i)
                       for i in range(start, start + rows_per_chunk))


@pytest.fixture
def private_proxy(fresh_proxy):
    return fresh_proxy()


@pytest.mark.timeout(180)
def test_100mb_copy_round_trip_with_bounded_memory(table, private_proxy):
    pid = private_proxy.proc.pid
    sent = hashlib.md5()
    with psycopg.connect(private_proxy.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE UNLOGGED TABLE {table} (id int, payload text)")
        conn.execute("SET synchronize_seqscans = off")  # rows come back in load order
        with PeakRss(pid) as copy_in, conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
            total = 0
            for data in chunks():
                sent.update(data)
                total += len(data)
                copy.write(data)
        assert total > 100_000_000
        received, got = hashlib.md5(), 0
        with PeakRss(pid) as copy_out, conn.cursor().copy(f"COPY {table} TO STDOUT") as copy:
            for data in copy:
                received.update(data)
                got += len(data)
    assert (got, received.hexdigest()) == (total, sent.hexdigest())
    assert copy_in.growth < RSS_GROWTH_LIMIT, f"COPY FROM grew the proxy by {copy_in.growth}"
    assert copy_out.growth < RSS_GROWTH_LIMIT, f"COPY TO grew the proxy by {copy_out.growth}"


@pytest.mark.timeout(120)
def test_slow_reader_applies_back_pressure(private_proxy):
    """A client that stops reading a large result must not make the proxy buffer it."""
    pid = private_proxy.proc.pid
    query = f"COPY (SELECT i, '{FILLER.decode()}' FROM generate_series(1, {ROWS}) i) TO STDOUT"
    with psycopg.connect(private_proxy.dsn(), autocommit=True) as conn:
        with PeakRss(pid) as memory, conn.cursor().copy(query) as copy:
            got = 0
            for index, data in enumerate(copy):
                if index == 0:
                    time.sleep(3)  # the upstream keeps producing; the proxy must pause it
                got += len(data)
    assert got > 100_000_000
    assert memory.growth < RSS_GROWTH_LIMIT, f"slow reader grew the proxy by {memory.growth}"
