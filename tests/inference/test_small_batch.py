"""The per-row path for small batches gives exactly the vectorized path's bytes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from proxy import protocol as p
from proxy.inference import small_batch
from proxy.inference.pgvalues import encode_values
from proxy.inference.rows import DataRowBatch, scan_data_rows

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
       st.sampled_from(["bigint", "text", "double precision", "integer"]), st.sampled_from([0, 1]))
def test_encode_matches_encode_values(values, pg_type, fmt):
    if pg_type == "integer":
        values = [max(-2**31, min(2**31 - 1, int(v))) for v in values]
    if pg_type == "bigint":
        values = [int(v) for v in values]
    array = np.array(values, dtype=object if pg_type == "text" else None)
    lengths, payload = encode_values(array, pg_type, fmt)
    got = small_batch.encode(array, pg_type, fmt)
    assert [len(v) if v is not None else -1 for v in got] == lengths.tolist()
    assert b"".join(v for v in got if v is not None) == payload
