"""DataRowBatch against a per-row reference: decode, splice, scan, edge cases."""

from __future__ import annotations

import math
import struct
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import protocol as p
from proxy.inference import rowscan
from proxy.inference.rows import DataRowBatch, RowFormatError, scan_data_rows


# -- a per-row reference implementation --------------------------------------

def ref_fields(raw: bytes) -> list[bytes | None]:
    """The fields of one DataRow, read the obvious way."""
    (count,) = struct.unpack_from("!h", raw, 5)
    pos, out = 7, []
    for _ in range(count):
        (length,) = struct.unpack_from("!i", raw, pos)
        pos += 4
        out.append(None if length < 0 else raw[pos:pos + length])
        pos += max(length, 0)
    assert pos == len(raw)
    return out


def ref_row(fields: list[bytes | None]) -> bytes:
    body = struct.pack("!h", len(fields)) + b"".join(
        b"\xff\xff\xff\xff" if f is None else struct.pack("!i", len(f)) + f for f in fields)
    return p.message(b"D", body)


def ref_splice(raws: list[bytes], new: dict[int, list[bytes | None]], keep: int) -> bytes:
    out = []
    for i, raw in enumerate(raws):
        fields = ref_fields(raw)[:keep]
        for col, values in new.items():
            fields[col] = values[i]
        out.append(ref_row(fields))
    return b"".join(out)


def encoded(values: list[bytes | None]) -> tuple[np.ndarray, bytes]:
    lengths = np.array([-1 if v is None else len(v) for v in values], dtype=np.int32)
    return lengths, b"".join(v for v in values if v is not None)


# -- property tests ------------------------------------------------------------

field = st.none() | st.binary(max_size=40) | st.text(max_size=20).map(str.encode)


@st.composite
def batches(draw):
    n_columns = draw(st.integers(0, 6))
    rows = draw(st.lists(st.lists(field, min_size=n_columns, max_size=n_columns),
                         min_size=1, max_size=25))
    keep = draw(st.integers(0, n_columns))
    cols = draw(st.sets(st.integers(0, keep - 1), max_size=keep)) if keep else set()
    new = {c: draw(st.lists(field, min_size=len(rows), max_size=len(rows))) for c in cols}
    return [ref_row(r) for r in rows], new, keep


@settings(max_examples=150, deadline=None)
@given(batches())
def test_splice_matches_per_row_reference(case):
    raws, new, keep = case
    batch = DataRowBatch.from_frames(raws)
    got = batch.splice({c: encoded(v) for c, v in new.items()}, keep)
    assert got == ref_splice(raws, new, keep)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.none() | st.floats(), st.none() | st.text(max_size=30)),
                min_size=1, max_size=40))
def test_columns_match_per_row_reference(rows):
    raws = [p.data_row([None if f is None else repr(f), t]) for f, t in rows]
    batch = DataRowBatch.from_frames(raws)
    floats = batch.column(0, "float")
    for got, (want, _) in zip(floats.tolist(), rows):
        if want is None or math.isnan(want):
            assert math.isnan(got)
        else:
            assert got == want
    assert batch.column(1, "text").tolist() == [t for _, t in rows]
    assert batch.nulls(1).tolist() == [t is None for _, t in rows]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(field, min_size=3, max_size=3), min_size=1, max_size=20),
       st.binary(max_size=30), st.binary(max_size=30))
def test_scan_finds_the_run_inside_a_chunk(rows, before, after_tail):
    run = [ref_row(r) for r in rows]
    prefix = p.command_complete("SELECT 1")
    suffix = p.command_complete("SELECT 2") + after_tail
    chunk = prefix + b"".join(run) + suffix
    offsets, stop = scan_data_rows(chunk, len(prefix))
    assert stop == len(prefix) + sum(map(len, run))
    batch = DataRowBatch.from_buffer(chunk, offsets)
    assert batch.splice({}, 3) == b"".join(run)
    # a run cut short by the end of the chunk stops before the partial message
    cut = len(prefix) + sum(map(len, run)) - 1
    offsets, stop = scan_data_rows(memoryview(chunk)[:cut], len(prefix))
    assert len(offsets) == len(run) - 1 and stop == len(prefix) + sum(map(len, run[:-1]))


