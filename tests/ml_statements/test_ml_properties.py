"""Property tests: the parser's contract on any input, and spelling-independence."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pglast import keywords

from proxy.errors import PgError
from proxy.ml_statements import (
    CreateModel,
    ModelFunction,
    ModelName,
    QualifiedName,
    SourceQuery,
    TableName,
    might_be_ml_statement,
    parse_ml_statement,
)
from proxy.ml_statements.lexer import tokenize

ERROR_STATES = {"42601", "22023", "0A000"}


def parse_or_error(sql: str, offset: int = 0):
    """parse_ml_statement's whole contract: a statement, None, or a well-formed PgError."""
    try:
        return parse_ml_statement(sql, offset=offset)
    except PgError as e:
        assert e.sqlstate in ERROR_STATES, e
        assert e.message
        assert e.position is not None and offset + 1 <= e.position <= offset + len(sql) + 1, (e, len(sql))
        return e


# -- never anything but a statement, None or PgError ------------------------------------

_VOCABULARY = [
    "CREATE", "MODEL", "SHOW", "DROP", "IF", "EXISTS", "ALL", "FROM", "TARGET", "FUNCTION", "RETURNS",
    "IAM_ROLE", "DEFAULT", "AUTO", "ON", "OFF", "MODEL_TYPE", "XGBOOST", "KMEANS", "PROBLEM_TYPE",
    "REGRESSION", "OBJECTIVE", "PREPROCESSORS", "HYPERPARAMETERS", "EXCEPT", "SETTINGS", "MAX_CELLS",
    "MAX_RUNTIME", "K", "SELECT", "int", "double precision", "varchar(3)", "m", "s.m", '"Q"', "(", ")",
    ",", ";", ".", "-", "+", "::", "5", "-1", "1.5", "'MSE'", "'[]'", "'{'", "'", '"', "$$", "$$x$$",
    "/*", "*/", "--", "\n", "E'\\'", "U&'\\0000'", "é", "0x", "$1", "'none'", "(SELECT 1)", "SAGEMAKER",
]


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80), st.integers(0, 1000))
def test_arbitrary_text(sql, offset):
    parse_or_error(sql, offset)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(["CREATE MODEL ", "SHOW MODEL ", "DROP MODEL ", "create model m from t target y "]),
       st.lists(st.sampled_from(_VOCABULARY), max_size=25))
def test_token_soup_after_an_ml_prefix(prefix, words):
    result = parse_or_error(prefix + " ".join(words))
    # The prefix makes it an ML statement (parsed or rejected), except SHOW model.x, a custom GUC.
    rest = next(tokenize(" ".join(words), strict=False))
    assert result is not None or (prefix.startswith("SHOW") and rest.text == ".")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_statements(data):
    sql = data.draw(st.sampled_from(_VALID_EXAMPLES))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(sql)))
        j = data.draw(st.integers(i, min(len(sql), i + 8)))
        sql = sql[:i] + data.draw(st.sampled_from(["", " ", "'", '"', "(", ")", ",", ";", "x", "--", "/*", "$$"])) + sql[j:]
    parse_or_error(sql)


_VALID_EXAMPLES = [
    "CREATE MODEL m FROM (SELECT a, b FROM t) TARGET b FUNCTION f(int, text) RETURNS int IAM_ROLE default "
    "AUTO OFF MODEL_TYPE XGBOOST OBJECTIVE 'MSE' PREPROCESSORS 'none' "
    "HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '10') SETTINGS (S3_BUCKET 'b', MAX_CELLS 100);",
    "CREATE MODEL k FROM t FUNCTION f MODEL_TYPE KMEANS HYPERPARAMETERS DEFAULT EXCEPT (K '3')",
    "SHOW MODEL ALL;",
    "DROP MODEL IF EXISTS s.m;",
]


# -- generated valid statements parse to the AST they were generated from ---------------

_ALL_KEYWORDS = (keywords.RESERVED_KEYWORDS | keywords.COL_NAME_KEYWORDS | keywords.TYPE_FUNC_NAME_KEYWORDS
                 | keywords.UNRESERVED_KEYWORDS)
_NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True).filter(lambda n: n not in _ALL_KEYWORDS)
_QUOTED_ONLY_NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9 _\"]{0,10}", fullmatch=True).filter(
    lambda n: n != n.lower() or " " in n or '"' in n)
