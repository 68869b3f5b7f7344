"""Arrow string arrays as wire payloads: per-value sizes and the bytes of all values.

Arrow already keeps strings as one data buffer plus offsets, which is exactly the
(lengths, concatenated payload) pair a DataRow column is spliced from.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def string_offsets(strings: pa.Array) -> np.ndarray:
    """The value offsets of a string/binary array (int32 or int64, as stored)."""
    width = 8 if pa.types.is_large_string(strings.type) or pa.types.is_large_binary(strings.type) else 4
    return np.frombuffer(strings.buffers()[1], dtype=np.int32 if width == 4 else np.int64,
                         count=len(strings) + 1, offset=strings.offset * width)


def payload_of(strings: pa.Array) -> tuple[np.ndarray, bytes]:
    """Sizes (int32) and concatenated bytes of a null-free string array."""
    offsets = string_offsets(strings)
    data = strings.buffers()[2]
    start, end = int(offsets[0]), int(offsets[-1])
    payload = b"" if data is None else data.slice(start, end - start).to_pybytes()
    return np.diff(offsets).astype(np.int32), payload
