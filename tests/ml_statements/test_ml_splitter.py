"""split_statements: psql's splitting rules, on any SQL, never failing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.ml_statements import split_statements


def texts(sql: str, **kwargs) -> list[str]:
    return [p.text for p in split_statements(sql, **kwargs)]


def test_pieces_and_offsets():
    sql = "SELECT 1; CREATE MODEL m FROM t TARGET y FUNCTION f;  SHOW MODEL m"
    pieces = split_statements(sql)
    assert [p.text for p in pieces] == ["SELECT 1", " CREATE MODEL m FROM t TARGET y FUNCTION f", "  SHOW MODEL m"]
    assert [p.start for p in pieces] == [0, 9, 52]
    assert all(sql[p.start : p.end] == p.text for p in pieces)
    assert [p.is_empty for p in pieces] == [False, False, False]


def test_trailing_semicolon_leaves_an_empty_last_piece():
    pieces = split_statements("SELECT 1; -- done\n")
    assert [(p.text, p.is_empty) for p in pieces] == [("SELECT 1", False), (" -- done\n", True)]
    assert [(p.text, p.is_empty) for p in split_statements("")] == [("", True)]
    assert [p.is_empty for p in split_statements(";;/* c */;")] == [True, True, True, True]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT ';' ; SELECT 2", ["SELECT ';' ", " SELECT 2"]),
        ("SELECT 'it''s;' ; x", ["SELECT 'it''s;' ", " x"]),
        (r"SELECT E'\';' ; x", [r"SELECT E'\';' ", " x"]),
        ("SELECT $$;$$; x", ["SELECT $$;$$", " x"]),
        ("SELECT $a$ $$; $a$; x", ["SELECT $a$ $$; $a$", " x"]),
        ('SELECT 1 AS ";"; x', ['SELECT 1 AS ";"', " x"]),
        ("SELECT 1 -- ;\n; x", ["SELECT 1 -- ;\n", " x"]),
        ("SELECT /* ; /* ; */ ; */ 1; x", ["SELECT /* ; /* ; */ ; */ 1", " x"]),
        ("SELECT a$b$; x", ["SELECT a$b$", " x"]),  # `$` inside an identifier starts no dollar quote
        ("CREATE RULE r AS ON INSERT TO t DO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2)); x",
         ["CREATE RULE r AS ON INSERT TO t DO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))", " x"]),
        ("select 'unterminated; x", ["select 'unterminated; x"]),
        ("select /* unterminated; x", ["select /* unterminated; x"]),
        ("select ) ; x", ["select ) ", " x"]),  # a stray ) does not swallow the rest
    ],
)
def test_separators_inside_quotes_comments_and_parentheses(sql, expected):
    assert texts(sql) == expected


def test_sql_standard_function_bodies_are_not_split():
    body = (
        "CREATE OR REPLACE FUNCTION f(x int) RETURNS int LANGUAGE sql\n"
        "BEGIN ATOMIC\n  SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;\n  SELECT x;\nEND"
    )
    assert texts(body + "; SELECT 2") == [body, " SELECT 2"]
    procedure = "create procedure p() begin atomic insert into t values (1); end"
    assert texts(procedure + ";x") == [procedure, "x"]
    # Outside CREATE FUNCTION, BEGIN is a transaction and splits as usual.
    assert texts("BEGIN; SELECT 1; END") == ["BEGIN", " SELECT 1", " END"]


def test_backslash_escapes_when_standard_conforming_strings_is_off():
    sql = r"SELECT 'a\'; b'; c"
    assert texts(sql, standard_conforming_strings=False) == [r"SELECT 'a\'; b'", " c"]
    assert texts(sql) == [r"SELECT 'a\'", " b'; c"]


# -- properties ---------------------------------------------------------------------

_SQL_ALPHABET = st.sampled_from(list("ab $'\"E;-/*()\\\n\t1_é") + ["$$", "$x$", "--", "/*", "*/", "''", "E'"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_SQL_ALPHABET, max_size=60).map("".join))
def test_round_trip_on_arbitrary_text(sql):
    pieces = split_statements(sql)
    assert ";".join(p.text for p in pieces) == sql
    position = 0
    for piece in pieces:
        assert piece.start == position
        assert sql[piece.start : piece.end] == piece.text
        position = piece.end + 1
    assert pieces[-1].end == len(sql)


# Fragments that hold a `;` that must never split, and plain ones that hold none.
_PROTECTED = st.one_of(
    st.text(alphabet="ab ;'\"", max_size=8).map(lambda s: "'" + s.replace("'", "''") + "'"),
    st.text(alphabet="ab ;'\\", max_size=8).map(lambda s: "E'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"),
    st.text(alphabet="ab ;'\"$", max_size=8).filter(lambda s: "$q$" not in s and not s.endswith("$"))
    .map(lambda s: "$q$" + s + "$q$"),
    st.text(alphabet="ab ;'\"$", max_size=8).filter(lambda s: "$$" not in s and not s.endswith("$"))
    .map(lambda s: "$$" + s + "$$"),
    st.text(alphabet="ab ;'", max_size=8).map(lambda s: '"' + s.replace('"', '""') + '"'),
    st.text(alphabet="ab ;'\"", max_size=8).map(lambda s: "-- " + s + "\n"),
    st.text(alphabet="ab ;'\"", max_size=8).map(lambda s: "/* " + s + " /* ; */ */"),
    st.text(alphabet="ab ;", max_size=8).map(lambda s: "(" + s + ")"),
)
_PLAIN = st.sampled_from(["select", "x", "1", "+", "model", "create", "a.b", "::int", "=", "$1"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.one_of(_PROTECTED, _PLAIN), min_size=1, max_size=6).map(" ".join),
                min_size=1, max_size=5))
def test_never_splits_inside_quotes_comments_or_dollar_quotes(statements):
    sql = ";".join(statements)
    assert texts(sql) == statements
