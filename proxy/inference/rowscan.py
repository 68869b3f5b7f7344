"""Finding runs of DataRow messages in received bytes, without a step per message.

The session's hot loop looks, in each chunk from the server, for the consecutive
DataRows of a rewritten result; DataRowBatch then parses them in place. Also the
big-endian word gather both use.

When the optional `_mlproxy_rows` extension is built (proxy/inference/_datarows.c)
the scan and DataRowBatch's parse run in C, a plain loop without the GIL; the numpy
code here and in rows.py defines the results and is used otherwise.
"""

from __future__ import annotations

import struct

import numpy as np

from ..errors import CHARACTER_NOT_IN_REPERTOIRE, UTF8_HINT
from ..protocol import B_DATA_ROW

try:
    import _mlproxy_rows as native  # type: ignore[import-not-found]
except ImportError:  # not built: numpy throughout
    native = None

_unpack_len = struct.Struct("!I").unpack_from
_PROBE_ROWS = 32  # messages walked to estimate the row size of a chunk
_VECTOR_MIN_ROWS = 800  # fewer rows left than this: walking them is quicker
_SCAN_BLOCK = 1 << 16


class RowFormatError(ValueError):
    """The bytes are not a run of well-formed DataRows with one column count."""


class TextNotUtf8(ValueError):
    """A text argument of a model call is not UTF-8. Postgres sends text in the
    session's client_encoding, and mlproxy reads model arguments as UTF-8 (the
    categories a model learned are UTF-8): another encoding's bytes would be looked
    up as unseen values, a wrong prediction given silently, so the statement fails
    as Postgres fails on an invalid byte sequence."""

    sqlstate = CHARACTER_NOT_IN_REPERTOIRE
    hint = UTF8_HINT

    def __init__(self) -> None:
        super().__init__('invalid byte sequence for encoding "UTF8" in a text argument of a model '
                         "function (the session's client_encoding is not UTF8)")


def read_be32(u8: np.ndarray, positions: np.ndarray, dtype: str = ">i4",
              scratch: np.ndarray | None = None) -> np.ndarray:
    """The big-endian 32-bit words at `positions` (any alignment), as int64: one
    gather of four bytes per position. `scratch`, an (n, 4) int64 array, saves
    allocating the byte indexes (filled lane by lane: a broadcast add with an
    inner dimension of 4 costs more than the gather)."""
    n = len(positions)
    index = np.empty((n, 4), dtype=np.int64) if scratch is None else scratch[:n]
    for lane in range(4):
        np.add(positions, lane, out=index[:, lane])
    return u8.take(index).view(dtype).reshape(n).astype(np.int64)


def _walk_headers(buf: bytes | bytearray | memoryview, pos: int, stop: int,
                  limit: int = -1) -> tuple[list[int], int]:
    """The plain walk: one header read per message (at most `limit` messages)."""
    offsets: list[int] = []
    append = offsets.append
    while pos + 5 <= stop and buf[pos] == B_DATA_ROW and limit:
        limit -= 1
        nxt = pos + 1 + _unpack_len(buf, pos + 1)[0]
        if nxt > stop:
            break
        append(pos)
        pos = nxt
    return offsets, pos


