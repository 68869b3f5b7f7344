"""Values of identifier and string tokens, decoded by Postgres' rules.

Kept apart from the lexer because only the ML grammar needs values; the splitter
only needs boundaries.  Identifiers fold like Postgres (ASCII letters only, quoted
names verbatim) and are truncated to NAMEDATALEN-1 bytes, so the names we store are
the names the upstream catalog will hold.
"""

from __future__ import annotations

import re

from pglast import keywords

from .lexer import IDENT, Token, near, syntax_error

NAMEDATALEN = 64

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_PLAIN_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
# Keywords Postgres' quote_identifier() quotes: all but the unreserved ones.
_KEYWORDS_NEEDING_QUOTES = frozenset(
    keywords.RESERVED_KEYWORDS | keywords.COL_NAME_KEYWORDS | keywords.TYPE_FUNC_NAME_KEYWORDS
)
RESERVED_KEYWORDS = frozenset(keywords.RESERVED_KEYWORDS)

_E_ESCAPE = re.compile(
    r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))|''",
    re.DOTALL,
)
_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_UNICODE_ESCAPE = re.compile(r"\\(?:\\|([0-9A-Fa-f]{4})|\+([0-9A-Fa-f]{6})|(.|$))", re.DOTALL)


def fold_identifier(word: str) -> str:
    """An unquoted identifier as Postgres stores it: ASCII-lowercased, truncated."""
    return truncate_identifier(word.translate(_ASCII_LOWER))


def truncate_identifier(name: str) -> str:
    """Cut to NAMEDATALEN-1 bytes of UTF-8 on a character boundary, as Postgres does."""
    raw = name.encode("utf-8")
    if len(raw) < NAMEDATALEN:
        return name
    return raw[: NAMEDATALEN - 1].decode("utf-8", errors="ignore")


def quote_identifier(name: str) -> str:
    """`name` as SQL text: bare when that reads back the same, else double-quoted."""
    if _PLAIN_IDENTIFIER.fullmatch(name) and name not in _KEYWORDS_NEEDING_QUOTES:
        return name
    return '"' + name.replace('"', '""') + '"'


def identifier_value(token: Token, offset: int) -> str:
    """The name an IDENT or QUOTED_IDENT token denotes."""
    if token.kind == IDENT:
        return fold_identifier(token.text)
    text = token.text
    unicode = text[0] in "uU"
    body = text[3:-1] if unicode else text[1:-1]
    if not body:
        raise syntax_error(f"zero-length delimited identifier {near(text)}", offset + token.start + 1)
    body = body.replace('""', '"')
    if unicode:
        body = _decode_unicode_escapes(body, token, offset)
    return truncate_identifier(body)


def string_value(token: Token, offset: int, standard_conforming_strings: bool = True) -> str:
    """The text a STRING token denotes (quotes removed, escapes applied)."""
    text = token.text
    first = text[0]
    if first == "$":
        tag_end = text.index("$", 1) + 1
        return text[tag_end:-tag_end]
    if first in "uU":
        return _decode_unicode_escapes(text[3:-1].replace("''", "'"), token, offset)
    if first in "eE" or (first != "'" and first in "nN" and not standard_conforming_strings):
        return _decode_backslash_escapes(text[2:-1], token, offset)
    if first == "'":
        body = text[1:-1]
        if standard_conforming_strings:
            return body.replace("''", "'")
        return _decode_backslash_escapes(body, token, offset)
    return text[2:-1].replace("''", "'")  # N'', B'', X'': body as written


def _decode_backslash_escapes(body: str, token: Token, offset: int) -> str:
    """E'' string escapes: \\n, \\t, octal, \\xhh, \\uXXXX, \\UXXXXXXXX, \\<char>."""

    def one(m: re.Match[str]) -> str:
        octal, hex2, u4, u8, other = m.groups()
        if m.group() == "''":
            return "'"
        if octal:
            return chr(int(octal, 8))
        if hex2:
            return chr(int(hex2, 16))
        if u4 or u8:
            return _code_point(int(u4 or u8, 16), token, offset)
        return _SIMPLE_ESCAPES.get(other, other)

    return _E_ESCAPE.sub(one, body)


def _decode_unicode_escapes(body: str, token: Token, offset: int) -> str:
    """U&'' escapes with the default escape character (backslash)."""

    def one(m: re.Match[str]) -> str:
        u4, u6, bad = m.groups()
        if u4 or u6:
            return _code_point(int(u4 or u6, 16), token, offset)
        if bad is None:
            return "\\"
        raise syntax_error(f"invalid Unicode escape {near(token.text)}", offset + token.start + 1,
                           hint="Unicode escapes must be \\XXXX or \\+XXXXXX.")

    return _UNICODE_ESCAPE.sub(one, body)


def _code_point(value: int, token: Token, offset: int) -> str:
    """chr(value), or Postgres' error for NUL, surrogates and out-of-range values."""
    if value == 0 or value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
        raise syntax_error(f"invalid Unicode escape value {near(token.text)}", offset + token.start + 1)
    return chr(value)
