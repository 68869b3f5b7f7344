"""COPY rows of the general path: the per-row path for a few rows gives exactly the
vectorized path's bytes (escapes and NULLs included)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from proxy import protocol as p
from proxy.inference import small_batch
from proxy.inference.evaluate import copy_rows
from proxy.inference.prepared_general import small_copy_rows
from proxy.inference.rewrite import ArgColumn
from proxy.inference.rows import DataRowBatch, scan_data_rows

numbers = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr))
texts = st.one_of(st.none(), st.text(alphabet=st.sampled_from("ab\\\t\n\r é,N"), max_size=8))
ARGS = (ArgColumn(0, "text", "text"), ArgColumn(1, "float", "double precision"), ArgColumn(2, "text", "text"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(texts, numbers, texts), min_size=1, max_size=small_batch.SMALL_BATCH),
       st.sampled_from(["double precision", "boolean", "text", "bigint"]))
def test_small_copy_rows_match_the_vectorized_copy(raw_rows, return_type):
    rows = b"".join(p.data_row(r) for r in raw_rows)
    offsets, _ = scan_data_rows(rows)
    batch = DataRowBatch.from_buffer(rows, offsets)
    n = len(raw_rows)
    values = {"double precision": np.where(np.arange(n) % 5 == 3, np.nan, np.linspace(-1.5, 2e19, n)), "boolean": np.arange(n) % 2 == 0,
              "text": np.array([f"l\t{i}\\" for i in range(n)], dtype=object),
              "bigint": np.arange(n, dtype=np.int64) * -7}[return_type]
    expected = copy_rows(batch, ARGS, values, return_type)
    assert small_copy_rows(small_batch.split_rows(rows), ARGS, values, return_type) == expected
