"""Split a simple-protocol query string into its statements.

A Query message may carry `SELECT 1; CREATE MODEL ...; SHOW MODEL m`.  The proxy
must answer the ML pieces itself and forward the rest unchanged, so it needs each
piece's exact text and where it starts (error positions are relative to the whole
string).  Splitting follows psql's rules, which are the ones users already rely on:
a `;` ends a statement only outside quotes, comments and dollar quotes, outside
parentheses (CREATE RULE ... DO (a; b)), and outside the BEGIN ... END body of a
SQL-standard `CREATE [OR REPLACE] FUNCTION|PROCEDURE ... BEGIN ATOMIC`.

The splitter never fails: an unterminated construct extends to the end of the input
and becomes part of the last piece, for Postgres (or the ML parser) to report.
"""

from __future__ import annotations

from dataclasses import dataclass

from .lexer import EOF, IDENT, PUNCT, tokenize


@dataclass(frozen=True, slots=True)
class StatementText:
    """One piece of a query string, without its terminating `;`.

    `start` is the offset of `text` in the original string; pass it as the ML
    parser's `offset` so error positions point into the client's whole query.
    `is_empty` is true for a piece holding nothing but whitespace and comments.
    """

    text: str
    start: int
    is_empty: bool

    @property
    def end(self) -> int:
        """Offset just past the piece (where its `;` is, if it has one)."""
        return self.start + len(self.text)


def split_statements(sql: str, *, standard_conforming_strings: bool = True) -> list[StatementText]:
    """Split `sql` at every top-level `;`.

    There is always one more piece than separators, so `";".join(p.text for p in
    pieces) == sql`; the last piece is empty (`is_empty`) when `sql` ends with `;`.
    """
    pieces: list[StatementText] = []
    start = 0
    parens = 0
    routine = _RoutineBodyTracker()
    empty = True
    for token in tokenize(sql, strict=False, standard_conforming_strings=standard_conforming_strings):
        kind, text = token.kind, token.text
        if kind == PUNCT and text == ";" and parens == 0 and not routine.inside_body:
            pieces.append(StatementText(sql[start : token.start], start, empty))
            start = token.end
            parens = 0
            routine = _RoutineBodyTracker()
            empty = True
            continue
        if kind == EOF:
            pieces.append(StatementText(sql[start:], start, empty))
            return pieces
        empty = False
        if kind == PUNCT:
            if text == "(":
                parens += 1
            elif text == ")" and parens > 0:
                parens -= 1
        elif kind == IDENT:
            routine.see_word(text.lower(), parens)
    raise AssertionError("tokenize() always ends with EOF")  # pragma: no cover


class _RoutineBodyTracker:
    """psql's heuristic for `BEGIN ATOMIC ... END` bodies, whose `;`s do not split.

    Only statements that start with CREATE [OR REPLACE] FUNCTION|PROCEDURE count;
    inside them, at parenthesis depth 0, BEGIN opens a block, CASE opens one when
    already inside a block (it also closes with END), and END closes one.
    """

    __slots__ = ("_leading", "_is_routine", "_depth")

    def __init__(self) -> None:
        self._leading: list[str] = []
        self._is_routine = False
        self._depth = 0

    @property
    def inside_body(self) -> bool:
        return self._depth > 0

    def see_word(self, word: str, parens: int) -> None:
        if len(self._leading) < 4:
            self._leading.append(word)
            lead = self._leading
            self._is_routine = lead[0] == "create" and (
                (len(lead) > 1 and lead[1] in ("function", "procedure"))
                or (len(lead) > 3 and lead[1:3] == ["or", "replace"] and lead[3] in ("function", "procedure"))
            )
        if not self._is_routine or parens:
            return
        if word == "begin" or (word == "case" and self._depth):
            self._depth += 1
        elif word == "end" and self._depth:
            self._depth -= 1
