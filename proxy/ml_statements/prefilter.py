"""The cheap test the proxy runs on every query before considering the ML parser.

Every ML statement contains the word MODEL (CREATE MODEL, SHOW MODEL, DROP MODEL),
unquoted and delimited by non-identifier characters, so a case-insensitive
word-boundary search has no false negatives.  It is a single C-level regex scan
with no allocation, well under a microsecond for a pgbench-sized query; a hit
(`SELECT model FROM t`) only costs a parse that returns None.
"""

from __future__ import annotations

import re

_MODEL_WORD = re.compile(r"\bmodel\b", re.IGNORECASE)
_MODEL_WORD_BYTES = re.compile(rb"\bmodel\b", re.IGNORECASE)


def might_be_ml_statement(sql: str | bytes) -> bool:
    """False only if `sql` certainly holds no CREATE/SHOW/DROP MODEL statement.

    Accepts the Query message payload as bytes (any ASCII-compatible client
    encoding) or as text.
    """
    pattern = _MODEL_WORD_BYTES if isinstance(sql, (bytes, bytearray, memoryview)) else _MODEL_WORD
    return pattern.search(sql) is not None  # type: ignore[arg-type]
