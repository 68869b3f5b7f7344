"""Recursive-descent parser for Redshift ML's CREATE MODEL, SHOW MODEL, DROP MODEL.

Grammar (keywords case-insensitive, identifiers by Postgres' rules):

    CREATE MODEL [schema.]name
      FROM { [schema.]table | ( select ) }
      [ TARGET column ]                       -- required unless MODEL_TYPE KMEANS
      FUNCTION [schema.]fn [ ( type [, ...] ) ] [ RETURNS type ]
      [ IAM_ROLE { DEFAULT | 'arn' } ]
      [ AUTO { ON | OFF } ]
      [ MODEL_TYPE word ] [ PROBLEM_TYPE word ] [ OBJECTIVE 'string' ]
      [ PREPROCESSORS 'json' ]
      [ HYPERPARAMETERS DEFAULT [ EXCEPT ( key value [, ...] ) ] ]
      [ SETTINGS ( key value [, ...] ) ]
    SHOW MODEL { ALL | [schema.]name }
    DROP MODEL [ IF EXISTS ] [schema.]name

After the model name the clauses may come in any order (Redshift's own examples do
not agree on one), each at most once.  SETTINGS is optional because its one
Redshift-required key, S3_BUCKET, means nothing here.

Positions in errors are 1-based character cursors into the client's whole query
string: the caller passes the statement's `offset` in it (StatementText.start).
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.errors import FEATURE_NOT_SUPPORTED, PgError

from . import options as opts
from .lexer import EOF, IDENT, NUMBER, OP, PUNCT, QUOTED_IDENT, STRING, Token, near, syntax_error, tokenize
from .literals import RESERVED_KEYWORDS, identifier_value, string_value
from .pg_parse import check_select, normalize_type_name
from .statements import (
    CreateModel,
    DropModel,
    MLStatement,
    ModelFunction,
    ModelName,
    QualifiedName,
    ShowModel,
    SourceQuery,
    TableName,
)

_CLAUSES = (
    "from", "target", "function", "iam_role", "auto", "model_type", "problem_type",
    "objective", "preprocessors", "hyperparameters", "settings",
)
# Words that end a RETURNS type (the type itself may be several words).
_CLAUSE_WORDS = frozenset(_CLAUSES) | {"returns", "sagemaker"}


def parse_ml_statement(
    sql: str, *, offset: int = 0, standard_conforming_strings: bool = True
) -> MLStatement | None:
    """Parse one statement; None if it is not an ML statement (forward it unchanged).

    Raises PgError for an ML statement that is malformed.  `sql` is one statement,
    optionally ending in `;`; `offset` is where it starts in the client's query
    string, so error positions point into that string.
    """
    return _Parser(sql, offset, standard_conforming_strings).statement()


class _Parser:
    def __init__(self, sql: str, offset: int, standard_conforming_strings: bool) -> None:
        self.sql = sql
        self.offset = offset
        self.scs = standard_conforming_strings
        self._tokens = tokenize(sql, strict=True, standard_conforming_strings=standard_conforming_strings,
                                offset=offset)
        self._ahead: list[Token] = []

    # -- token stream -------------------------------------------------------------

    def peek(self, k: int = 0) -> Token:
        while len(self._ahead) <= k:
            if self._ahead and self._ahead[-1].kind == EOF:
                return self._ahead[-1]
            self._ahead.append(next(self._tokens))
        return self._ahead[k]

    def take(self) -> Token:
        token = self.peek()
        if token.kind != EOF:
            self._ahead.pop(0)
        return token

    def position(self, token: Token) -> int:
        return self.offset + token.start + 1

    def error(self, token: Token, hint: str | None = None, detail: str | None = None) -> PgError:
        return syntax_error(f"syntax error {near(token.text)}", self.position(token), hint, detail)

    def keyword(self, word: str) -> Token | None:
        if self.peek().is_keyword(word):
            return self.take()
        return None

    def expect_keyword(self, word: str, hint: str) -> Token:
        token = self.keyword(word)
        if token is None:
            raise self.error(self.peek(), hint)
        return token

    def punct(self, char: str) -> Token | None:
        token = self.peek()
        if token.kind == PUNCT and token.text == char:
            return self.take()
        return None

    def expect_punct(self, char: str, hint: str) -> Token:
        token = self.punct(char)
        if token is None:
            raise self.error(self.peek(), hint)
        return token

    def at_end(self) -> bool:
        token = self.peek()
        return token.kind == EOF or (token.kind == PUNCT and token.text == ";")

    def finish(self) -> None:
        self.punct(";")
        if self.peek().kind != EOF:
            raise self.error(self.peek(), "Expected the end of the statement.")

    # -- statements ---------------------------------------------------------------

    def statement(self) -> MLStatement | None:
        try:
            first, second = self.peek(0), self.peek(1)
        except PgError:
            return None  # not lexable as far as we look: Postgres will say why
        if not second.is_keyword("model"):
            return None
        if first.is_keyword("create"):
            self.take(), self.take()
            return self.create_model()
        if first.is_keyword("drop"):
            self.take(), self.take()
            return self.drop_model()
        if first.is_keyword("show"):
            following = self.peek(2)
            if following.kind == PUNCT and following.text == ".":
                return None  # SHOW model.setting: a custom GUC
            self.take(), self.take()
            return self.show_model()
        return None

    def show_model(self) -> ShowModel:
        if self.keyword("all"):
            name = None
        else:
            name = self.qualified_name(ModelName, "a model name or ALL")[0]
        self.finish()
        return ShowModel(name, text=self.sql, offset=self.offset)

    def drop_model(self) -> DropModel:
        if_exists = self.peek().is_keyword("if") and self.peek(1).is_keyword("exists")
        if if_exists:
            self.take(), self.take()
        name = self.qualified_name(ModelName, "a model name")[0]
        self.finish()
        return DropModel(name, if_exists, text=self.sql, offset=self.offset)

    def create_model(self) -> CreateModel:
        name, name_token = self.qualified_name(ModelName, "a model name")
        self.positions = {"name": self.position(name_token)}
        self.raw = opts.RawOptions()
        self.source: TableName | SourceQuery | None = None
        self.target: opts.RawValue | None = None
        self.function: ModelFunction | None = None
        handlers: dict[str, Callable[[], None]] = {
            "from": self.from_clause,
            "target": self.target_clause,
            "function": self.function_clause,
            "iam_role": self.iam_role_clause,
            "auto": self.auto_clause,
            "model_type": lambda: self.word_clause("model_type", opts.MODEL_TYPES),
            "problem_type": lambda: self.word_clause("problem_type", opts.PROBLEM_TYPES),
            "objective": lambda: self.string_clause("objective", "a quoted objective such as 'MSE'"),
            "preprocessors": lambda: self.string_clause("preprocessors", "a quoted JSON array or 'none'"),
            "hyperparameters": self.hyperparameters_clause,
            "settings": self.settings_clause,
        }
        self.seen: dict[str, Token] = {}
        seen = self.seen
        while not self.at_end():
            token = self.peek()
            word = token.text.lower() if token.kind == IDENT else ""
            if word == "sagemaker":
                raise PgError(FEATURE_NOT_SUPPORTED, "CREATE MODEL ... SAGEMAKER is not supported",
                              position=self.position(token),
                              hint="Only models trained by CREATE MODEL itself are supported.")
            if word not in handlers:
                raise self.error(token, self._clauses_hint(seen))
            if word in seen:
                raise self.error(token, self._clauses_hint(seen), f"{word.upper()} is given more than once.")
            seen[word] = self.take()
            self.positions.setdefault(word, self.position(token))
            handlers[word]()
        missing = [c.upper() for c in ("from", "function") if c not in seen]
        if missing:
            raise self.error(self.peek(), f"CREATE MODEL requires {' and '.join(missing)}.")
        self.finish()
        assert self.source is not None and self.function is not None
        options = opts.build_options(self.raw, target=self.target, function_position=self.position(seen["function"]))
        return CreateModel(
            name=name,
            source=self.source,
            target=None if self.target is None else self.target.value,
            function=self.function,
            options=options,
            text=self.sql,
            offset=self.offset,
            positions=self.positions,
        )

    def _clauses_hint(self, seen: dict[str, Token]) -> str:
        left = [c.upper() for c in _CLAUSES if c not in seen]
        return f"Expected one of {', '.join(left)}, or the end of the statement."

    # -- clauses ------------------------------------------------------------------

    def from_clause(self) -> None:
        token = self.peek()
        if token.kind == STRING:
            raise PgError(FEATURE_NOT_SUPPORTED, "CREATE MODEL FROM 'job_name' (bring your own model) is not supported",
                          position=self.position(token), hint="Train from a table or a ( SELECT ... ) query.")
        opening = self.punct("(")
        if opening is None:
            self.source, name_token = self.qualified_name(TableName, "a table name or ( SELECT ... )")
            self.positions["source"] = self.position(name_token)
            return
        depth = 1
        while True:
            token = self.take()
            if token.kind == EOF:
                raise self.error(token, "Expected ) to close FROM ( ... ).")
            if token.kind != PUNCT:
                continue
            if token.text == ";":
                raise self.error(token, "FROM ( ... ) takes a single SELECT query.")
            depth += {"(": 1, ")": -1}.get(token.text, 0)
            if depth == 0:
                break
        text = self.sql[opening.end : token.start]
        start = self.offset + opening.end + 1
        check_select(text, start)
        self.source = SourceQuery(text)
        self.positions["source"] = start

    def target_clause(self) -> None:
        token = self.peek()
        self.target = opts.RawValue("word", self.name_part("a target column name"), token.text, self.position(token))
        self.positions["target"] = self.target.position

    def function_clause(self) -> None:
        name, name_token = self.qualified_name(QualifiedName, "a function name")
        self.positions["function"] = self.position(name_token)
        arg_types: tuple[str, ...] | None = None
        if self.punct("("):
            comma = lambda t: t.kind == PUNCT and t.text == ","  # noqa: E731
            after = "then , or )"
            types = [self.type_name(comma, after)]
            while self.punct(","):
                types.append(self.type_name(comma, after))
            self.expect_punct(")", "Expected , or ) in the FUNCTION argument type list.")
            arg_types = tuple(types)
        returns = None
        if self.keyword("returns"):
            clause_word = lambda t: t.kind == IDENT and t.text.lower() in _CLAUSE_WORDS  # noqa: E731
            after = self._clauses_hint(self.seen).replace("Expected one of", "then one of")
            returns = self.type_name(clause_word, after.rstrip("."))
        self.function = ModelFunction(name, arg_types, returns)

    def iam_role_clause(self) -> None:
        token = self.peek()
        if token.is_keyword("default"):
            self.raw.iam_role = opts.RawValue("word", "default", token.text, self.position(self.take()))
        elif token.kind == STRING:
            self.raw.iam_role = self.value()
        else:
            raise self.error(token, "Expected DEFAULT or a quoted IAM role ARN.")

    def auto_clause(self) -> None:
        token = self.peek()
        if not (token.is_keyword("on") or token.is_keyword("off")):
            raise self.error(token, "Expected ON or OFF.")
        self.raw.auto = self.value()

    def word_clause(self, attribute: str, allowed: tuple[str, ...]) -> None:
        if self.peek().kind != IDENT:
            raise self.error(self.peek(), f"Expected one of {', '.join(allowed)}.")
        setattr(self.raw, attribute, self.value())

    def string_clause(self, attribute: str, expected: str) -> None:
        if self.peek().kind != STRING:
            raise self.error(self.peek(), f"Expected {expected}.")
        setattr(self.raw, attribute, self.value())

    def hyperparameters_clause(self) -> None:
        self.expect_keyword("default", "Expected DEFAULT [ EXCEPT ( key 'value' [, ...] ) ].")
        if self.keyword("except"):
            self.raw.hyperparameters = self.key_value_list("HYPERPARAMETERS DEFAULT EXCEPT", allow_words=False)

    def settings_clause(self) -> None:
        self.raw.settings = self.key_value_list("SETTINGS", allow_words=True, allow_empty=True)

    # -- pieces -------------------------------------------------------------------

    def name_part(self, what: str) -> str:
        token = self.peek()
        reserved = token.kind == IDENT and token.text.lower() in RESERVED_KEYWORDS
        if token.kind not in (IDENT, QUOTED_IDENT) or reserved:
            hint = f"Expected {what}."
            if reserved:
                hint += f' "{token.text}" is a reserved word; double-quote it to use it as a name.'
            raise self.error(token, hint)
        return identifier_value(self.take(), self.offset)

    def qualified_name(self, cls: type[QualifiedName], what: str) -> tuple:
        first_token = self.peek()
        parts = [self.name_part(what)]
        while self.punct("."):
            if len(parts) == 2:
                raise syntax_error(f"improper qualified name (too many dotted names) {near(first_token.text)}",
                                   self.position(first_token))
            parts.append(self.name_part(what))
        schema, name = (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
        return cls(schema, name), first_token

    def type_name(self, stops: Callable[[Token], bool], after: str) -> str:
        """A type name: the tokens up to a stop token outside parentheses.

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

    def value(self, allow_words: bool = True) -> opts.RawValue:
        """A literal: quoted string, optionally signed number, or (if allowed) a word."""
        token = self.peek()
        position = self.position(token)
        if token.kind == STRING:
            self.take()
            return opts.RawValue("string", string_value(token, self.offset, self.scs), token.text, position)
        if token.kind == IDENT and allow_words:
            self.take()
            return opts.RawValue("word", token.text.lower(), token.text, position)
        sign = ""
        if token.kind == OP and token.text in ("-", "+") and self.peek(1).kind == NUMBER:
            sign = self.take().text
            token = self.peek()
        if token.kind == NUMBER:
            self.take()
            return opts.RawValue("number", sign + token.text, self.sql[position - self.offset - 1 : token.end],
                                 position)
        raise self.error(token, "Expected a quoted string or a number." if not allow_words
                         else "Expected a quoted string, a number or a word.")

    def key_value_list(
        self, clause: str, *, allow_words: bool, allow_empty: bool = False
    ) -> list[tuple[opts.RawValue, opts.RawValue]]:
        self.expect_punct("(", f"Expected ( after {clause}.")
        pairs: list[tuple[opts.RawValue, opts.RawValue]] = []
        if allow_empty and self.punct(")"):
            return pairs
        while True:
            key = self.peek()
            if key.kind not in (IDENT, QUOTED_IDENT):
                raise self.error(key, f"Expected a key name in {clause} ( key value [, ...] ).")
            raw_key = opts.RawValue("word", identifier_value(self.take(), self.offset), key.text,
                                    self.position(key))
            pairs.append((raw_key, self.value(allow_words)))
            if self.punct(")"):
                return pairs
            self.expect_punct(",", f"Expected , or ) in {clause} ( ... ).")