_TYPES = [("int", "integer"), ("INTEGER", "integer"), ("double precision", "double precision"),
          ("float8", "double precision"), ("varchar(20)", "character varying(20)"),
          ("character varying(20)", "character varying(20)"), ("numeric(10, 2)", "numeric(10,2)"),
          ("timestamp with time zone", "timestamp with time zone"), ("timestamptz", "timestamp with time zone"),
          ("bool", "boolean"), ("text", "text"), ("bigint", "bigint")]
_QUERIES = ["SELECT a, b, y FROM t", "select * from s.t where x > 1 -- rows\n", "VALUES (1, 2)",
            "WITH q AS (SELECT 1 AS a) SELECT a FROM q", " SELECT 'it''s', $$;$$ AS y "]
_OBJECTIVES = {
    "REGRESSION": [("MSE", "MSE"), ("mse", "MSE"), ("RMSE", "MSE"), ("MAE", "MAE")],
    "BINARY_CLASSIFICATION": [("F1", "F1"), ("AUC", "AUC"), ("Accuracy", "Accuracy"), ("Binary_Accuracy", "Accuracy")],
    "MULTICLASS_CLASSIFICATION": [("F1Macro", "F1Macro"), ("F1_Macro", "F1Macro"), ("accuracy", "Accuracy")],
}
_SEPARATORS = [" ", "  ", "\n", "\t", " /* c */ ", " -- note\n", "/* a /* nested */ b */", "\r\n"]


