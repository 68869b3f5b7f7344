"""A token reader with the small pieces every ML statement is built from.

Names, qualified names, type names, literals and `( key value, ... )` lists are
shared by all three statements; keeping them here leaves the statement parsers to
say only which pieces come in which order.  Every error is a 42601 that names the
offending token and carries a hint of what was expected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from proxy.errors import PgError

from .lexer import EOF, IDENT, NUMBER, OP, PUNCT, QUOTED_IDENT, STRING, Token, near, syntax_error, tokenize
from .literals import RESERVED_KEYWORDS, identifier_value, string_value
from .options import RawValue
from .pg_parse import normalize_type_name
from .statements import QualifiedName

NameT = TypeVar("NameT", bound=QualifiedName)


class TokenReader:
    """Tokens of one statement with lookahead; positions are client cursors."""

    def __init__(self, sql: str, offset: int, standard_conforming_strings: bool) -> None:
        self.sql = sql
        self.offset = offset
        self.standard_conforming_strings = standard_conforming_strings
        self._tokens: Iterator[Token] = tokenize(
            sql, strict=True, standard_conforming_strings=standard_conforming_strings, offset=offset)
        self._ahead: list[Token] = []

    # -- the stream ---------------------------------------------------------------

    def peek(self, k: int = 0) -> Token:
        while len(self._ahead) <= k:
            if self._ahead and self._ahead[-1].kind == EOF:
                return self._ahead[-1]
            self._ahead.append(next(self._tokens))
        return self._ahead[k]

    def take(self, count: int = 1) -> Token:
        """Consume `count` tokens and return the last one (EOF is never consumed)."""
        for _ in range(count):
            token = self.peek()
            if token.kind != EOF:
                self._ahead.pop(0)
        return token

    def position(self, token: Token) -> int:
        return self.offset + token.start + 1

    def error(self, token: Token, hint: str | None = None, detail: str | None = None) -> PgError:
        return syntax_error(f"syntax error {near(token.text)}", self.position(token), hint, detail)

    def keyword(self, word: str) -> Token | None:
        return self.take() if self.peek().is_keyword(word) else None

    def expect_keyword(self, word: str, hint: str) -> Token:
        token = self.keyword(word)
        if token is None:
            raise self.error(self.peek(), hint)
        return token

    def punct(self, char: str) -> Token | None:
        token = self.peek()
        return self.take() if token.kind == PUNCT and token.text == char else None

    def expect_punct(self, char: str, hint: str) -> Token:
        token = self.punct(char)
        if token is None:
            raise self.error(self.peek(), hint)
        return token

    def at_end(self) -> bool:
        token = self.peek()
        return token.kind == EOF or (token.kind == PUNCT and token.text == ";")

    def finish(self) -> None:
        """The statement's end: an optional `;`, then nothing but comments."""
        self.punct(";")
        if self.peek().kind != EOF:
            raise self.error(self.peek(), "Expected the end of the statement.")

    # -- pieces -------------------------------------------------------------------

    def name_part(self, what: str) -> str:
        """One identifier; reserved words only when double-quoted, as in Postgres."""
        token = self.peek()
        reserved = token.kind == IDENT and token.text.lower() in RESERVED_KEYWORDS
        if token.kind not in (IDENT, QUOTED_IDENT) or reserved:
            hint = f"Expected {what}."
            if reserved:
                hint += f' "{token.text}" is a reserved word; double-quote it to use it as a name.'
            raise self.error(token, hint)
        return identifier_value(self.take(), self.offset)

    def qualified_name(self, cls: type[NameT], what: str) -> tuple[NameT, Token]:
        """`name` or `schema.name`, and the token it starts at."""
        first = self.peek()
        parts = [self.name_part(what)]
        while self.punct("."):
            if len(parts) == 2:
                raise syntax_error(f"improper qualified name (too many dotted names) {near(first.text)}",
                                   self.position(first))
            parts.append(self.name_part(what))
        schema = parts[0] if len(parts) == 2 else None
        return cls(schema, parts[-1]), first

    def type_name(self, stops: Callable[[Token], bool], after: str) -> str:
        """A type name, canonical: the tokens up to a stop token outside parentheses.

        `after` completes the hint "Expected a data type, ..." with what may follow.
        """
        taken: list[Token] = []
        depth = 0
        while not self.at_end():
            token = self.peek()
            if token.kind == PUNCT and token.text in "()":
                if token.text == ")" and depth == 0:
                    break
                depth += 1 if token.text == "(" else -1
            elif depth == 0 and stops(token):
                break
            taken.append(self.take())
        hint = f"Expected a data type, {after}."
        if not taken:
            raise self.error(self.peek(), hint)
        text = self.sql[taken[0].start : taken[-1].end]
        return normalize_type_name(text, self.position(taken[0]), hint)

    def parenthesized_text(self, opening: Token, what: str) -> tuple[str, int]:
        """The exact text up to the `)` matching `opening`, and its client cursor.

        A `;` inside is an error: it would end the statement for Postgres too.
        """
        depth = 1
        while depth:
            token = self.take()
            if token.kind == EOF:
                raise self.error(token, f"Expected ) to close {what}.")
            if token.kind == PUNCT and token.text == ";":
                raise self.error(token, f"{what} holds a single query; ';' cannot appear in it.")
            if token.kind == PUNCT and token.text in "()":
                depth += 1 if token.text == "(" else -1
        return self.sql[opening.end : token.start], self.offset + opening.end + 1

    def value(self, allow_words: bool = True) -> RawValue:
        """A literal: quoted string, optionally signed number, or (if allowed) a word."""
        first = self.peek()
        position = self.position(first)
        if first.kind == STRING:
            self.take()
            value = string_value(first, self.offset, self.standard_conforming_strings)
            return RawValue("string", value, first.text, position)
        if first.kind == IDENT and allow_words:
            self.take()
            return RawValue("word", first.text.lower(), first.text, position)
        sign = ""
        if first.kind == OP and first.text in ("-", "+") and self.peek(1).kind == NUMBER:
            sign = self.take().text
        number = self.peek()
        if number.kind == NUMBER:
            self.take()
            return RawValue("number", sign + number.text, self.sql[first.start : number.end], position)
        raise self.error(first, "Expected a quoted string, a number or a word." if allow_words
                         else "Expected a quoted string or a number.")

    def key_value_list(
        self, clause: str, *, allow_words: bool, allow_empty: bool = False
    ) -> list[tuple[RawValue, RawValue]]:
        """`( key value [, ...] )`; keys are identifiers, folded unless quoted."""
        self.expect_punct("(", f"Expected ( after {clause}.")
        pairs: list[tuple[RawValue, RawValue]] = []
        if allow_empty and self.punct(")"):
            return pairs
        while True:
            key = self.peek()
            if key.kind not in (IDENT, QUOTED_IDENT):
                raise self.error(key, f"Expected a key name in {clause} ( key value [, ...] ).")
            name = identifier_value(self.take(), self.offset)
            pairs.append((RawValue("word", name, key.text, self.position(key)), self.value(allow_words)))
            if self.punct(")"):
                return pairs
            self.expect_punct(",", f"Expected , or ) in {clause} ( ... ).")
