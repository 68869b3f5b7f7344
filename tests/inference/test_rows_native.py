"""The C scan and parse of DataRow runs (_mlproxy_rows) against the numpy code that
defines them (rowscan.numpy_scan_data_rows, rows.parse_fields_numpy): the same
offsets, the same field tables, the same error for every kind of damage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.inference import rowscan
from proxy.inference.rows import DataRowBatch, RowFormatError, parse_fields_c, parse_fields_numpy, splice_rows

from .test_rows import batches, encoded, field, ref_row

pytestmark = pytest.mark.skipif(
    rowscan.native is None,
    reason="_mlproxy_rows is not built (tests/proxy/test_wire_scan fails where it should be)")


@st.composite
def row_runs(draw):
    n_columns = draw(st.integers(0, 5))
    rows = draw(st.lists(st.lists(field, min_size=n_columns, max_size=n_columns),
                         min_size=1, max_size=20))
    return b"".join(ref_row(r) for r in rows)


def _outcome(parse, buf: bytes, starts: np.ndarray):
    try:
        n_columns, pos, lens, ends = parse(buf, starts)
    except RowFormatError as exc:
        return str(exc)
    return n_columns, pos.tolist(), lens.tolist(), ends.tolist()


@settings(max_examples=300, deadline=None)
@given(row_runs(), st.binary(max_size=8), st.binary(max_size=12), st.integers(0, 10**6))
def test_scan_matches_numpy(run, before, after, cut):
    chunk = before + run + after
    end = len(before) + cut % (len(run) + len(after) + 1)
    offsets, stop = rowscan.native.scan(chunk, len(before), end)
    reference, ref_stop = rowscan.numpy_scan_data_rows(chunk, len(before), end)
    assert np.frombuffer(offsets, dtype=np.int64).tolist() == reference.tolist()
    assert stop == ref_stop
    assert rowscan.scan_data_rows(chunk, len(before), end)[0].flags.writeable  # callers shift it


@settings(max_examples=400, deadline=None)
@given(row_runs(), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=3),
       st.integers(0, 40))
def test_parse_matches_numpy_on_whole_and_damaged_runs(run, flips, trim):
    starts, _ = rowscan.numpy_scan_data_rows(run, 0, len(run))
    damaged = bytearray(run)
    for at, value in flips:
        damaged[at % len(damaged)] = value
    damaged = bytes(damaged[:max(1, len(damaged) - trim)] if trim < 20 else damaged)
    assert _outcome(parse_fields_c, damaged, starts) == _outcome(parse_fields_numpy, damaged, starts)


@pytest.mark.parametrize("starts", [[0, 10**6], [-5], [3]])
def test_parse_of_offsets_outside_or_inside_rows(starts):
    run = ref_row([b"ab", None]) * 2
    offsets = np.array(starts, dtype=np.int64)
    got = _outcome(parse_fields_c, run, offsets)
    assert isinstance(got, str)
    if starts != [-5]:  # numpy reads a negative offset from the end; C refuses it
        assert got == _outcome(parse_fields_numpy, run, offsets)


def test_parse_refuses_short_output_buffers():
    run = ref_row([b"ab", None])
    starts = np.zeros(1, dtype=np.int64)
    with pytest.raises(ValueError):
        rowscan.native.parse(run, starts, 2, np.empty(2, np.int64), np.empty(2, np.int32),
                             np.empty(1, np.int64))
    with pytest.raises(BufferError):
        rowscan.native.parse(run, starts, 2, b"x" * 24, np.empty(2, np.int32), np.empty(1, np.int64))


@settings(max_examples=200, deadline=None)
@given(batches(), st.binary(max_size=9))
def test_splice_matches_arrow(case, gap):
    """The C splice and the Arrow one give the same bytes, rows adjacent or not."""
    raws, new, keep = case
    chunk = gap + gap.join(raws)
    starts = np.cumsum([len(gap)] + [len(r) + len(gap) for r in raws[:-1]])
    batch = DataRowBatch.from_buffer(chunk, starts)
    cols = sorted(new)
    lens = [encoded(new[c])[0].astype(np.int64) for c in cols]
    payloads = [memoryview(encoded(new[c])[1]).cast("B") for c in cols]
    spliced = batch.splice({c: encoded(v) for c, v in new.items()}, keep)
    assert spliced == batch._splice_arrow(cols, lens, payloads, keep)
    # a small batch's splice parses the rows itself (they fill the buffer)
    assert splice_rows(b"".join(raws), len(raws), keep, np.array(cols, dtype=np.int64),
                       [encoded(new[c])[0] for c in cols], [encoded(new[c])[1] for c in cols]) == spliced


def test_splice_refuses_bad_arguments():
    batch = DataRowBatch.from_frames([ref_row([b"1", b"2"])] * 2)
    native, pos = rowscan.native, batch.field_pos
    lens = np.array([1, 1], dtype=np.int32)
    assert native.splice(batch.buffer, pos, 2, 2, np.array([1]), (lens,), (b"ab",)) == \
        ref_row([b"1", b"a"]) + ref_row([b"1", b"b"])
    with pytest.raises(ValueError):  # payload not used up
        native.splice(batch.buffer, pos, 2, 2, np.array([1]), (lens,), (b"abc",))
    with pytest.raises(ValueError):  # placeholder not kept
        native.splice(batch.buffer, pos, 2, 1, np.array([1]), (lens,), (b"ab",))
    with pytest.raises(ValueError):  # one length array per placeholder
        native.splice(batch.buffer, pos, 2, 2, np.array([1]), (), ())
    with pytest.raises(ValueError):  # keep beyond the columns
        native.splice(batch.buffer, pos, 2, 3, np.array([1]), (lens,), (b"ab",))
    with pytest.raises(ValueError):  # lengths too short for the rows
        native.splice(batch.buffer, pos, 2, 2, np.array([1]), (lens[:1],), (b"a",))
    with pytest.raises(TypeError):
        native.splice(batch.buffer, pos, 2, 2, np.array([1]), [lens], [b"ab"])


def test_splice_of_rows_it_parses_refuses_what_does_not_parse():
    rows = ref_row([b"1", b"2"]) * 2
    native, lens = rowscan.native, np.array([1, 1], dtype=np.int32)
    assert native.splice(rows, None, 2, 2, np.array([1]), (lens,), (b"ab",)) == \
        ref_row([b"1", b"a"]) + ref_row([b"1", b"b"])
    for bad, n, keep in ((rows[:-1], 2, 2), (rows + b"D", 2, 2), (rows, 1, 2), (rows, 2, 3), (rows, -1, 2)):
        with pytest.raises(ValueError):
            native.splice(bad, None, n, keep, np.array([1]), (lens[:max(n, 0)],), (b"ab"[:max(n, 0)],))
