"""DataRowBatch on real Postgres replies, text and binary: decode, and a full
rewrite round trip (appended argument columns -> prediction spliced in) compared
byte for byte with the rows Postgres sends for the equivalent plain query."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np
import pytest

from proxy import protocol as p
from proxy.inference.pgvalues import encode_values
from proxy.inference.rowdesc import parse_row_description, rewrite_row_description
from proxy.inference.rows import DataRowBatch, scan_data_rows

from tests.support.wire import RawConn


def extended_query(sql: str, formats: Sequence[int] = ()) -> bytes:
    """Parse/Bind/Describe/Execute/Sync of `sql` with the given result formats."""
    bind = b"\x00\x00" + struct.pack("!hh", 0, 0) + struct.pack(
        f"!h{len(formats)}h", len(formats), *formats)
    return b"".join([
        p.message(b"P", b"\x00" + p.cstr(sql) + b"\x00\x00"),
        p.message(b"B", bind),
        p.message(b"D", b"P\x00"),
        p.message(b"E", b"\x00\x00\x00\x00\x00"),
        p.message(b"S"),
    ])


class PgReply:
    """The RowDescription and DataRows of one query, as raw messages."""

    def __init__(self, messages: list[tuple[bytes, bytes]]) -> None:
        raw = [t + struct.pack("!I", len(body) + 4) + body for t, body in messages]
        errors = [m for m in messages if m[0] == b"E"]
        assert not errors, p.parse_fields(errors[0][1])
        self.description = next(r for r in raw if r[:1] == b"T")
        self.rows = [r for r in raw if r[:1] == b"D"]

    def batch(self) -> DataRowBatch:
        return DataRowBatch.from_frames(self.rows)

    def fields(self, column: int) -> tuple[np.ndarray, bytes]:
        """Lengths and concatenated payload of one column, as Postgres sent them."""
        batch = self.batch()
        lengths = batch.field_len[column].astype(np.int32) if batch.n_rows else np.zeros(0, np.int32)
        begin = batch.field_pos[column] + 4 if batch.n_rows else []
        payload = b"".join(bytes(batch.u8[b:b + n]) for b, n in zip(begin, lengths) if n > 0)
        return lengths, payload


@pytest.fixture(scope="module")
def query(upstream):
    conn = RawConn.to_upstream(upstream)
    conn.login()

    def run(sql: str, formats: Sequence[int] = ()) -> PgReply:
        conn.send(extended_query(sql, formats))
        return PgReply(conn.read_until_ready())

    yield run
    conn.close()


FLOATS = [0.0, -0.0, 1.0, -2.5, 0.1, 1e-300, 5e-324, 1.7976931348623157e308, 1e15,
          123456789.125, 3.141592653589793, math.nan, math.inf, -math.inf, None]
NUMERICS = ["12345678901234567890.123456789012345", "-0.000000000000000000001234567891",
            "99999999999999999999999999999999999999", "-42", "0.1"]
TEXTS = ["", "plain", "é ü 中文 🎉", "quote ' and \\ backslash", "x" * 100_000, None]


def float_literal(value: float | None) -> str:
    return "NULL" if value is None else f"'{value!r}'::float8"


def text_literal(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def values_table(*columns: list[str]) -> str:
    rows = ", ".join("(" + ", ".join(row) + ")" for row in zip(*columns))
    return f"(VALUES {rows})"


def test_decode_float_int_epoch_and_text_columns(query):
    n = len(FLOATS)
    texts = (TEXTS * 3)[:n]
    ints = [None if i % 5 == 4 else (-1) ** i * 10 ** (i + 2) for i in range(n)]
    stamps = ["NULL" if i % 4 == 3 else f"'2024-02-29 12:34:{i:02d}.5+00'::timestamptz"
              for i in range(n)]
    table = values_table([float_literal(v) for v in FLOATS],
                         ["NULL" if v is None else f"{v}::bigint" for v in ints],
                         stamps, [text_literal(t) for t in texts],
                         [("NULL", "true", "false")[i % 3] for i in range(n)],
                         ["NULL" if i % 6 == 5 else f"'{NUMERICS[i % 5]}'::numeric" for i in range(n)])
    reply = query(
        "SELECT f::float8, (i::bigint)::float8, extract(epoch FROM s)::float8, t::text, "
        f"(b::boolean)::integer, (d::numeric)::float8 FROM {table} AS v(f, i, s, t, b, d)")
    batch = reply.batch()
    assert (batch.n_rows, batch.n_columns) == (n, 6)
    got = batch.column(0, "float")
    for g, want in zip(got.tolist(), FLOATS):
        assert (math.isnan(g) and (want is None or math.isnan(want))) or g == want
    assert np.array_equal(batch.column(1, "int"), np.array(ints, dtype=float), equal_nan=True)
    epoch = batch.column(2, "epoch")
    expect = [math.nan if s == "NULL" else
              datetime(2024, 2, 29, 12, 34, i, 500000, tzinfo=timezone.utc).timestamp()
              for i, s in enumerate(stamps)]
    assert np.array_equal(epoch, np.array(expect), equal_nan=True)
    assert batch.column(3, "text").tolist() == texts
    numerics = [math.nan if i % 6 == 5 else float(NUMERICS[i % 5]) for i in range(n)]
    assert np.array_equal(batch.column(5, "float"), np.array(numerics), equal_nan=True)
    flags = batch.column(4, "int")
    assert np.array_equal(flags, np.array([(math.nan, 1.0, 0.0)[i % 3] for i in range(n)]),
                          equal_nan=True)


@pytest.mark.parametrize("fmt", [0, 1])
def test_rewritten_query_round_trip(query, fmt):
    """What the proxy does for `SELECT id, fn(age, plan) FROM t`: the reply of the
    rewritten query, decoded, predicted and spliced, is byte for byte the reply of
    a query computing the prediction in SQL."""
    n = 2000
    table = (f"(SELECT g AS id, CASE WHEN g % 7 = 0 THEN NULL ELSE (g * 37) % 91 END AS age, "
             f"CASE WHEN g % 11 = 0 THEN NULL ELSE repeat('é', g % 5) || 'p' || g END AS plan "
             f"FROM generate_series(1, {n}) g) AS t")
    rewritten = query(
        "SELECT id, (CASE WHEN false THEN 0.5::float8 END) AS fn, "
        "(age::integer)::float8 AS \"__mlproxy_0_0\", (plan::text)::text AS \"__mlproxy_0_1\" "
        f"FROM {table} ORDER BY id", [fmt, fmt, 0, 0])
    plain = query(
        "SELECT id, (age * 0.5 + char_length(plan))::float8 AS fn "
        f"FROM {table} ORDER BY id", [fmt, fmt])

    batch = rewritten.batch()
    age = batch.column(2, "float")
    plan = batch.column(3, "text")
    lengths = np.array([math.nan if s is None else len(s) for s in plan])
    prediction = age * 0.5 + lengths  # NULL in, NULL out
    out = batch.splice({1: encode_values(prediction, "float8", fmt)}, 2)
    assert out == b"".join(plain.rows)
    description = rewrite_row_description(rewritten.description, 2)
    assert [f.name for f in parse_row_description(description)] == [b"id", b"fn"]
    assert description == plain.description


@pytest.mark.parametrize("fmt", [0, 1])
def test_splice_keeps_every_type_of_user_column(query, fmt):
    """User columns of many types (text and binary) pass through the splice
    untouched while the placeholder in the middle is replaced."""
    sql = ("SELECT g::int2, g::int8 * 1000000000000, (g / 7.0)::numeric(30, 20), "
           "{0}, repeat('ü', g % 4), (g % 3 = 0), '2024-01-01'::date + g, "
           "('{{\"k\": ' || g || '}}')::jsonb, (g::float8 / 3)::real, NULLIF(g % 4, 0)::bigint{1} "
           "FROM generate_series(-50, 50) g")
    rewritten = query(sql.format("(CASE WHEN false THEN 'x'::text END)", ", g::text, 'é'::text"),
                      [fmt] * 10 + [0, 0])
    plain = query(sql.format("('v' || g)::text", ""), [fmt] * 10)
    batch = rewritten.batch()
    ids = batch.column(10, "int").astype(int)
    out = batch.splice({3: encode_values(np.array([f"v{i}" for i in ids], dtype=object),
                                         "text", fmt)}, 10)
    assert out == b"".join(plain.rows)


def test_scan_a_received_stream(query):
    """The rows of a real reply, found in the raw stream and parsed in place."""
    reply = query("SELECT g, 'r' || g FROM generate_series(1, 500) g")
    stream = reply.description + b"".join(reply.rows) + p.command_complete("SELECT 500")
    offsets, stop = scan_data_rows(stream, len(reply.description))
    assert len(offsets) == 500 and stream[stop:stop + 1] == b"C"
    batch = DataRowBatch.from_buffer(stream, offsets)
    assert batch.column(0, "int").tolist() == list(map(float, range(1, 501)))
    assert batch.column(1, "text").tolist() == [f"r{g}" for g in range(1, 501)]
