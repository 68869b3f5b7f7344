"""Type names and FROM queries, checked by Postgres' own parser (pglast)."""

from __future__ import annotations

import pytest

from proxy.errors import SYNTAX_ERROR, PgError
from proxy.ml_statements.pg_parse import check_select, normalize_type_name


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("int", "integer"), ("INT4", "integer"), ("integer", "integer"), ("smallint", "smallint"),
        ("int8", "bigint"), ("real", "real"), ("float", "double precision"), ("float(3)", "real"),
        ("double   precision", "double precision"), ("float8", "double precision"),
        ("bool", "boolean"), ("decimal", "numeric"), ("numeric(10, 2)", "numeric(10,2)"),
        ("varchar", "character varying"), ("character varying(20)", "character varying(20)"),
        ("char", "character(1)"), ('"char"', '"char"'), ("text", "text"), ("json", "json"),
        ("timestamp", "timestamp without time zone"), ("timestamp(3)", "timestamp(3) without time zone"),
        ("timestamp with time zone", "timestamp with time zone"), ("timestamptz", "timestamp with time zone"),
        ("time(2) with time zone", "time(2) with time zone"), ("interval", "interval"),
        ("interval day to second(3)", "interval day to second(3)"), ("interval(2)", "interval(2)"),
        ("bit varying(3)", "bit varying(3)"), ("int[]", "integer[]"), ("integer[][]", "integer[]"),
        ("public.MyType", "public.mytype"), ('public."My Type"[]', 'public."My Type"[]'), ("date", "date"),
    ],
)
def test_type_names_are_canonical(written, canonical):
    assert normalize_type_name(written, 1) == canonical


@pytest.mark.parametrize(
    ("check", "text", "message", "at"),
    [(normalize_type_name, "x y", 'syntax error at or near "y"', 2),
     (normalize_type_name, "int from t", 'syntax error at or near "from"', 4),
     (normalize_type_name, "setof int", 'invalid type name at or near "setof int"', 0),
     (normalize_type_name, "timestamp with", 'syntax error at or near "with"', 10),
     (normalize_type_name, "numeric(1", 'invalid type name at or near "numeric(1"', 0),
     (normalize_type_name, "varchar(n)", 'syntax error at or near "n"', 8),
     (check_select, "UPDATE t SET a = 1", 'syntax error at or near "UPDATE"', 0),
     (check_select, "  SELECT 1 UNION SELECT 2 INTO x", 'syntax error at or near "INTO"', 26),
     (check_select, "SELECT 'é' FROM", 'syntax error at or near ")"', 15),
     (check_select, "SELECT 'é' FORM t", 'syntax error at or near "t"', 16),
     (check_select, "", 'syntax error at or near ")"', 0)],
)
def test_errors_point_into_the_text(check, text, message, at):
    with pytest.raises(PgError) as info:
        check(text, 50)
    assert (info.value.sqlstate, info.value.message, info.value.position) == (SYNTAX_ERROR, message, 50 + at)
    assert info.value.hint


@pytest.mark.parametrize("query", ["SELECT 1", "VALUES (1)", "TABLE t", "WITH a AS (SELECT 1) SELECT * FROM a",
                                   "SELECT 1 UNION SELECT 2", "SELECT * FROM t FOR UPDATE"])
def test_select_forms(query):
    check_select(query, 1)
