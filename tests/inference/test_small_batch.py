"""The per-row path for small batches gives exactly the vectorized path's bytes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from proxy import protocol as p
from proxy.inference import small_batch
from proxy.inference.pgvalues import ValueOutOfRange, encode_values
from proxy.inference.rows import DataRowBatch, RowFormatError, scan_data_rows

numbers = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr))
texts = st.one_of(st.none(), st.text(max_size=12))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(texts, numbers, texts), min_size=1, max_size=small_batch.SMALL_BATCH))
def test_split_decode_and_join_match_the_vectorized_codec(raw_rows):
    rows = b"".join(p.data_row(r) for r in raw_rows)
    offsets, _ = scan_data_rows(rows)
    batch = DataRowBatch.from_buffer(rows, offsets)
    split = small_batch.split_rows(rows)
    np.testing.assert_array_equal(small_batch.column(split, 1, "float"), batch.column(1, "float"))
    assert list(small_batch.column(split, 2, "text")) == list(batch.column(2, "text"))
    values = np.array([len(r[0] or "") % 3 == 0 for r in raw_rows])
    lengths, payload = encode_values(values, "boolean", 0)
    expected = batch.splice({0: (lengths, payload)}, 2)
    assert small_batch.join_rows(split, {0: small_batch.encode(values, "boolean", 0)}, 2) == expected


@given(st.lists(st.one_of(st.integers(-2**40, 2**40), st.floats(-1e6, 1e6)), min_size=1, max_size=20),
       st.sampled_from(["bigint", "text", "double precision", "integer", "smallint", "boolean", "jsonb", "json"]),
       st.sampled_from([0, 1]), st.sampled_from([None, "float", "bool", "label"]))
def test_encode_matches_encode_values(values, pg_type, fmt, labels):
    """Both formats; `labels`: the values as a classifier gives them (the target
    column's own type: floats, booleans, strings)."""
    if pg_type == "integer":
        values = [max(-2**31, min(2**31 - 1, int(v))) for v in values]
    if pg_type == "smallint":
        values = [max(-2**15, min(2**15 - 1, int(v))) for v in values]
    if pg_type == "bigint":
        values = [int(v) for v in values]
    if labels == "float":
        values = [float(v) for v in values]
    elif labels == "bool":
        values = [bool(v) for v in values]
    array = np.array(values, dtype=object if pg_type in ("text", "json", "jsonb") else None)
    if labels == "label" and pg_type == "text":  # a classifier's labels: a str array
        array = np.array([f"class é{v}" for v in values])
    elif labels == "label" and pg_type in ("json", "jsonb"):  # fn_prob's texts
        array = np.array([f'{{"labels": ["é", {v}]}}' for v in values], dtype=object)
    elif labels == "label" and pg_type == "boolean":
        array = np.array([v > 0 for v in values], dtype=object)
    lengths, payload = encode_values(array, pg_type, fmt)
    got = small_batch.encode(array, pg_type, fmt)
    assert [len(v) if v is not None else -1 for v in got] == lengths.tolist()
    assert b"".join(v for v in got if v is not None) == payload


def _binary_row(values: list[bytes | None]) -> bytes:
    import struct
    body = struct.pack("!h", len(values)) + b"".join(
        b"\xff\xff\xff\xff" if v is None else struct.pack("!i", len(v)) + v for v in values)
    return b"D" + struct.pack("!i", len(body) + 4) + body


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.floats(width=64)),
                          st.one_of(st.none(), st.integers(-2**31, 2**31 - 1)), texts),
                min_size=1, max_size=small_batch.SMALL_BATCH))
def test_binary_arguments_decode_alike_in_both_paths(raw_rows):
    """Argument columns in binary format (float8, int4 for booleans, text): the
    per-row and the vectorized decoders give the same arrays, NULL as NaN/None."""
    import struct
    rows = b"".join(_binary_row([None if f is None else struct.pack("!d", f),
                                 None if i is None else struct.pack("!i", i),
                                 None if t is None else t.encode()]) for f, i, t in raw_rows)
    batch = DataRowBatch.from_buffer(rows, scan_data_rows(rows)[0])
    split = small_batch.split_rows(rows)
    kinds = ["float", "int", "text"]
    vectorized = batch.columns([0, 1, 2], kinds, binary=True)
    per_row = small_batch.columns(split, [0, 1, 2], kinds, binary=True)
    want_f = np.array([np.nan if f is None else f for f, _, _ in raw_rows])
    want_i = np.array([np.nan if i is None else i for _, i, _ in raw_rows], dtype=np.float64)
    for got in (vectorized, per_row):
        np.testing.assert_array_equal(got[0], want_f)
        np.testing.assert_array_equal(got[1], want_i)
        assert list(got[2]) == [t for _, _, t in raw_rows]


def test_binary_argument_of_the_wrong_width_is_a_format_error():
    import pytest
    rows = _binary_row([b"\x00" * 4]) * 40
    batch = DataRowBatch.from_buffer(rows, scan_data_rows(rows)[0])
    with pytest.raises(RowFormatError):
        batch.binary_column(0, "float")
    with pytest.raises(RowFormatError):  # the per-row path refuses it alike
        small_batch.columns(small_batch.split_rows(rows[:len(rows) // 40]), [0], ["float"], binary=True)


@given(st.one_of(st.floats(allow_nan=False), st.integers(-2**70, 2**70)),
       st.sampled_from(["smallint", "integer", "bigint"]), st.sampled_from([0, 1]))
def test_integer_range_errors_match_encode_values(value, pg_type, fmt):
    """A prediction that does not fit the declared integer type is Postgres' range
    error (22003) on the per-row path exactly when it is on the vectorized one."""
    import pytest
    array = np.array([value], dtype=np.float64 if isinstance(value, float) else object)
    if array.dtype == object:
        array = np.array([value]) if -2**63 <= value < 2**63 else np.array([float(value)])
    try:
        want = encode_values(array, pg_type, fmt)
    except ValueOutOfRange:
        with pytest.raises(ValueOutOfRange):
            small_batch.encode(array, pg_type, fmt)
        return
    got = small_batch.encode(array, pg_type, fmt)
    assert b"".join(v for v in got if v is not None) == want[1]


@given(st.lists(st.floats(), min_size=1, max_size=8), st.sampled_from([0, 1]))
def test_float8_per_row_encoding_is_the_vectorized_one(values, fmt):
    """Regression outputs of any magnitude, NaN (NULL) and infinities included."""
    array = np.array(values, dtype=np.float64)
    lengths, payload = encode_values(array, "double precision", fmt)
    got = small_batch.encode(array, "double precision", fmt)
    assert [len(v) if v is not None else -1 for v in got] == lengths.tolist()
    assert b"".join(v for v in got if v is not None) == payload
