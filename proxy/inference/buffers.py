"""Memory for batch-sized work arrays, and word views at any byte offset.

Row batches are a few MB; every numpy temporary of that size is fresh pages from the
kernel (glibc hands large blocks back on free), and on a busy machine the page
faults cost more than the work done in the pages. Arrays taken from Arrow's memory
pool reuse its retained pages instead.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def pool_array(count: int, dtype: type) -> tuple[pa.Buffer, np.ndarray]:
    """A writable array in Arrow's memory pool. The pool keeps freed pages, where
    a fresh numpy array of a batch's size is new pages from the kernel every time,
    and those page faults cost more than the copying done in them."""
    itemsize = np.dtype(dtype).itemsize
    buffer = pa.allocate_buffer(count * itemsize)
    return buffer, np.frombuffer(buffer, dtype=dtype, count=count)


def unaligned(u8: np.ndarray, dtype: str) -> np.ndarray:
    """`u8` seen as `dtype` words starting at *every* byte offset (stride 1), so a
    fancy index reads or writes words at arbitrary positions in one go."""
    width = np.dtype(dtype).itemsize
    return np.ndarray((max(len(u8) - width + 1, 0),), dtype=dtype, buffer=u8, strides=(1,))


# Below this many items an array comes from numpy (the pool's call costs more than
# the page faults it saves).
_POOL_MIN_ITEMS = 8192


def work_array(count: int, dtype: type) -> np.ndarray:
    """A writable scratch array of `count` items: pool_array's for batch sizes, a
    plain numpy one for a few rows."""
    if count < _POOL_MIN_ITEMS:
        return np.empty(count, dtype=dtype)
    return pool_array(count, dtype)[1]
