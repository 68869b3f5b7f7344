"""A Postgres-compatible SQL tokenizer that also tolerates Redshift ML syntax.

pglast cannot parse `CREATE MODEL`, and the statement splitter must work on any SQL,
so both the splitter and the ML grammar need a scanner of their own.  It finds token
*boundaries* the way Postgres' scan.l does (quotes with '' doubling, E'' backslash
escapes, $tag$ dollar quoting, "quoted identifiers", -- and nested /* */ comments,
operators that stop before a comment) and leaves decoding of values to `literals`,
so splitting never pays for work it does not need.

Offsets are Python string indices, i.e. characters, which is also the unit of a
Postgres error cursor position.

In strict mode an unterminated quote or comment raises PgError(42601) with Postgres'
own wording; in lenient mode (used by the splitter, which must never fail) the
construct simply runs to the end of the input and Postgres itself reports it later.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

from proxy.errors import SYNTAX_ERROR, PgError

# Token kinds.
IDENT = "IDENT"  # unquoted word: keyword or identifier (never decoded here)
QUOTED_IDENT = "QUOTED_IDENT"  # "name" or U&"name"
STRING = "STRING"  # 'x', E'x', B'x', X'x', N'x', U&'x', $tag$x$tag$
NUMBER = "NUMBER"
PARAM = "PARAM"  # $1
OP = "OP"  # operator made of + - * / < > = ~ ! @ # % ^ & | ` ?
PUNCT = "PUNCT"  # ( ) [ ] , ; : . ::
OTHER = "OTHER"  # any other single character (Postgres rejects most of them)
EOF = "EOF"


class Token(NamedTuple):
    """One token: its kind and where it sits in the scanned text."""

    kind: str
    start: int
    end: int
    text: str

    def is_keyword(self, word: str) -> bool:
        """True for an unquoted word spelled `word` in any case (`word` is lowercase)."""
        return self.kind == IDENT and self.text.lower() == word


_WHITESPACE = re.compile(r"[ \t\n\r\f\v]+")
_LINE_COMMENT = re.compile(r"--[^\n\r]*")
_BLOCK_COMMENT_EDGE = re.compile(r"/\*|\*/")
# Postgres: identifiers start with a letter, underscore or any non-ASCII character
# and continue with those, digits and `$`.
_IDENT = re.compile(r"[A-Za-z_\x80-\U0010ffff][A-Za-z_0-9$\x80-\U0010ffff]*")
_IDENT_CHAR = re.compile(r"[A-Za-z_0-9$\x80-\U0010ffff]")
_DECIMAL = r"[0-9](?:_?[0-9])*"
_NUMBER = re.compile(
    rf"0[xX](?:_?[0-9A-Fa-f])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+"
    rf"|(?:{_DECIMAL}(?:\.(?:{_DECIMAL})?)?|\.{_DECIMAL})(?:[eE][+-]?{_DECIMAL})?"
)
_PARAM = re.compile(r"\$[0-9]+")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z_0-9\x80-\U0010ffff]*)?\$")
_OPERATOR = re.compile(r"(?:[~!@#^&|`?+*%<>=]|-(?!-)|/(?!\*))+")
_QUOTE_OR_BACKSLASH = re.compile(r"['\\]")
_PUNCTUATION = frozenset("()[],;:.")

# Which literal a string prefix introduces, and Postgres' name for it in errors.
_STRING_PREFIXES = {
    "e": "quoted string",
    "n": "quoted string",
    "b": "bit string literal",
    "x": "hexadecimal string literal",
}


def syntax_error(message: str, position: int, hint: str | None = None, detail: str | None = None) -> PgError:
    """A 42601 error; `position` is already the 1-based cursor for the client."""
    return PgError(SYNTAX_ERROR, message, position=position, hint=hint, detail=detail)


def near(text: str) -> str:
    """Postgres' `at or near "..."` fragment, or `at end of input` for no text."""
    return f'at or near "{text}"' if text else "at end of input"


