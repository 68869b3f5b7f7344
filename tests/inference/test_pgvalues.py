"""encode_values against what Postgres itself sends, byte for byte, text and binary."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.inference.pgfloat import pg_float_text
from proxy.inference.pgvalues import ValueOutOfRange, canonical_type, encode_values

from tests.inference.test_rows_pg import query, values_table  # noqa: F401  (fixture)

FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.5, 0.1, 1 / 3, 2 / 3, 1e-4, 9.999999999999999e-05,
          1.5e-7, 5e-324, 2.2250738585072014e-308, 1e-300, 1e15, 1e14, 999999999999999.9,
          1e16, 123456789.125, 1e9, 999999999.5, 1e21, 1.7976931348623157e308,
          3.141592653589793, -123.456, 1e6, 999999.94, 123456.7, 65504.0, 1e-5, 0.00012345,
          math.nan, math.inf, -math.inf]
INTEGRAL = [0.0, 1.0, -1.0, 2.5, 3.5, -2.5, 127.0, -32768.0, 32767.0, 2147483647.0,
            -2147483648.0, 4e15, -9.2e18]
TEXTS = ["", "a", "plain text", "é ü 中文 🎉", "tab\tnew\nline", "q'uote", "\\", "x" * 70000]
JSON = ['{"a": 1}', "[1, 2, 3]", '"é"', "null", "12.5", '{"k": [true, false, null]}', "{}"]


def literal(value, sql_type: str) -> str:
    if value is None:
        return f"NULL::{sql_type}"
    text = repr(value) if isinstance(value, float) else str(value)
    return "'" + text.replace("'", "''") + f"'::{sql_type}"


def server_fields(query, exprs: list[str], fmt: int) -> tuple[np.ndarray, bytes]:
    """Lengths and payload Postgres sends for one expression per row."""
    table = values_table([f"{i}" for i in range(len(exprs))], exprs)
    reply = query(f"SELECT x FROM {table} AS v(i, x) ORDER BY i", [fmt])
    return reply.fields(0)


def check(query, values: list, source_type: str, pg_type: str, fmt: int,
          nulls: np.ndarray | None = None, array: np.ndarray | None = None) -> None:
    exprs = [f"({literal(v, source_type)})::{pg_type}" for v in values]
    want_lengths, want_payload = server_fields(query, exprs, fmt)
    array = np.array(values, dtype=object if source_type == "text" else None) if array is None else array
    lengths, payload = encode_values(array, pg_type, fmt, nulls=nulls)
    assert lengths.tolist() == want_lengths.tolist()
    assert payload == want_payload


@pytest.mark.parametrize("fmt", [0, 1])
@pytest.mark.parametrize("pg_type", ["double precision", "real", "numeric"])
def test_floats(query, fmt, pg_type):
    values = FLOATS + [-v for v in FLOATS[2:-3]]
    if pg_type == "real":
        values = [v for v in values if not 0 < abs(v) < 1e-45 and not 3.5e38 < abs(v) < math.inf]
    check(query, values, "float8", pg_type, fmt, nulls=np.zeros(len(values), bool))


@pytest.mark.parametrize("fmt", [0, 1])
@pytest.mark.parametrize("pg_type", ["smallint", "integer", "bigint"])
def test_integers_round_half_even_like_postgres(query, fmt, pg_type):
    limit = {"smallint": 2**15, "integer": 2**31, "bigint": 2**63}[pg_type]
    values = [v for v in INTEGRAL if -limit <= v < limit]
    check(query, values, "float8", pg_type, fmt)
    ints = [0, -1, 1, limit - 1, -limit, 12345 % limit]
    check(query, ints, "bigint", pg_type, fmt, array=np.array(ints, dtype=np.int64))


@pytest.mark.parametrize("pg_type", ["smallint", "integer", "bigint"])
def test_integer_overflow_is_an_error(pg_type):
    with pytest.raises(ValueOutOfRange):
        encode_values(np.array([1.0, 1e19]), pg_type, 0)
    with pytest.raises(ValueOutOfRange):
        encode_values(np.array([math.inf]), pg_type, 1, nulls=np.array([False]))


@pytest.mark.parametrize("value", [1e39, -1e300, 1e-50])
def test_real_out_of_range_is_an_error(value):
    with pytest.raises(ValueOutOfRange):
        encode_values(np.array([1.0, value]), "real", 0)


@pytest.mark.parametrize("fmt", [0, 1])
def test_booleans(query, fmt):
    values = [True, False, True]
    check(query, values, "boolean", "boolean", fmt, array=np.array([1.0, 0.0, 2.0]))
    check(query, values, "boolean", "boolean", fmt, array=np.array(values))


@pytest.mark.parametrize("fmt", [0, 1])
@pytest.mark.parametrize("pg_type", ["text", "character varying", "json"])
def test_texts(query, fmt, pg_type):
    check(query, JSON if pg_type == "json" else TEXTS + JSON, "text", pg_type, fmt)


@pytest.mark.parametrize("fmt", [0, 1])
def test_jsonb_in_its_output_form(query, fmt):
    check(query, JSON, "text", "jsonb", fmt)


@pytest.mark.parametrize("fmt", [0, 1])
@pytest.mark.parametrize("pg_type", ["double precision", "integer", "numeric", "text", "boolean"])
def test_nulls(query, fmt, pg_type):
    values = [None, 1.0, None, None, 0.0] if pg_type != "text" else [None, "a", None, "", None]
    source = "text" if pg_type == "text" else "float8"
    array = np.array([math.nan if v is None else v for v in values]) if source != "text" else None
    exprs = [f"({literal(v, source)})::{pg_type}" for v in values]
    if pg_type == "boolean":
        exprs = [f"(({literal(v, source)}) <> 0)" for v in values]
    want = server_fields(query, exprs, fmt)
    got = encode_values(array if array is not None else np.array(values, dtype=object), pg_type, fmt)
    assert got[0].tolist() == want[0].tolist() and got[1] == want[1]


def test_all_null_and_empty():
    lengths, payload = encode_values(np.array([None, None], dtype=object), "numeric", 1)
    assert lengths.tolist() == [-1, -1] and payload == b""
    lengths, payload = encode_values(np.array([]), "text", 0)
    assert lengths.size == 0 and payload == b""


def test_text_of_labels():
    labels = np.array(["yes", 3, None, 2.5], dtype=object)
    lengths, payload = encode_values(labels, "varchar", 0)
    assert lengths.tolist() == [3, 1, -1, 3] and payload == b"yes32.5"
    lengths, payload = encode_values(np.array([1, -20]), "text", 1)
    assert lengths.tolist() == [1, 3] and payload == b"1-20"
    lengths, payload = encode_values(np.array([True, False]), "text", 0)
    assert payload == b"truefalse"


def test_type_names():
    assert canonical_type("INT4") == "integer"
    assert canonical_type("character  varying(20)") == "text"
    assert canonical_type("Double Precision") == "double precision"
    assert canonical_type("numeric(10, 2)") == "numeric"
    with pytest.raises(ValueError):
        canonical_type("point")
    with pytest.raises(ValueError):
        encode_values(np.array([1.0]), "float8", 2)


def random_floats(rng: np.random.Generator, n: int, dtype) -> list[float]:
    """Finite values from random bit patterns (every magnitude and digit count)
    and from a log-uniform spread (the ranges model outputs live in)."""
    width = np.dtype(dtype).itemsize
    bits = np.frombuffer(rng.bytes(width * n), dtype=dtype)
    spread = (rng.standard_normal(n) * 10.0 ** rng.integers(-8, 18, n)).astype(dtype)
    both = np.concatenate([bits, spread]).astype(np.float64)
    return both[np.isfinite(both)].tolist()


@pytest.mark.parametrize("seed", [1, 2])
def test_random_floats_print_like_postgres(query, seed):
    rng = np.random.default_rng(seed)
    doubles = random_floats(rng, 400, np.float64)
    check(query, doubles, "float8", "float8", 0)
    check(query, random_floats(rng, 400, np.float32), "float8", "real", 0)
    check(query, doubles[::8], "float8", "numeric", 0)
    check(query, doubles[::8], "float8", "numeric", 1)


def boundary_floats(rng: np.random.Generator) -> list[float]:
    """Large values whose shortest round-half-even decimal is exactly a midpoint to
    a neighbour (a 12-digit integer rounded to a double), where Ryu prints more."""
    out = []
    for exp in range(54, 70):
        for mantissa in rng.integers(2**51, 2**52, 12):
            text = str(2**exp + int(mantissa) * 2 ** (exp - 52))
            out.append(float(int(text[:12] + "0" * (len(text) - 12))))
    out += [float(np.float32(v)) for v in rng.integers(2**22, 2**40, 300)]
    return out + [2.0**k for k in range(40, 80)]


@pytest.mark.parametrize("pg_type", ["float8", "real"])
def test_interval_boundaries_print_like_postgres(query, pg_type):
    values = boundary_floats(np.random.default_rng(5))
    if pg_type == "real":
        values = [float(np.float32(v)) for v in values if v < 3e38]
    check(query, values, "float8", pg_type, 0)


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_vectorized_text_matches_the_scalar_formatter(x):
    values = np.array([x, x * 1e-6, x * 1e6, x / 7])
    lengths, payload = encode_values(values, "float8", 0, nulls=np.zeros(4, bool))
    expect = [pg_float_text(float(v)) for v in values]
    assert payload.decode() == "".join(expect)
    assert lengths.tolist() == [len(e) for e in expect]