class _Renderer:
    """Turns tokens into SQL text with random case, separators and quoting."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def keyword(self, word: str) -> str:
        case = self.data.draw(st.sampled_from([str.upper, str.lower, str.title]))
        return case(word)

    def name(self, name: str) -> str:
        if name != name.lower() or not name.replace("_", "a").isalnum() or name[0].isdigit():
            return '"' + name.replace('"', '""') + '"'
        return self.data.draw(st.sampled_from([name, name.upper(), f'"{name}"']))

    def string(self, value: str) -> str:
        style = self.data.draw(st.sampled_from(["plain", "dollar", "escape"]))
        if style == "dollar" and "$" not in value:
            return f"$${value}$$"
        if style == "escape":
            return "E'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return "'" + value.replace("'", "''") + "'"

    def join(self, tokens: list[str]) -> str:
        separators = self.data.draw(st.lists(st.sampled_from(_SEPARATORS), min_size=len(tokens), max_size=len(tokens)))
        return "".join(token + separator for token, separator in zip(tokens, separators))


def _qualified(r: _Renderer, schema: str | None, name: str) -> list[str]:
    return [r.name(name)] if schema is None else [r.name(schema) + "." + r.name(name)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_create_model_parses_to_its_ast(data):
    draw = data.draw
    r = _Renderer(data)
    kmeans = draw(st.booleans())
    model = ModelName(draw(st.none() | _NAMES), draw(_NAMES | _QUOTED_ONLY_NAMES))
    if draw(st.booleans()):
        query = draw(st.sampled_from(_QUERIES))
        source, source_tokens = SourceQuery(query), [f"({query})"]
    else:
        source = TableName(draw(st.none() | _NAMES), draw(_NAMES))
        source_tokens = _qualified(r, source.schema, source.name)
    target = None if kmeans else draw(_NAMES | _QUOTED_ONLY_NAMES)
    arg_types = draw(st.none() | st.lists(st.sampled_from(_TYPES), min_size=1, max_size=4))
    returns = draw(st.none() | st.sampled_from(_TYPES))
    function = ModelFunction(QualifiedName(None, draw(_NAMES)),
                             None if arg_types is None else tuple(t[1] for t in arg_types),
                             None if returns is None else returns[1])

    clauses: list[list[str]] = [[r.keyword("FROM"), *source_tokens]]
    if target is not None:
        clauses.append([r.keyword("TARGET"), r.name(target)])
    function_tokens = [r.keyword("FUNCTION"), r.name(function.name.name)]
    if arg_types is not None:
        function_tokens += ["(", ", ".join(t[0] for t in arg_types), ")"]
    if returns is not None:
        function_tokens += [r.keyword("RETURNS"), returns[0]]
    clauses.append(function_tokens)

    options = {"iam_role": None, "auto": True, "model_type": None, "problem_type": None, "objective": None,
               "preprocessors": None, "hyperparameters": {}, "settings": {},
               "given": {"objective": None, "preprocessors": None, "hyperparameters": []}}
    if draw(st.booleans()):
        arn = draw(st.sampled_from(["default", "arn:aws:iam::123:role/ml"]))
        options["iam_role"] = arn
        clauses.append([r.keyword("IAM_ROLE"), r.keyword(arn) if arn == "default" else r.string(arn)])
    model_type = "KMEANS" if kmeans else draw(st.none() | st.sampled_from(["XGBOOST", "MLP", "LINEAR_LEARNER"]))
    if model_type is not None:
        options["model_type"] = model_type
        clauses.append([r.keyword("MODEL_TYPE"), r.keyword(model_type)])
        if draw(st.booleans()):
            options["auto"] = False
            clauses.append([r.keyword("AUTO"), r.keyword("OFF")])
    elif draw(st.booleans()):
        clauses.append([r.keyword("AUTO"), r.keyword("ON")])
    if not kmeans and draw(st.booleans()):
        problem = draw(st.sampled_from(sorted(_OBJECTIVES)))
        options["problem_type"] = problem
        clauses.append([r.keyword("PROBLEM_TYPE"), r.keyword(problem)])
        if draw(st.booleans()):
            spelling, canonical = draw(st.sampled_from(_OBJECTIVES[problem]))
            options["objective"] = canonical
            options["given"]["objective"] = spelling
            clauses.append([r.keyword("OBJECTIVE"), r.string(spelling)])
    preprocessors = draw(st.sampled_from([None, "none", [{"ColumnSet": ["a", "b"], "Transformers": ["OneHotEncoder"]}]]))
    if preprocessors is not None:
        options["preprocessors"] = preprocessors
        text = preprocessors if isinstance(preprocessors, str) else json.dumps(preprocessors)
        options["given"]["preprocessors"] = text
        clauses.append([r.keyword("PREPROCESSORS"), r.string(text)])
    # keys of the model type's table (hyperparameters.py), values in range
    values = {"XGBOOST": {"num_round": 50, "max_depth": 6, "eta": 0.25, "tree_method": "hist"},
              "MLP": {"hidden_units": 32, "epochs": 20, "activation": "tanh"},
              "LINEAR_LEARNER": {"epochs": 10, "l1": 0.5}}.get(model_type or "", {})
    hyper = draw(st.dictionaries(st.sampled_from(sorted(values) or ["-"]), st.just(None), max_size=3))
    hyper = {key: values[key] for key in hyper if key in values}
    if kmeans:
        hyper["k"] = draw(st.integers(2, 50))
    if hyper or draw(st.booleans()):
        options["hyperparameters"] = hyper
        tokens = [r.keyword("HYPERPARAMETERS"), r.keyword("DEFAULT")]
        if hyper:
            names = {k: r.name(k) for k in hyper}
            pairs = [f"{names[k]} {r.string(str(v))}" for k, v in hyper.items()]
            options["given"]["hyperparameters"] = [
                [k if names[k].startswith('"') else names[k], str(v)] for k, v in hyper.items()]
            tokens += [r.keyword("EXCEPT"), "(", ", ".join(pairs), ")"]
        clauses.append(tokens)
    settings_given = draw(st.dictionaries(
        st.sampled_from(["s3_bucket", "max_cells", "max_runtime", "s3_garbage_collect", "kms_key_id"]),
        st.just(None), max_size=5))
    if settings_given or draw(st.booleans()):
        values = {"s3_bucket": "bucket", "max_cells": draw(st.integers(1, 10**7)),
                  "max_runtime": draw(st.integers(1, 10**5)), "s3_garbage_collect": draw(st.booleans()),
                  "kms_key_id": "key"}
        options["settings"] = {key: values[key] for key in settings_given}
        pairs = []
        for key in settings_given:
            value = values[key]
            if isinstance(value, bool):
                rendered = r.keyword("ON" if value else "OFF")
            elif isinstance(value, int):
                rendered = str(value)
            else:
                rendered = r.string(value)
            pairs.append(f"{r.keyword(key)} {rendered}")
        clauses.append([r.keyword("SETTINGS"), "(", ", ".join(pairs), ")"])

    order = draw(st.permutations(range(len(clauses))))
    tokens = [r.keyword("CREATE"), r.keyword("MODEL"), *_qualified(r, model.schema, model.name)]
    for index in order:
        tokens += clauses[index]
    if draw(st.booleans()):
        tokens.append(";")
    sql = draw(st.sampled_from(["", " ", "-- lead\n", "/* lead */"])) + r.join(tokens)

    expected = CreateModel(model, source, target, function, options, text=sql)
    assert parse_ml_statement(sql) == expected
    assert might_be_ml_statement(sql) and might_be_ml_statement(sql.encode())