tricky_field = field | st.sampled_from([b"D\x00\x00\x00\x0e\x00\x03", b"DD\x00\x03", b"D"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(tricky_field, min_size=3, max_size=3), min_size=1, max_size=30),
       st.integers(0, 40), st.binary(max_size=12))
def test_vectorized_scan_matches_the_header_walk(rows, cut, tail):
    """Fields that look like DataRow headers (false candidates), message lengths
    ending in 'D', incomplete last messages: the vectorized scan agrees with the
    plain walk of the headers."""
    stream = p.command_complete("X") + b"".join(ref_row(r) for r in rows) + tail
    stream = stream[:len(stream) - cut] if cut < len(stream) - 12 else stream
    start = len(p.command_complete("X"))
    with mock.patch.multiple(rowscan, _PROBE_ROWS=1, _VECTOR_MIN_ROWS=0):
        offsets, stop = scan_data_rows(stream, start)
    walked, walk_stop = rowscan._walk_headers(stream, start, len(stream))
    assert offsets.tolist() == walked and stop == walk_stop


def test_scan_of_a_large_run_with_false_candidates():
    raws = [ref_row([str(i).encode(), b"xD\x00\x00\x00\x10\x00\x03" * (i % 3), None])
            for i in range(3000)]
    stream = b"".join(raws) + p.ready_for_query()
    offsets, stop = scan_data_rows(stream)
    assert len(offsets) == 3000 and stop == len(stream) - 6
    offsets, stop = scan_data_rows(stream[:-10])
    assert len(offsets) == 2999 and stop == len(stream) - 6 - len(raws[-1])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.none() | st.floats(allow_nan=False) | st.text(max_size=8),
                         min_size=5, max_size=5), min_size=1, max_size=20),
       st.lists(st.integers(0, 4), min_size=1, max_size=6))
def test_columns_at_once_equal_one_at_a_time(rows, picks):
    """`columns` (one pass per kind, any order, repeats) gives what `column` does."""
    def text(v):
        return None if v is None else (repr(v) if isinstance(v, float) else v)
    raws = [p.data_row([text(r[0]), text(r[1]), *map(text, r[2:])]) for r in rows]
    batch = DataRowBatch.from_frames(raws)
    numeric = [c for c in picks if all(isinstance(r[c], float) or r[c] is None for r in rows)]
    kinds = ["float" if c in numeric else "text" for c in picks]
    got = batch.columns(picks, kinds)
    for c, kind, values in zip(picks, kinds, got):
        assert np.array_equal(values, batch.column(c, kind), equal_nan=kind == "float")
    if numeric:
        matrix = batch.numeric_matrix(numeric)
        assert matrix.shape == (len(rows), len(numeric))
        for j, c in enumerate(numeric):
            assert np.array_equal(matrix[:, j], batch.column(c, "float"), equal_nan=True)


# -- edge cases ----------------------------------------------------------------

def test_empty_batch():
    batch = DataRowBatch.from_frames([])
    assert (batch.n_rows, batch.n_columns) == (0, 0)
    assert batch.splice({}, 0) == b""
    assert batch.column(0, "float").size == 0
    assert batch.column(0, "text").size == 0
    offsets, stop = scan_data_rows(b"", 0)
    assert offsets.size == 0 and stop == 0


def test_one_row_one_column():
    batch = DataRowBatch.from_frames([p.data_row(["2.5"])])
    assert (batch.n_rows, batch.n_columns) == (1, 1)
    assert batch.column(0, "float").tolist() == [2.5]
    assert batch.splice({0: encoded([b"x"])}, 1) == p.data_row(["x"])
    assert batch.splice({}, 0) == p.message(b"D", b"\x00\x00")


