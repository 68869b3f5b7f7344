"""Which text is a model call: Postgres' parser decides, not the spelling."""

from __future__ import annotations

import pytest

from proxy.errors import PgError
from proxy.inference.rewrite import ModelFunction, find_model_calls, plan_query
from proxy.inference.rewrite.functions import arg_type

from .harness import FUNCTIONS, SCHEMA, plan

CALLS = [
    "SELECT predict_score(score) FROM customers",
    "SELECT id FROM customers WHERE predict_score(score) > 1",
    "SELECT id FROM customers ORDER BY predict_score(score)",
    "SELECT count(*) FROM customers GROUP BY predict_score(score) HAVING predict_score(1) > 0",
    "SELECT 1 FROM customers c JOIN orders o ON predict_churn(c.age, o.region)",
    "SELECT (SELECT predict_score(1))",
    "WITH s AS (SELECT predict_score(1)) SELECT * FROM s",
    "SELECT 1 UNION SELECT predict_score(1)",
    "INSERT INTO audit SELECT 1, predict_churn(1, 'a')",
    "UPDATE customers SET score = predict_score(score)",
    "DELETE FROM customers WHERE predict_churn(age, plan)",
    "VALUES (predict_score(1))",
    "CREATE TABLE x AS SELECT predict_score(1)",
    "EXPLAIN SELECT predict_score(1)",
    "SELECT coalesce(predict_score(predict_score(1)), 0)",
    "SELECT mlrw.predict_score(1)",
    'SELECT "predict_score"(1)',
    "SELECT PREDICT_SCORE(1)",
    "SELECT predict_score\n  /* between */ (1)",
    "CREATE VIEW v AS SELECT predict_score(1)",
]

NOT_CALLS = [
    "SELECT 'predict_score(1)'",
    "SELECT $$ predict_score(1) $$",
    "SELECT 1 -- predict_score(1)",
    "SELECT 1 /* predict_score(1) */",
    "SELECT predict_score FROM customers",
    "SELECT t.predict_score FROM customers t",
    "SELECT 1 AS predict_score",
    "SELECT other.predict_score(1)",
    'SELECT "Predict_Score"(1)',
    "SELECT predict_scores(1)",
    "CREATE TABLE predict_score (x int)",
    "DROP FUNCTION predict_score(double precision)",
    "GRANT EXECUTE ON FUNCTION predict_score(double precision) TO PUBLIC",
    "SELECT predict_score(",
    "",
]


@pytest.mark.parametrize("sql", CALLS)
def test_calls_are_found(sql):
    assert find_model_calls(sql, FUNCTIONS)


@pytest.mark.parametrize("sql", NOT_CALLS)
def test_lookalikes_are_not_calls(sql):
    assert not find_model_calls(sql, FUNCTIONS)
    assert plan(sql) is None


def test_search_path_decides_unqualified_names():
    assert plan_query("SELECT predict_score(1)", FUNCTIONS, search_path=("public",)) is None
    assert plan_query("SELECT mlrw.predict_score(1)", FUNCTIONS, search_path=("public",)) is not None
    assert plan_query("SELECT predict_score(1)", FUNCTIONS, search_path=("public", SCHEMA)) is not None


def test_first_schema_on_the_path_wins():
    functions = {"p": [ModelFunction("a", "p", ("integer",), "integer", 1, "predict"),
                       ModelFunction("b", "p", ("integer",), "integer", 2, "predict")]}
    assert plan_query("SELECT p(1)", functions, search_path=("b", "a")).calls[0].function.model_id == 2
    assert plan_query("SELECT a.p(1)", functions, search_path=("b", "a")).calls[0].function.model_id == 1


def test_overloads_by_arity_and_ambiguity():
    functions = {"p": [ModelFunction("s", "p", ("integer",), "integer", 1, "predict"),
                       ModelFunction("s", "p", ("integer", "text"), "integer", 2, "predict")]}
    assert plan_query("SELECT p(1, 'x')", functions, search_path=("s",)).calls[0].function.model_id == 2
    functions["p"].append(ModelFunction("s", "p", ("text",), "integer", 3, "predict"))
    with pytest.raises(PgError) as info:
        plan_query("SELECT p(1)", functions, search_path=("s",))
    assert info.value.sqlstate == "0A000"


def test_stored_names_keep_their_case():
    functions = {"predict": [ModelFunction("public", "Predict", ("integer",), "integer", 1, "predict")]}
    assert find_model_calls('SELECT "Predict"(1)', functions)
    assert not find_model_calls("SELECT Predict(1)", functions)
    p = plan_query('SELECT "Predict"(1)', functions)
    assert p.sql.text == 'SELECT (CASE WHEN false THEN "Predict"(1) END) AS "Predict", ((1)::integer)::double precision AS __mlproxy_0_0'


@pytest.mark.parametrize(("declared", "cast", "kind"), [
    ("integer", "integer", "float"),
    ("double precision", "double precision", "float"),
    ("numeric(10,2)", "numeric", "float"),
    ("smallint", "smallint", "float"),
    ("boolean", "boolean", "int"),
    ("date", "date", "epoch"),
    ("timestamp(3) without time zone", "timestamp", "epoch"),
    ("timestamp with time zone", "pg_catalog.timestamptz", "epoch"),
    ("character varying(3)", "pg_catalog.varchar", "text"),
    ("character(2)", "pg_catalog.bpchar", "text"),
    ("text", "text", "text"),
    ("int[]", "integer[]", "text"),
    ('public."Color"', 'public."Color"', "text"),
])
def test_argument_types(declared, cast, kind):
    t = arg_type(declared)
    assert (t.cast, t.kind) == (cast, kind)
