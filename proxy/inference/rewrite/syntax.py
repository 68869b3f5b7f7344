"""Postgres' own parser and scanner, seen as positions in the client's text.

Every rewrite here edits the client's text by spans instead of deparsing the tree, so
their spelling, comments and error positions survive.  pglast gives node locations
and token offsets as *character* offsets into the str it was given (checked by the
tests with non-ASCII text before a call), which is what Postgres reports back in an
error's position field too, so no byte/char conversion is needed anywhere.

One gap: pglast's A_Const objects carry no location, so constant_locations()
recovers them from the JSON form of the same parse (whose offsets are UTF-8 bytes).

The scanner gives what the tree lacks: where a call's closing parenthesis is, where
a clause ends, which `AND` separates two conjuncts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from pglast import ast, parse_sql
from pglast.parser import ParseError, parse_sql_json, scan

OPEN = {"(": ")", "[": "]"}
CLOSE = {")", "]"}
_COMMENTS = ("SQL_COMMENT", "C_COMMENT")


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token: `text[start:end]`; `word` is the upper-cased keyword or None."""

    start: int
    end: int
    text: str
    word: str | None

    def is_word(self, *words: str) -> bool:
        return self.word is not None and self.word in words


class TokenList:
    """The tokens of one statement text (comments dropped) with paren matching.

    `depth[i]` is the nesting depth of token i (a bracket counts as inside the pair
    it opens or closes); `partner[i]` is the index of the matching bracket.
    """

    def __init__(self, sql: str) -> None:
        self.sql = sql
        tokens: list[Token] = []
        for t in scan(sql):
            if t.name in _COMMENTS:
                continue
            text = sql[t.start : t.end + 1]
            word = text.upper() if t.kind != "NO_KEYWORD" else None
            tokens.append(Token(t.start, t.end + 1, text, word))
        self.tokens = tokens
        self.depth: list[int] = []
        self.partner: dict[int, int] = {}
        stack: list[int] = []
        for i, token in enumerate(tokens):
            if token.text in OPEN:
                stack.append(i)
                self.depth.append(len(stack))
            elif token.text in CLOSE and stack:
                self.depth.append(len(stack))
                j = stack.pop()
                self.partner[i] = j
                self.partner[j] = i
            else:
                self.depth.append(len(stack))
        self._by_start = {t.start: i for i, t in enumerate(tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> Token:
        return self.tokens[i]

    def index_at(self, offset: int) -> int:
        """Index of the token starting exactly at `offset` (a node location)."""
        try:
            return self._by_start[offset]
        except KeyError:
            raise SpanError(f"no token starts at offset {offset}") from None

    def index_from(self, offset: int) -> int:
        """Index of the first token starting at or after `offset` (len() if none)."""
        lo, hi = 0, len(self.tokens)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.tokens[mid].start < offset:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def indexes(self, start: int, end: int) -> range:
        """Token indexes of the tokens inside the character span [start, end)."""
        return range(self.index_from(start), self.index_from(end))

    def level(self, i: int) -> int:
        """Depth of token i as seen from outside a bracket pair it opens/closes."""
        token = self.tokens[i]
        return self.depth[i] - 1 if token.text in OPEN or token.text in CLOSE else self.depth[i]

    def enclosing_group(self, first: int, last: int) -> tuple[int, int] | None:
        """Token indexes (open, close) of the innermost bracket pair around tokens first..last."""
        for i in range(first - 1, -1, -1):
            if self.tokens[i].text in OPEN and self.partner.get(i, -1) > last:
                return i, self.partner[i]
        return None


class SpanError(Exception):
    """The text did not have the shape the tree promised: refuse rather than guess."""


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open character span [start, end) of the client's statement text."""

    start: int
    end: int

    def __contains__(self, offset: int) -> bool:
        return self.start <= offset < self.end

    def covers(self, other: "Span") -> bool:
        return self.start <= other.start and other.end <= self.end


def parse(sql: str) -> list[ast.RawStmt] | None:
    """The statements of `sql`, or None when Postgres would reject it as a syntax error."""
    try:
        return list(parse_sql(sql))
    except ParseError:
        return None


def parse_located(sql: str) -> tuple[list[ast.RawStmt], dict[int, int]] | None:
    """parse(), plus the locations of the constants in the trees (see constant_locations)."""
    try:
        return constant_locations(sql)
    except ParseError:
        return None


def children(node: ast.Node) -> Iterator[tuple[str, ast.Node]]:
    """(field name, child node) for every node directly below `node`."""
    for name in type(node).__slots__:
        value = getattr(node, name, None)
        if isinstance(value, ast.Node):
            yield name, value
        elif isinstance(value, tuple):
            for item in value:
                if isinstance(item, ast.Node):
                    yield name, item
                elif isinstance(item, tuple):  # lists of lists (VALUES rows)
                    for sub in item:
                        if isinstance(sub, ast.Node):
                            yield name, sub


def descendants(node: ast.Node) -> Iterator[ast.Node]:
    """`node` and everything below it, depth first."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(child for _, child in children(current))


@dataclass(frozen=True, slots=True)
class Extent:
    """Smallest and largest node location inside a subtree."""

    first: int
    last: int


def constant_locations(sql: str) -> tuple[list[ast.RawStmt], dict[int, int]]:
    """The statements of `sql` and, for their A_Const nodes, id -> character offset."""
    statements = parse_sql(sql)
    data = json.loads(parse_sql_json(sql))["stmts"]
    if sql.isascii():
        def to_char(offset: int) -> int:
            return offset
    else:
        chars = [i for i, ch in enumerate(sql) for _ in range(len(ch.encode("utf-8")))] + [len(sql)]

        def to_char(offset: int) -> int:
            return chars[min(offset, len(chars) - 1)]

    found: dict[int, int] = {}
    for raw, item in zip(statements, data):
        _pair(raw.stmt, item.get("stmt"), found, to_char)
    return list(statements), found


def _pair(node: ast.Node, data: object, found: dict[int, int], to_char: Callable[[int], int]) -> None:
    if not isinstance(data, dict):
        return
    if len(data) == 1 and type(node).__name__ in data:
        data = data[type(node).__name__]
    if isinstance(node, ast.A_Const):
        if isinstance(data.get("location"), int):
            found[id(node)] = to_char(data["location"])
        return
    for name in type(node).__slots__:
        value, sub = getattr(node, name, None), data.get(name)
        if isinstance(value, ast.Node):
            _pair(value, sub, found, to_char)
        elif isinstance(value, tuple) and isinstance(sub, list):
            for item, item_data in zip(value, sub):
                if isinstance(item, tuple) and isinstance(item_data, dict) and "List" in item_data:
                    for inner, inner_data in zip(item, item_data["List"].get("items", ())):
                        if isinstance(inner, ast.Node):
                            _pair(inner, inner_data, found, to_char)
                elif isinstance(item, ast.Node):
                    _pair(item, item_data, found, to_char)


def extent(node: ast.Node, constants: Mapping[int, int] | None = None) -> Extent | None:
    """The range of locations found in `node`'s subtree (None if it has none).

    `constants` supplies the locations of A_Const nodes (see constant_locations).
    """
    first = last = None
    for current in descendants(node):
        location = getattr(current, "location", None)
        if location is None and constants is not None:
            location = constants.get(id(current))
        if isinstance(location, int) and location >= 0:
            first = location if first is None else min(first, location)
            last = location if last is None else max(last, location)
    return None if first is None else Extent(first, last)
