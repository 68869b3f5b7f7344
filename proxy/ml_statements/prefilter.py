"""The cheap test the proxy runs on every query before considering the ML parser.

Every ML statement contains the word MODEL (CREATE MODEL, SHOW MODEL, DROP MODEL),
unquoted and delimited by characters that cannot continue a Postgres identifier, so a
case-insensitive search for it so delimited has no false negatives.  Measured cost:
about 0.2 us (str) / 0.5 us (bytes) for a pgbench statement, under 2 us per KB.  A hit on an ordinary
query (`SELECT model FROM t`) only costs a parse that returns None (~5 us).
"""

from __future__ import annotations

import re

# "model" not touching an identifier character (Postgres: letters, digits, _, $ and
# anything non-ASCII), so `my_model`, `models` and `modelé` do not match.
_MODEL_WORD = re.compile(r"(?<![A-Za-z0-9_$\x80-\U0010ffff])model(?![A-Za-z0-9_$\x80-\U0010ffff])", re.IGNORECASE)
_MODEL_WORD_BYTES = re.compile(rb"(?<![A-Za-z0-9_$\x80-\xff])model(?![A-Za-z0-9_$\x80-\xff])", re.IGNORECASE)


def might_be_ml_statement(sql: str | bytes | bytearray | memoryview) -> bool:
    """False only if `sql` certainly holds no CREATE/SHOW/DROP MODEL statement.

    Accepts the Query message payload as bytes (any ASCII-compatible client
    encoding) or as text.
    """
    if isinstance(sql, str):
        # lower() + `in` (ASCII fast paths, two-way search) is several times cheaper
        # than a case-insensitive regex; the exact test runs only when it hits.
        return "model" in sql.lower() and _MODEL_WORD.search(sql) is not None
    data = bytes(sql) if isinstance(sql, memoryview) else sql
    return b"model" in data.lower() and _MODEL_WORD_BYTES.search(data) is not None