def test_rows_of_a_single_null_column():
    raws = [p.data_row([None])] * 5
    batch = DataRowBatch.from_frames(raws)
    assert np.isnan(batch.column(0, "float")).all()
    assert batch.column(0, "text").tolist() == [None] * 5
    assert batch.splice({0: encoded([None] * 5)}, 1) == b"".join(raws)
    assert batch.splice({0: encoded([b"1"] * 5)}, 1) == p.data_row(["1"]) * 5


def test_zero_columns_rows():
    raws = [p.data_row([])] * 3
    batch = DataRowBatch.from_frames(raws)
    assert batch.n_columns == 0 and batch.splice({}, 0) == b"".join(raws)


def test_ten_megabyte_text_field():
    big = "é" * (5 << 20)
    raws = [p.data_row(["1", None, big]), p.data_row(["2", None, "s"])]
    batch = DataRowBatch.from_frames(raws)
    assert batch.column(2, "text").tolist() == [big, "s"]
    out = batch.splice({1: encoded([big.encode(), None])}, 2)
    assert out == p.data_row(["1", big]) + p.data_row(["2", None])


def test_numeric_kinds_parse_postgres_spellings():
    texts = ["NaN", "Infinity", "-Infinity", "1e+100", "-1.5e-07", "0", "-0", "1", "17"]
    batch = DataRowBatch.from_frames([p.data_row([t]) for t in texts])
    got = batch.column(0, "epoch")
    assert math.isnan(got[0])
    assert got[1:].tolist() == [math.inf, -math.inf, 1e100, -1.5e-07, 0.0, -0.0, 1.0, 17.0]
    assert math.copysign(1, got[6]) == -1


def test_unparsable_number_is_an_error():
    batch = DataRowBatch.from_frames([p.data_row(["1"]), p.data_row(["x1"])])
    with pytest.raises(RowFormatError):
        batch.column(0, "float")
    with pytest.raises(ValueError):
        batch.column(0, "complex")


@pytest.mark.parametrize("raws", [
    [p.data_row(["1"]), p.data_row(["1", "2"])],                # column counts differ
    [p.data_row(["1"])[:-1] + b""],                            # truncated message
    [p.message(b"D", b"\x00\x01\x00\x00\x00\x09ab")],          # field past the end
    [p.message(b"D", b"\x00\x01\x00\x00\x00\x01ab")],          # bytes after the fields
    [p.message(b"D", b"\x00\x01\xff\xff\xff\xfe")],            # length -2
    [p.command_complete("SELECT 1")],                          # not a DataRow
])
def test_malformed_rows_are_rejected(raws):
    with pytest.raises(RowFormatError):
        DataRowBatch.from_frames(raws)


def test_splice_rejects_bad_arguments():
    batch = DataRowBatch.from_frames([p.data_row(["1", "2"])] * 2)
    with pytest.raises(ValueError):
        batch.splice({}, 3)
    with pytest.raises(ValueError):
        batch.splice({1: encoded([b"a", b"b"])}, 1)  # placeholder not kept
    with pytest.raises(ValueError):
        batch.splice({0: (np.array([1, 1]), b"a")}, 1)  # payload too short
    with pytest.raises(ValueError):
        batch.splice({0: encoded([b"a"])}, 1)  # one length for two rows


def test_from_buffer_with_gaps_between_rows():
    """Rows need not be adjacent: only their order matters."""
    a, b = p.data_row(["1", "x"]), p.data_row(["2", None])
    gap = p.command_complete("SELECT 9")
    chunk = gap + a + gap + b + gap
    batch = DataRowBatch.from_buffer(chunk, [len(gap), 2 * len(gap) + len(a)])
    assert batch.splice({1: encoded([b"p", b"q"])}, 2) == p.data_row(["1", "p"]) + p.data_row(["2", "q"])
    assert batch.column(0, "int").tolist() == [1.0, 2.0]
