"""CREATE MODEL: which clauses exist, what each one holds, and their assembly.

After the model name the clauses may come in any order (Redshift's own examples do
not agree on one), each at most once.  FROM and FUNCTION are required (MODEL_TYPE
FORECAST takes no FUNCTION: its result is read with FORECAST(model)); TARGET is
required unless MODEL_TYPE is KMEANS (checked with the options, which know the
model type); SETTINGS is optional because its one Redshift-required key,
S3_BUCKET, means nothing here.

Bring your own model (local): `FROM 'location' FUNCTION f (type, ...) RETURNS type
[IAM_ROLE ...] [SETTINGS (...)]` imports a model trained elsewhere, and so does
`FROM ( query )` (the query returns the model file as one bytea value) when the
statement has no TARGET, has FUNCTION's argument types and RETURNS, and none of
AUTO, MODEL_TYPE, PROBLEM_TYPE, OBJECTIVE, PREPROCESSORS, HYPERPARAMETERS (see
`is_import`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from proxy.errors import FEATURE_NOT_SUPPORTED, INVALID_PARAMETER_VALUE, SYNTAX_ERROR, PgError

from . import options as opts
from .lexer import IDENT, PUNCT, STRING, Token
from .pg_parse import check_select
from .reader import TokenReader
from .remote_model import remote_model, sagemaker_clause
from .statements import (CreateModel, ModelFunction, ModelLocation, ModelName, QualifiedName, SourceQuery,
                         TableName)

CLAUSES = (
    "from", "target", "function", "iam_role", "auto", "model_type", "problem_type",
    "objective", "preprocessors", "hyperparameters", "settings",
)
# Clauses of a training statement that a model imported rather than trained has no use for.
_TRAINING_ONLY = ("auto", "model_type", "problem_type", "objective", "preprocessors", "hyperparameters")
# A SageMaker training job's name, which Redshift's BYOM takes in FROM; no dot or slash,
# so a file name or a path is never read as one.
_JOB_NAME = re.compile(r"[A-Za-z0-9](?:-*[A-Za-z0-9]){0,62}")
# Words that end a RETURNS type (the type itself may be several words).
_CLAUSE_WORDS = frozenset(CLAUSES) | {"returns", "sagemaker"}


def parse_create_model(reader: TokenReader) -> CreateModel:
    """The rest of a CREATE MODEL statement, after its first two words."""
    return _CreateModelParser(reader).parse()


class _CreateModelParser:
    def __init__(self, reader: TokenReader) -> None:
        self.r = reader
        self.seen: dict[str, Token] = {}
        self.positions: dict[str, int] = {}
        self.raw = opts.RawOptions()
        self.source: TableName | SourceQuery | None = None
        self.target: opts.RawValue | None = None
        self.function: ModelFunction | None = None
        self.endpoint: tuple[str, str | None] | None = None  # SAGEMAKER 'endpoint'[:'model']
        self.handlers: dict[str, Callable[[], None]] = {
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

    def parse(self) -> CreateModel:
        r = self.r
        name, name_token = r.qualified_name(ModelName, "a model name")
        self.positions["name"] = r.position(name_token)
        while not r.at_end():
            token = r.peek()
            word = token.text.lower() if token.kind == IDENT else ""
            if word == "sagemaker" and word not in self.seen:  # BYOM remote inference
                self.seen[word] = r.take()
                self.positions[word] = r.position(token)
                self.endpoint = sagemaker_clause(r)
                continue
            if word not in self.handlers:
                raise r.error(token, self.expected_clauses())
            if word in self.seen:
                raise r.error(token, self.expected_clauses(), f"{word.upper()} is given more than once.")
            self.seen[word] = r.take()
            self.positions.setdefault(word, r.position(token))
            self.handlers[word]()
        if "sagemaker" in self.seen:
            return remote_model(self, name)
        if self.is_import():
            return self.imported(name)
        forecast = self.raw.model_type is not None and self.raw.model_type.value.upper() == "FORECAST"
        if forecast and "function" in self.seen:
            raise PgError(INVALID_PARAMETER_VALUE, "MODEL_TYPE FORECAST does not take FUNCTION",
                          position=r.position(self.seen["function"]),
                          hint="Remove the FUNCTION clause; read the forecast with SELECT * FROM FORECAST(model).")
        missing = [c.upper() for c in ("from", "function") if c not in self.seen
                   and not (forecast and c == "function")]
        if missing:
            raise r.error(r.peek(), f"CREATE MODEL requires {' and '.join(missing)}.")
        end = r.peek()
        r.finish()
        assert self.source is not None and (self.function is not None or forecast)
        anchor = self.seen["function"] if "function" in self.seen else end
        options = opts.build_options(self.raw, target=self.target, function_position=r.position(anchor),
                                     settings_position=self.positions.get("settings"))
        return CreateModel(
            name=name,
            source=self.source,
            target=None if self.target is None else self.target.value,
            function=self.function,
            options=options,
            text=r.sql,
            offset=r.offset,
            positions=self.positions,
        )

    # -- bring your own model ----------------------------------------------------------

    def is_import(self) -> bool:
        """Import rather than train: FROM 'location' always; FROM ( query ) when the
        statement has no TARGET, a FUNCTION with argument types and RETURNS, and none
        of the clauses only training has (a training statement without TARGET is
        KMEANS, which needs MODEL_TYPE, so no statement that trained before is read
        as an import; one that forgot its TARGET and lists no argument types still
        hears that it needs TARGET)."""
        if isinstance(self.source, ModelLocation):
            return True
        return (isinstance(self.source, SourceQuery) and "target" not in self.seen
                and self.function is not None and self.function.arg_types is not None
                and self.function.returns is not None
                and not any(c in self.seen for c in _TRAINING_ONLY))

    def imported(self, name: ModelName) -> CreateModel:
        r = self.r
        for clause in ("target", *_TRAINING_ONLY):
            if clause in self.seen:
                raise PgError(SYNTAX_ERROR, f"{clause.upper()} does not apply to a model imported FROM 'location'",
                              position=r.position(self.seen[clause]),
                              hint="A model trained elsewhere takes FROM, FUNCTION ... RETURNS, IAM_ROLE "
                                   "and SETTINGS.")
        function = self.function
        if function is None or function.arg_types is None or function.returns is None:
            at = self.positions.get("function") or r.position(r.peek())
            raise PgError(SYNTAX_ERROR, "CREATE MODEL FROM 'location' requires FUNCTION name ( type [, ...] ) "
                                        "RETURNS type", position=at,
                          hint="Declare the model's arguments (one numeric type per feature) and its result.")
        r.finish()
        assert self.source is not None
        return CreateModel(name=name, source=self.source, target=None, function=function,
                           options=opts.imported_options(self.raw), text=r.sql, offset=r.offset,
                           positions=self.positions, imported=True)

    def expected_clauses(self) -> str:
        left = [c.upper() for c in CLAUSES if c not in self.seen]
        return f"Expected one of {', '.join(left)}, or the end of the statement."

    # -- clauses ------------------------------------------------------------------

    def from_clause(self) -> None:
        r = self.r
        token = r.peek()
        if token.kind == STRING:
            self.source = _model_location(r.value(), r.position(token))
            self.positions["source"] = r.position(token)
            return
        opening = r.punct("(")
        if opening is None:
            self.source, name_token = r.qualified_name(TableName, "a table name or ( SELECT ... )")
            self.positions["source"] = r.position(name_token)
            return
        text, position = r.parenthesized_text(opening, "FROM ( ... )")
        check_select(text, position)
        self.source = SourceQuery(text)
        self.positions["source"] = position

    def target_clause(self) -> None:
        token = self.r.peek()
        column = self.r.name_part("a target column name")
        self.target = opts.RawValue("word", column, token.text, self.r.position(token))
        self.positions["target"] = self.target.position

    def function_clause(self) -> None:
        r = self.r
        name, name_token = r.qualified_name(QualifiedName, "a function name")
        self.positions["function"] = r.position(name_token)
        arg_types: tuple[str, ...] | None = None
        if r.punct("("):
            def comma(t: Token) -> bool:
                return t.kind == PUNCT and t.text == ","

            types = [r.type_name(comma, "then , or )")]
            while r.punct(","):
                types.append(r.type_name(comma, "then , or )"))
            r.expect_punct(")", "Expected , or ) in the FUNCTION argument type list.")
            arg_types = tuple(types)
        returns = None
        if r.keyword("returns"):
            def clause_word(t: Token) -> bool:
                return t.kind == IDENT and t.text.lower() in _CLAUSE_WORDS

            after = self.expected_clauses().replace("Expected one of", "then one of").rstrip(".")
            returns = r.type_name(clause_word, after)
        self.function = ModelFunction(name, arg_types, returns)

    def iam_role_clause(self) -> None:
        token = self.r.peek()
        if not (token.is_keyword("default") or token.kind == STRING):
            raise self.r.error(token, "Expected DEFAULT or a quoted IAM role ARN.")
        self.raw.iam_role = self.r.value()

    def auto_clause(self) -> None:
        token = self.r.peek()
        if not (token.is_keyword("on") or token.is_keyword("off")):
            raise self.r.error(token, "Expected ON or OFF.")
        self.raw.auto = self.r.value()

    def word_clause(self, attribute: str, allowed: tuple[str, ...]) -> None:
        if self.r.peek().kind != IDENT:
            raise self.r.error(self.r.peek(), f"Expected one of {', '.join(allowed)}.")
        setattr(self.raw, attribute, self.r.value())

    def string_clause(self, attribute: str, expected: str) -> None:
        if self.r.peek().kind != STRING:
            raise self.r.error(self.r.peek(), f"Expected {expected}.")
        setattr(self.raw, attribute, self.r.value())

    def hyperparameters_clause(self) -> None:
        self.r.expect_keyword("default", "Expected DEFAULT [ EXCEPT ( key 'value' [, ...] ) ].")
        if self.r.keyword("except"):
            self.raw.hyperparameters = self.r.key_value_list("HYPERPARAMETERS DEFAULT EXCEPT", allow_words=False)

    def settings_clause(self) -> None:
        self.raw.settings = self.r.key_value_list("SETTINGS", allow_words=True, allow_empty=True)


def _model_location(value: opts.RawValue, position: int) -> ModelLocation:
    """FROM 'location': an object-store URL, or a path (under the operator's import
    directory, checked when the statement runs). A SageMaker job name is Redshift's
    and means nothing here."""
    text = value.value
    if "://" in text:
        return ModelLocation(text, "url")
    if _JOB_NAME.fullmatch(text):
        raise PgError(FEATURE_NOT_SUPPORTED,
                      f"CREATE MODEL FROM '{text}': SageMaker training jobs have no meaning here",
                      position=position,
                      hint="mlproxy imports a model file: FROM 'file.json' (under the proxy's --import-dir), "
                           "FROM 's3://bucket/key', or FROM (SELECT model_bytes FROM ...).")
    if not text.strip():
        raise PgError(INVALID_PARAMETER_VALUE, "CREATE MODEL FROM '': the model location is empty",
                      position=position)
    return ModelLocation(text, "path")