def _candidates(u8: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Positions in [start, stop) of a 'D' byte with the column count of the message
    at `start` five bytes on, found a cache-sized block at a time (into reused
    scratch masks: full-size temporaries would cost more in page faults)."""
    count_hi, count_lo = int(u8[start + 5]), int(u8[start + 6])
    last = stop - 6  # a complete DataRow has at least 7 bytes
    mask = np.empty(min(_SCAN_BLOCK, last - start), dtype=bool)
    other = np.empty_like(mask)
    found = []
    for lo in range(start, last, _SCAN_BLOCK):
        hi = min(lo + _SCAN_BLOCK, last)
        m, o = mask[:hi - lo], other[:hi - lo]
        np.equal(u8[lo:hi], B_DATA_ROW, out=m)
        np.equal(u8[lo + 5:hi + 5], count_hi, out=o)
        m &= o
        np.equal(u8[lo + 6:hi + 6], count_lo, out=o)
        m &= o
        found.append(np.flatnonzero(m) + lo)
    return np.concatenate(found)


def scan_data_rows(buf: bytes | bytearray | memoryview, start: int = 0,
                   end: int | None = None) -> tuple[np.ndarray, int]:
    """Offsets of the consecutive complete DataRow messages from `start` on, and the
    position where the run stops (a message of another type, an incomplete message,
    or `end`). Nothing is sliced or copied.

    Each header says where the next message starts, a chain that a loop would walk
    one message at a time. Instead, every position that *could* start a DataRow of
    this run (a 'D' byte followed, four bytes on, by the run's column count) is a
    candidate; in the common case consecutive candidates chain exactly (each one's
    end is the next one's start) and one comparison over all of them finds where the
    run ends. A false candidate (those bytes inside a message) breaks the chain
    there, and one scalar step per break jumps over it; when most candidates are
    false (binary data), and for short runs, the plain walk is used instead.
    """
    stop = len(buf) if end is None else end
    if native is not None:
        offsets, pos = native.scan(buf, start, stop)
        return np.frombuffer(offsets, dtype=np.int64), pos
    return numpy_scan_data_rows(buf, start, stop)


def count_data_rows(buf: bytes | bytearray | memoryview, start: int) -> tuple[int, int]:
    """How many consecutive complete DataRows start at `start`, and where the run
    stops: scan_data_rows without the offsets, which the session's read loop does
    not need (the worker finds them again, in C, in the whole batch)."""
    if native is not None:
        offsets, stop = native.scan(buf, start, len(buf))
        return len(offsets) >> 3, stop
    offsets, stop = numpy_scan_data_rows(buf, start, len(buf))
    return len(offsets), stop


def numpy_scan_data_rows(buf: bytes | bytearray | memoryview, start: int,
                         stop: int) -> tuple[np.ndarray, int]:
    """scan_data_rows without the extension (and its reference in the tests)."""
    # The vectorized scan costs a fixed ~50 numpy calls; walk a few messages first
    # and use it only when the rest of the chunk holds enough rows to pay for them.
    first, pos = _walk_headers(buf, start, stop, _PROBE_ROWS)
    if len(first) < _PROBE_ROWS or (stop - pos) * len(first) < _VECTOR_MIN_ROWS * (pos - start):
        rest, pos = _walk_headers(buf, pos, stop)
        return np.array(first + rest, dtype=np.int64), pos
    offsets, pos = _scan_vectorized(buf, pos, stop)
    return np.concatenate([np.array(first, dtype=np.int64), offsets]), pos


def _scan_vectorized(buf: bytes | bytearray | memoryview, start: int,
                     stop: int) -> tuple[np.ndarray, int]:
    u8 = np.frombuffer(buf, dtype=np.uint8)
    if stop - start < 7 or u8[start] != B_DATA_ROW:
        offsets, pos = _walk_headers(buf, start, stop)
        return np.array(offsets, dtype=np.int64), pos
    cand = _candidates(u8, start, stop)
    m = len(cand)
    nxt = cand + 1 + read_be32(u8, cand + 1, ">u4")
    # link[i]: the candidate starting where candidate i ends, or -1 if none does
    link = np.searchsorted(cand, nxt)
    hit = link < m
    hit[hit] = cand[link[hit]] == nxt[hit]
    link[~hit] = -1
    breaks = np.flatnonzero(link != np.arange(1, m + 1))  # always holds m - 1
    if len(breaks) > m // 4 + 8:  # mostly false candidates (binary data): walk
        offsets, pos = _walk_headers(buf, start, stop)
        return np.array(offsets, dtype=np.int64), pos
    pieces = []
    i = 0
    while True:
        b = int(breaks[np.searchsorted(breaks, i)])  # candidates i..b chain
        if nxt[b] > stop:  # the last message is incomplete
            pieces.append(cand[i:b])
            return np.concatenate(pieces), int(cand[b])
        pieces.append(cand[i:b + 1])
        if link[b] < 0:  # the run ends where message b does
            return np.concatenate(pieces), int(nxt[b])
        i = int(link[b])  # step over the false candidates inside message b
