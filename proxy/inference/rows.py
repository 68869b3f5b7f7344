"""Vectorized DataRow batches: parse, decode feature columns, splice predictions.

The streaming inference path rewrites `SELECT id, fn(a, b) FROM t` so that every
DataRow carries the user's columns (a NULL placeholder where `fn` stood) followed by
the arguments of `fn` as extra columns: in binary format under the extended protocol
(the proxy chooses their result format: float8/int4 words are read with one gather
per column), as text under the simple protocol. The session hands this module a run
of DataRow messages at a time; everything here works on the whole run at once.

Message boundaries are found without a loop per message (scan_data_rows); field
positions column by column with numpy (one gather per column over all rows, never a
Python step per row). Text feature values are parsed by pyarrow straight from the
received bytes: a string array whose offsets alternate between "field" and "gap to
the next field", with the gaps marked null, lets one Arrow cast read every field of
several columns in place, in buffer order, without gathering them first. The
outgoing rows are assembled by one Arrow `take` over byte ranges (each row's kept
bytes up to and including the placeholder's rewritten length word, the new value,
the kept bytes after it), which copies each range with memcpy; a numpy gather with
one index per *byte* costs an order of magnitude more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..protocol import B_DATA_ROW
from .buffers import pool_array, unaligned, work_array
from .rowscan import RowFormatError, TextNotUtf8, native, read_be32, scan_data_rows

__all__ = ["DataRowBatch", "RowFormatError", "scan_data_rows", "NUMERIC_KINDS", "TEXT_KIND", "BINARY_WORDS"]

# Kinds of appended argument columns, as the query rewrite casts them.
NUMERIC_KINDS = frozenset(("float", "int", "epoch"))
TEXT_KIND = "text"
# The binary words the numeric kinds travel as (the extended protocol): width, numpy type.
BINARY_WORDS = {"float": (8, ">f8"), "epoch": (8, ">f8"), "int": (4, ">i4")}

_HEADER_SIZE = 7  # type byte, int32 length, int16 column count
_PAST_END = "a DataRow field runs past the end of the buffer"
# The C parsers' error codes (parse and walk_rows in proxy/inference/_datarows.c), as the
# numpy parser says them (7 is walk_rows' own).
PARSE_ERRORS = {1: _PAST_END, 2: "not a DataRow message",
                3: "DataRows of one batch must have one column count",
                4: "negative DataRow field length", 5: "DataRow fields do not fill the message",
                6: "DataRows overlap or run past the buffer",
                7: "a DataRow has fewer columns than its result"}





def parse_fields_numpy(buffer: bytes | bytearray | memoryview,
                       starts: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """The column count, field positions, field lengths and row ends of the DataRows
    at `starts` (see DataRowBatch), with numpy: one gather per column over all rows.
    Raises RowFormatError for anything but a run of well-formed DataRows."""
    try:
        return _parse_numpy(np.frombuffer(buffer, dtype=np.uint8), starts)
    except IndexError:
        raise RowFormatError(_PAST_END) from None


def _parse_numpy(u8: np.ndarray, starts: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    if np.any(u8[starts] != B_DATA_ROW):
        raise RowFormatError("not a DataRow message")
    n = len(starts)
    # batch-sized work arrays come from Arrow's pool (see buffers.pool_array)
    scratch = pool_array(n * 4, np.int64)[1].reshape(n, 4)
    ends = starts + 1 + read_be32(u8, starts + 1, ">u4", scratch)
    counts = (u8[starts + 5].astype(np.int32) << 8) | u8[starts + 6]
    n_columns = int(counts[0])
    if np.any(counts != n_columns):
        raise RowFormatError("DataRows of one batch must have one column count")
    pos = pool_array((n_columns + 1) * n, np.int64)[1].reshape(n_columns + 1, n)
    lens = pool_array(n_columns * n, np.int32)[1].reshape(n_columns, n)
    pos[0] = starts + _HEADER_SIZE
    for c in range(n_columns):  # one gather per column, over all rows
        length = read_be32(u8, pos[c], scratch=scratch)
        lens[c] = length
        np.maximum(length, 0, out=length)
        length += 4
        np.add(pos[c], length, out=pos[c + 1])
    if np.any(lens < -1):
        raise RowFormatError("negative DataRow field length")
    if np.any(pos[n_columns] != ends):
        raise RowFormatError("DataRow fields do not fill the message")
    if np.any(ends > len(u8)) or np.any(ends[:-1] > starts[1:]):
        raise RowFormatError("DataRows overlap or run past the buffer")
    return n_columns, pos, lens, ends


def parse_fields_c(buffer: bytes | bytearray | memoryview,
                   starts: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """parse_fields_numpy in C (`_mlproxy_rows`): the same results and errors, one
    loop without the GIL."""
    n, first = len(starts), int(starts[0])
    head = bytes(buffer[first + 5:first + 7]) if first >= 0 else b""
    n_columns = int.from_bytes(head, "big") if len(head) == 2 else 0  # else parse reports it
    pos = work_array((n_columns + 1) * n, np.int64).reshape(n_columns + 1, n)
    lens = work_array(n_columns * n, np.int32).reshape(n_columns, n)
    ends = np.empty(n, dtype=np.int64)
    code = native.parse(buffer, starts, n_columns, pos, lens, ends)
    if code:
        raise RowFormatError(PARSE_ERRORS[code])
    return n_columns, pos, lens, ends


def splice_rows(rows: bytes, count: int, keep_columns: int, columns: np.ndarray,
                lengths: Sequence[np.ndarray], payloads: Sequence[bytes]) -> bytes:
    """DataRowBatch.splice for the `count` DataRows that make up `rows` (a small
    batch), parsed by the C splice itself; `columns` ascending (int64), with their
    lengths and payloads in that order. Needs the extension."""
    return native.splice(rows, None, count, keep_columns, columns, tuple(lengths), tuple(payloads))


class DataRowBatch:
    """A batch of DataRow messages (header included), parsed in bulk.

    `field_pos[c]` is, for every row, the position of column c's int32 length word
    in the buffer (`field_pos[n_columns]` is the row's end); `field_len[c]` is that
    word (-1 for NULL). Both are computed once, column by column, over all rows.
    """

    __slots__ = ("buffer", "_u8", "starts", "ends", "n_rows", "n_columns",
                 "field_pos", "field_len")

    def __init__(self, buffer: bytes | bytearray | memoryview, starts: np.ndarray) -> None:
        self.buffer = buffer
        self._u8: np.ndarray | None = None
        if type(starts) is not np.ndarray or starts.dtype != np.int64 or not starts.flags.c_contiguous:
            starts = np.ascontiguousarray(starts, dtype=np.int64)
        self.starts = starts
        self.n_rows = n = len(starts)
        if n == 0:
            self.n_columns = 0
            self.ends = self.starts
            self.field_pos = np.zeros((1, 0), dtype=np.int64)
            self.field_len = np.zeros((0, 0), dtype=np.int32)
            return
        parse = parse_fields_c if native is not None else parse_fields_numpy
        self.n_columns, self.field_pos, self.field_len, self.ends = parse(buffer, self.starts)

    @property
    def u8(self) -> np.ndarray:
        """The buffer as bytes, for the numpy code (made when first needed)."""
        if self._u8 is None:
            self._u8 = np.frombuffer(self.buffer, dtype=np.uint8)
        return self._u8

    @classmethod
    def from_buffer(cls, buf: bytes | bytearray | memoryview,
                    offsets: np.ndarray | Sequence[int]) -> "DataRowBatch":
        """Rows at the given message offsets of one received chunk (in increasing
        order, as `scan_data_rows` returns them), parsed without slicing them out."""
        return cls(buf, offsets)

    @classmethod
    def from_frames(cls, raws: Sequence[bytes | memoryview]) -> "DataRowBatch":
        """Rows given one message each (header included), e.g. `Frame.raw`s."""
        lengths = np.fromiter(map(len, raws), dtype=np.int64, count=len(raws))
        starts = np.zeros(len(raws), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        return cls(b"".join(raws), starts)

    # -- decoding -------------------------------------------------------------

    def nulls(self, index: int) -> np.ndarray:
        """Boolean mask of the rows whose column `index` is NULL."""
        return self.field_len[index] < 0

    def _field_strings(self, indices: Sequence[int]) -> pa.Array:
        """The fields of the given (ascending) columns as one Arrow string array over
        the buffer itself, in buffer order (row by row, column by column): even
        slots are the fields, odd slots the (null) gaps up to the next field."""
        n, k = self.n_rows, len(indices)
        count = n * k
        large = int(self.ends[-1]) >= 2**31 - 1 if n else False
        bounds = pool_array(2 * count + 1, np.int64 if large else np.int32)[1]
        pairs = bounds[:-1].reshape(n, k, 2)  # [row, column, (start, end)]
        lens = self.field_len[list(indices)].T
        np.add(self.field_pos[list(indices)].T, 4, out=pairs[:, :, 0], casting="unsafe")
        np.add(pairs[:, :, 0], np.maximum(lens, 0), out=pairs[:, :, 1], casting="unsafe")
        bounds[-1] = bounds[-2] if count else 0
        valid = pool_array(2 * count, np.bool_)[1].reshape(n, k, 2)
        np.greater_equal(lens, 0, out=valid[:, :, 0])
        valid[:, :, 1] = False
        bitmap = pa.py_buffer(np.packbits(valid.reshape(-1), bitorder="little"))
        return pa.Array.from_buffers(pa.large_string() if large else pa.string(), 2 * count,
                                     [bitmap, pa.py_buffer(bounds), pa.py_buffer(self.buffer)],
                                     null_count=2 * count - int(np.count_nonzero(valid)))

    def column(self, index: int, kind: str) -> np.ndarray:
        """Decode column `index` of every row.

        "float", "int", "epoch" -> float64 (NaN for NULL; epoch stays seconds);
        "text" -> object array of str (None for NULL). Text fields must be UTF-8.
        """
        if kind in NUMERIC_KINDS:
            return np.ascontiguousarray(self.numeric_matrix([index])[:, 0])
        if kind == TEXT_KIND:
            return self.text_columns([index])[0]
        raise ValueError(f"unknown column kind {kind!r}")

    def columns(self, indices: Sequence[int], kinds: Sequence[str],
                binary: bool = False) -> list[np.ndarray]:
        """Several columns at once, as `column` gives them: all numeric ones in one
        pass and all text ones in another (one Arrow call each, reading the buffer
        front to back), which beats a pass per column as soon as there are a few.
        `binary`: the columns came in binary format (float8, int4 for "int"; a
        text value's binary form is its text)."""
        if len(kinds) != len(indices):
            raise ValueError("one kind per column")
        for kind in kinds:
            if kind not in NUMERIC_KINDS and kind != TEXT_KIND:
                raise ValueError(f"unknown column kind {kind!r}")
        numeric = [(i, kind) for i, kind in zip(indices, kinds) if kind in NUMERIC_KINDS]
        text = [i for i, kind in zip(indices, kinds) if kind == TEXT_KIND]
        decoded = dict(zip(text, self.text_columns(text)))
        if binary:
            decoded.update((i, self.binary_column(i, kind)) for i, kind in numeric)
        else:
            matrix = self.numeric_matrix([i for i, _ in numeric])
            decoded.update((i, np.ascontiguousarray(matrix[:, j])) for j, (i, _) in enumerate(numeric))
        return [decoded[i] for i in indices]

    def binary_column(self, index: int, kind: str) -> np.ndarray:
        """float64 values of a binary float8 column ("float", "epoch") or int4 column
        ("int"), NaN for NULL: one gather of the words at the field positions."""
        self._check_column(index)
        width, word = BINARY_WORDS[kind]
        if self.n_rows == 0:
            return np.empty(0, dtype=np.float64)
        lens = self.field_len[index]
        null = lens < 0
        if np.any((lens != width) & ~null):
            raise RowFormatError(f"column {index}: a binary {word[1:]} field is not {width} bytes")
        at = self.field_pos[index] + 4
        if null.any():  # a NULL's position may lie too close to the end for a word
            at = np.where(null, 0, at)
        words = unaligned(self.u8, word)
        if len(words) == 0:
            return np.full(self.n_rows, np.nan)
        values = words[at].astype(np.float64)
        values[null] = np.nan
        return values

    def numeric_matrix(self, indices: Sequence[int]) -> np.ndarray:
        """float64 (n_rows, len(indices)) matrix of numeric text columns (NaN for
        NULL), parsed by one Arrow cast over all their fields."""
        order = self._ascending(indices)
        if self.n_rows == 0 or not order:
            return np.empty((self.n_rows, len(indices)), dtype=np.float64)
        try:
            parsed = pc.cast(self._field_strings(order), pa.float64())
        except pa.ArrowInvalid as exc:
            raise RowFormatError(f"columns {order}: {exc}") from None
        values = parsed.to_numpy(zero_copy_only=False)[0::2].reshape(self.n_rows, len(order))
        if order == list(indices):
            return values
        return values[:, [order.index(i) for i in indices]]

    def text_columns(self, indices: Sequence[int]) -> list[np.ndarray]:
        """Object arrays of str (None for NULL) of text columns, through one shared
        dictionary: features are mostly categories with few distinct values, so
        each distinct string becomes one Python object that the rows share (a str
        per row costs far more than the hashing)."""
        order = self._ascending(indices)
        if self.n_rows == 0 or not order:
            return [np.empty(0, dtype=object) for _ in indices]
        encoded = self._field_strings(order).dictionary_encode()
        try:  # the distinct values only: cheap
            encoded.dictionary.validate(full=True)
        except pa.ArrowInvalid:
            raise TextNotUtf8() from None
        distinct = encoded.dictionary.to_numpy(zero_copy_only=False)
        lookup = np.empty(len(distinct) + 1, dtype=object)
        lookup[:-1] = distinct  # and None at the end, for NULLs and the gaps
        codes = pc.fill_null(encoded.indices, len(distinct)).to_numpy()
        codes = codes[0::2].reshape(self.n_rows, len(order))
        return [lookup[codes[:, order.index(i)]] for i in indices]

    def _ascending(self, indices: Sequence[int]) -> list[int]:
        for index in indices:
            self._check_column(index)
        return sorted(set(indices))

    def text_column(self, index: int) -> pa.StringArray:
        """Column `index` as a compact Arrow string array (no Python objects)."""
        self._check_column(index)
        if self.n_rows == 0:
            return pa.array([], type=pa.string())
        evens = np.arange(0, 2 * self.n_rows, 2, dtype=np.int64)
        return self._field_strings([index]).take(pa.array(evens))

    def _check_column(self, index: int) -> None:
        if not 0 <= index < self.n_columns and self.n_rows:
            raise IndexError(f"column {index} out of range (batch has {self.n_columns})")

    # -- re-encoding ----------------------------------------------------------

    def splice(self, placeholders: Mapping[int, tuple[np.ndarray, bytes | memoryview]],
               keep_columns: int) -> bytes:
        """The outgoing DataRows: the first `keep_columns` columns of each row, the
        columns in `placeholders` replaced by the given encoded values (per-row
        lengths, -1 for NULL, and the concatenated non-NULL payloads), the rest
        dropped; message lengths and column counts are rewritten to match."""
        n = self.n_rows
        if n == 0:
            return b""
        if not 0 <= keep_columns <= self.n_columns:
            raise ValueError(f"keep_columns {keep_columns} out of range 0..{self.n_columns}")
        cols = sorted(placeholders)
        if cols and not (0 <= cols[0] and cols[-1] < keep_columns):
            raise ValueError("placeholder columns must be among the kept columns")
        if native is not None:  # which checks the lengths against the rows and payloads
            return native.splice(self.buffer, self.field_pos, n, keep_columns, np.array(cols, dtype=np.int64),
                                 tuple(np.asarray(placeholders[c][0], dtype=np.int32) for c in cols),
                                 tuple(placeholders[c][1] for c in cols))
        new_lens = [np.asarray(placeholders[c][0], dtype=np.int64) for c in cols]
        payloads = [memoryview(placeholders[c][1]).cast("B") for c in cols]
        for c, lens, payload in zip(cols, new_lens, payloads):
            if len(lens) != n or int(np.maximum(lens, 0).sum()) != len(payload):
                raise ValueError(f"placeholder {c}: lengths do not match the rows or payload")
        return self._splice_arrow(cols, new_lens, payloads, keep_columns)

    def _splice_arrow(self, cols: list[int], new_lens: list[np.ndarray], payloads: list[memoryview],
                      keep_columns: int) -> bytes:
        """splice without the extension: one Arrow `take` of byte ranges."""
        n, pos = self.n_rows, self.field_pos
        first, span_end = int(self.starts[0]), int(self.ends[-1])

        # Message length of each output row.
        out_len = pos[keep_columns] - self.starts - 1
        for c, lens in zip(cols, new_lens):
            out_len += (4 + np.maximum(lens, 0)) - (pos[c + 1] - pos[c])

        # One source buffer: the input span, with each row's header and each
        # placeholder's length word rewritten in place, then the new payloads.
        k = len(cols)
        span = span_end - first
        src_buffer, src = pool_array(span + sum(len(p) for p in payloads), np.uint8)
        src[:span] = self.u8[first:span_end]
        rel = self.starts - first
        words = unaligned(src, ">i4")
        words[rel + 1] = out_len
        unaligned(src, ">i2")[rel + 5] = keep_columns
        at = span
        for c, lens, payload in zip(cols, new_lens, payloads):
            words[pos[c] - first] = lens
            src[at:at + len(payload)] = np.frombuffer(payload, dtype=np.uint8)
            at += len(payload)

        # Source elements: per row, the 2k+2 input ranges between consecutive cuts
        # (kept up to and including a new length word, old value, kept, ..., kept,
        # dropped rest up to the next row); then the k*n payloads.
        per_row = 2 * k + 2
        in_count = n * per_row
        offsets_buffer, offsets = pool_array(in_count + k * n + 1, np.int64)
        cuts = offsets[:in_count].reshape(n, per_row)
        cuts[:, 0] = rel
        for j, c in enumerate(cols):
            np.subtract(pos[c], first - 4, out=cuts[:, 2 * j + 1])
            np.subtract(pos[c + 1], first, out=cuts[:, 2 * j + 2])
        np.subtract(pos[keep_columns], first, out=cuts[:, 2 * k + 1])
        offsets[in_count] = span
        sizes = offsets[in_count + 1:]
        for j, lens in enumerate(new_lens):
            np.maximum(lens, 0, out=sizes[j * n:(j + 1) * n])
        np.cumsum(sizes, out=sizes)
        sizes += span

        # Output order per row: kept, then (payload, kept) per placeholder; a kept
        # range that is empty in every row (a placeholder is the last kept column,
        # or two are adjacent) is left out.
        row = np.arange(n, dtype=np.int64)
        columns = [row * per_row]
        for j in range(k):
            columns.append(row + (in_count + j * n))
            if np.any(cuts[:, 2 * j + 3] != cuts[:, 2 * j + 2]):
                columns.append(columns[0] + (2 * j + 2))
        order_buffer, order = pool_array(n * len(columns), np.int64)
        order = order.reshape(n, len(columns))
        for i, column in enumerate(columns):
            order[:, i] = column
        pieces = pa.Array.from_buffers(pa.large_binary(), len(offsets) - 1,
                                       [None, offsets_buffer, src_buffer])
        out = pieces.take(pa.Array.from_buffers(pa.int64(), order.size, [None, order_buffer]))
        size = int(out_len.sum()) + n
        return out.buffers()[2].slice(0, size).to_pybytes()


_warm = False


def warm_up() -> None:
    """Arrow sets up its compute functions on their first use, about half a second:
    pay that once when a predictor loads (on a thread), not in a query's first batch."""
    global _warm
    if _warm:
        return
    from ..protocol import data_row

    rows = b"".join(data_row([str(i), None, "x" if i % 2 else None]) for i in range(4))
    batch = DataRowBatch.from_buffer(rows, scan_data_rows(rows)[0])
    batch.columns([0, 2], ["float", "text"])
    batch.splice({1: (np.full(4, 1, dtype=np.int32), b"abcd")}, 2)
    _warm = True
