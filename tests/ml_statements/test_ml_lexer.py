"""Token boundaries and literal values, by Postgres' lexical rules."""

from __future__ import annotations

import pytest

from proxy.errors import SYNTAX_ERROR, PgError
from proxy.ml_statements.lexer import (
    EOF,
    IDENT,
    NUMBER,
    OP,
    PARAM,
    PUNCT,
    QUOTED_IDENT,
    STRING,
    tokenize,
)
from proxy.ml_statements.literals import identifier_value, quote_identifier, string_value


def kinds_and_texts(sql: str, **kwargs) -> list[tuple[str, str]]:
    return [(t.kind, t.text) for t in tokenize(sql, **kwargs)]


def only(sql: str, **kwargs):
    tokens = list(tokenize(sql, **kwargs))
    assert len(tokens) == 2 and tokens[1].kind == EOF, tokens
    return tokens[0]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("'it''s'", (STRING, "'it''s'")),
        (r"E'a\'b'", (STRING, r"E'a\'b'")),
        (r"e'a\\'", (STRING, r"e'a\\'")),
        ("$$ a ; ' \" $$", (STRING, "$$ a ; ' \" $$")),
        ("$fn$ $$ ; $fn$", (STRING, "$fn$ $$ ; $fn$")),
        ('"Quoted ""name"""', (QUOTED_IDENT, '"Quoted ""name"""')),
        ("U&'d\\0061t'", (STRING, "U&'d\\0061t'")),
        ('U&"d\\0061t"', (QUOTED_IDENT, 'U&"d\\0061t"')),
        ("B'0101'", (STRING, "B'0101'")),
        ("X'1F'", (STRING, "X'1F'")),
        ("N'x'", (STRING, "N'x'")),
        ("a$b$", (IDENT, "a$b$")),
        ("été", (IDENT, "été")),
        ("$12", (PARAM, "$12")),
        ("1.5e-3", (NUMBER, "1.5e-3")),
        (".5", (NUMBER, ".5")),
        ("1_000_000", (NUMBER, "1_000_000")),
        ("0x1F", (NUMBER, "0x1F")),
        ("::", (PUNCT, "::")),
        ("<=", (OP, "<=")),
    ],
)
def test_single_tokens(sql, expected):
    token = only(sql)
    assert (token.kind, token.text) == expected
    assert (token.start, token.end) == (0, len(sql))


def test_comments_and_whitespace_are_skipped_and_nest():
    sql = "a /* x /* nested ; */ still comment */ b -- tail ; 'x\n c"
    assert kinds_and_texts(sql) == [(IDENT, "a"), (IDENT, "b"), (IDENT, "c"), (EOF, "")]


def test_operator_stops_before_a_comment():
    assert kinds_and_texts("1+--c\n2") == [(NUMBER, "1"), (OP, "+"), (NUMBER, "2"), (EOF, "")]
    assert kinds_and_texts("1*/*c*/2") == [(NUMBER, "1"), (OP, "*"), (NUMBER, "2"), (EOF, "")]


def test_backslash_quote_without_standard_conforming_strings():
    sql = r"'a\'; b'"
    assert only(sql, standard_conforming_strings=False).text == sql
    # With standard strings the backslash is literal and the string ends early.
    assert kinds_and_texts(sql, strict=False)[0] == (STRING, r"'a\'")


@pytest.mark.parametrize(
    ("sql", "message", "position"),
    [
        ("select 'abc", "unterminated quoted string at or near \"'abc\"", 8),
        ("select E'abc\\'", "unterminated quoted string at or near \"E'abc\\'\"", 8),
        ('select "abc', 'unterminated quoted identifier at or near ""abc"', 8),
        ("select $x$abc$", 'unterminated dollar-quoted string at or near "$x$abc$"', 8),
        ("select /* a /* b */", 'unterminated /* comment at or near "/* a /* b */"', 8),
        ("select B'01", "unterminated bit string literal at or near \"B'01\"", 8),
        ("select X'1", "unterminated hexadecimal string literal at or near \"X'1\"", 8),
        ("select 12abc", 'trailing junk after numeric literal at or near "12a"', 8),
    ],
)
def test_unterminated_constructs_are_postgres_errors(sql, message, position):
    with pytest.raises(PgError) as info:
        list(tokenize(sql, offset=0))
    assert (info.value.sqlstate, info.value.message, info.value.position) == (SYNTAX_ERROR, message, position)


def test_offset_shifts_error_positions():
    with pytest.raises(PgError) as info:
        list(tokenize("x 'abc", offset=100))
    assert info.value.position == 103


def test_lenient_mode_runs_unterminated_constructs_to_the_end():
    assert kinds_and_texts("a 'b; c", strict=False) == [(IDENT, "a"), (STRING, "'b; c"), (EOF, "")]
    assert kinds_and_texts("a /* b; c", strict=False) == [(IDENT, "a"), (EOF, "")]


@pytest.mark.parametrize(
    ("sql", "value"),
    [
        ("MyTable", "mytable"),
        ('"MyTable"', "MyTable"),
        ('"Quoted ""names"""', 'Quoted "names"'),
        ("ÉTÉ", "ÉtÉ"),  # Postgres folds ASCII letters only in multibyte encodings
        ('U&"d\\0061t\\+000061"', "data"),
        ("a" * 70, "a" * 63),
        ('"' + "é" * 40 + '"', "é" * 31),  # 63 bytes, cut on a character boundary
    ],
)
def test_identifier_values(sql, value):
    assert identifier_value(only(sql), 0) == value


def test_zero_length_quoted_identifier():
    with pytest.raises(PgError, match="zero-length delimited identifier") as info:
        identifier_value(only('""'), 10)
    assert info.value.position == 11


@pytest.mark.parametrize(
    ("sql", "value"),
    [
        ("'it''s'", "it's"),
        ("'a\\nb'", "a\\nb"),
        ("E'a\\nb\\t\\x41\\101\\u00e9\\U0001F600\\q'''", "a\nb\tAAé\U0001F600q'"),
        ("$$it's$$", "it's"),
        ("$t$ $$ $t$", " $$ "),
        ("U&'d\\0061t\\\\'", "dat\\"),
        ("N'x'", "x"),
    ],
)
def test_string_values(sql, value):
    assert string_value(only(sql), 0) == value


def test_string_value_without_standard_conforming_strings():
    token = only(r"'a\nb'", standard_conforming_strings=False)
    assert string_value(token, 0, standard_conforming_strings=False) == "a\nb"


@pytest.mark.parametrize("sql", ["U&'\\00zz'", "E'\\uD800'", "U&'\\+110000'"])
def test_bad_unicode_escapes(sql):
    with pytest.raises(PgError) as info:
        string_value(only(sql), 5)
    assert info.value.sqlstate == SYNTAX_ERROR and info.value.position == 6


@pytest.mark.parametrize(
    ("name", "sql"),
    [("plain", "plain"), ("Mixed", '"Mixed"'), ("select", '"select"'), ("a b", '"a b"'), ('q"', '"q"""'),
     ("int", '"int"'), ("text", "text"), ("a$", '"a$"')],
)
def test_quote_identifier(name, sql):
    assert quote_identifier(name) == sql