def tokenize(
    sql: str,
    *,
    strict: bool = True,
    standard_conforming_strings: bool = True,
    offset: int = 0,
) -> Iterator[Token]:
    """Yield the tokens of `sql` (no whitespace or comments), then one EOF token.

    The generator is lazy on purpose: the ML grammar looks at two or three tokens to
    decide that a statement is not one of its own and must then neither pay for nor
    fail on the rest (an unterminated quote later on is Postgres' error to report).
    `offset` only shifts the positions in raised errors (the caller's base offset).
    """
    n = len(sql)
    i = 0
    while True:
        m = _WHITESPACE.match(sql, i)
        if m:
            i = m.end()
        if i >= n:
            yield Token(EOF, n, n, "")
            return
        c = sql[i]
        nxt = sql[i + 1] if i + 1 < n else ""

        if c == "-" and nxt == "-":
            i = _LINE_COMMENT.match(sql, i).end()  # type: ignore[union-attr]
            continue
        if c == "/" and nxt == "*":
            i = _skip_block_comment(sql, i, strict, offset)
            continue

        if c == "'":
            end = _scan_quoted(sql, i + 1, not standard_conforming_strings)
            token = _finish(sql, i, end, STRING, "quoted string", strict, offset)
            yield token
            i = token.end
            continue
        if c == '"':
            end = _scan_quoted(sql, i + 1, False, '"')
            token = _finish(sql, i, end, QUOTED_IDENT, "quoted identifier", strict, offset)
            yield token
            i = token.end
            continue

        lower = c.lower()
        if lower in _STRING_PREFIXES and nxt == "'":
            backslashes = lower == "e" or (lower == "n" and not standard_conforming_strings)
            end = _scan_quoted(sql, i + 2, backslashes)
            token = _finish(sql, i, end, STRING, _STRING_PREFIXES[lower], strict, offset)
            yield token
            i = token.end
            continue
        if lower == "u" and nxt == "&" and i + 2 < n and sql[i + 2] in "'\"":
            quote = sql[i + 2]
            end = _scan_quoted(sql, i + 3, False, quote)
            kind, what = (STRING, "quoted string") if quote == "'" else (QUOTED_IDENT, "quoted identifier")
            token = _finish(sql, i, end, kind, what, strict, offset)
            yield token
            i = token.end
            continue

        m = _IDENT.match(sql, i)
        if m:
            yield Token(IDENT, i, m.end(), m.group())
            i = m.end()
            continue

        if "0" <= c <= "9" or (c == "." and "0" <= nxt <= "9"):
            m = _NUMBER.match(sql, i)
            end = m.end()  # type: ignore[union-attr]
            if strict and end < n and _IDENT_CHAR.match(sql, end):
                raise syntax_error(
                    f"trailing junk after numeric literal {near(sql[i:end + 1])}", offset + i + 1
                )
            yield Token(NUMBER, i, end, sql[i:end])
            i = end
            continue

        if c == "$":
            m = _PARAM.match(sql, i)
            if m:
                yield Token(PARAM, i, m.end(), m.group())
                i = m.end()
                continue
            m = _DOLLAR_TAG.match(sql, i)
            if m:
                tag = m.group()
                close = sql.find(tag, m.end())
                end = n if close < 0 else close + len(tag)
                if close < 0 and strict:
                    raise syntax_error(
                        f"unterminated dollar-quoted string {near(sql[i:])}", offset + i + 1
                    )
                yield Token(STRING, i, end, sql[i:end])
                i = end
                continue

        if c in _PUNCTUATION:
            end = i + 2 if c == ":" and nxt == ":" else i + 1
            yield Token(PUNCT, i, end, sql[i:end])
            i = end
            continue

        m = _OPERATOR.match(sql, i)
        if m:
            yield Token(OP, i, m.end(), m.group())
            i = m.end()
            continue

        yield Token(OTHER, i, i + 1, c)
        i += 1


def _scan_quoted(sql: str, i: int, backslash_escapes: bool, quote: str = "'") -> int:
    """Index just past the closing quote of a literal whose body starts at `i`.

    A doubled quote is part of the body; with backslash escapes (E'' strings, or
    standard_conforming_strings=off) a backslash also protects the next character.
    Returns -1 when the literal is unterminated.
    """
    n = len(sql)
    while True:
        if backslash_escapes:
            m = _QUOTE_OR_BACKSLASH.search(sql, i)
            j = m.start() if m else -1
        else:
            j = sql.find(quote, i)
        if j < 0:
            return -1
        if sql[j] == "\\":
            i = j + 2
            continue
        if j + 1 < n and sql[j + 1] == quote:
            i = j + 2
            continue
        return j + 1


def _finish(sql: str, start: int, end: int, kind: str, what: str, strict: bool, offset: int) -> Token:
    """Token for a quoted construct, or Postgres' error if it never closes."""
    if end < 0:
        if strict:
            raise syntax_error(f"unterminated {what} {near(sql[start:])}", offset + start + 1)
        end = len(sql)
    return Token(kind, start, end, sql[start:end])


def _skip_block_comment(sql: str, start: int, strict: bool, offset: int) -> int:
    """Index past a /* comment */, honouring nesting as Postgres does (psql too)."""
    depth = 0
    i = start
    while True:
        m = _BLOCK_COMMENT_EDGE.search(sql, i)
        if m is None:
            if strict:
                raise syntax_error(f"unterminated /* comment {near(sql[start:])}", offset + start + 1)
            return len(sql)
        depth += 1 if m.group() == "/*" else -1
        i = m.end()
        if depth == 0:
            return i
