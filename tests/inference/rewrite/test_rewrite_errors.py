"""Errors: Postgres' own on the client's text, and what the rewrite refuses."""

from __future__ import annotations

import psycopg
import pytest

from proxy.errors import PgError
from proxy.inference.rewrite import ExplainPlan, GeneralPlan, StreamingPlan

from .harness import fill_tables, plan


def first_error(conn, p):
    """Run the plan's texts in the order the proxy would; the first error and its text."""
    texts = [(k, s.input) for k, s in enumerate(p.steps)] + [("sql", p.sql)]
    with conn.transaction(force_rollback=True):
        for step in p.steps:
            for statement in step.create:
                conn.execute(statement)
        for which, text in texts:
            try:
                with conn.transaction():
                    psycopg.RawCursor(conn).execute(text.text)
            except psycopg.Error as e:
                return e, which
    raise AssertionError("no error")


WRONG_CALLS = [
    "SELECT id, predict_churn(age) FROM customers",
    "SELECT id, predict_churn(age, joined) FROM customers",
    "SELECT 'é€😀' AS x, predict_churn(3.7, plan) AS p FROM customers",
    "SELECT id FROM customers WHERE predict_churn(age)",
    "SELECT id FROM customers /* ü */ ORDER BY predict_churn(age, plan, plan)",
    "UPDATE customers SET plan = 'x' WHERE predict_churn(plan, age)",
]


def test_wrong_argument_count_is_left_to_postgres(conn):
    """A call whose arity no model function has is not a model call: forwarded
    unchanged, it reaches a function of the user's own with that arity, or gets
    Postgres's own 42883 at the call (the stub has the model's arity)."""
    for sql in (s for s in WRONG_CALLS if plan(s) is None):
        with pytest.raises(psycopg.errors.UndefinedFunction) as info:
            with conn.transaction():
                psycopg.RawCursor(conn).execute(sql)
        assert sql[int(info.value.diag.statement_position) - 1:].startswith("predict_churn(")


@pytest.mark.parametrize("sql", [s for s in WRONG_CALLS if plan(s) is not None])
def test_wrong_arguments_are_postgres_42883_at_the_call(conn, sql):
    p = plan(sql)
    error, which = first_error(conn, p)
    assert error.sqlstate == "42883", error
    assert which == ("sql" if isinstance(p, StreamingPlan) else 0)
    position = p.map_position(int(error.diag.statement_position), which)
    assert sql[position - 1:].startswith("predict_churn(")


def test_other_errors_point_into_the_clients_text(conn):
    sql = "SELECT id, nosuchcol, predict_churn(age, plan) FROM customers"
    error, which = first_error(conn, plan(sql))
    assert error.sqlstate == "42703"
    assert sql[plan(sql).map_position(int(error.diag.statement_position), which) - 1:].startswith("nosuchcol")
    sql = "SELECT id FROM customers WHERE ü_missing AND predict_churn(age, plan)"
    p = plan(sql)
    error, which = first_error(conn, p)
    assert which == 0 and sql[p.map_position(int(error.diag.statement_position), 0) - 1:].startswith("ü_missing")


REFUSED = [
    ("CREATE VIEW v AS SELECT predict_churn(age, plan) FROM customers", "CREATE VIEW"),
    ("CREATE MATERIALIZED VIEW v AS SELECT predict_churn(age, plan) FROM customers", "MATERIALIZED VIEW"),
    ("PREPARE p AS SELECT predict_churn(age, plan) FROM customers", "PREPARE"),
    ("CREATE TABLE t (x boolean DEFAULT predict_churn(1, 'a'))", "CREATE TABLE"),
    ("CREATE FUNCTION f() RETURNS boolean BEGIN ATOMIC SELECT predict_churn(1, 'a'); END", "CREATE FUNCTION"),
    ("MERGE INTO audit a USING customers c ON a.customer_id = c.id "
     "WHEN NOT MATCHED THEN INSERT VALUES (c.id, predict_churn(c.age, c.plan))", "MERGE"),
    ("INSERT INTO audit (customer_id) VALUES (1) RETURNING predict_score(score)", "RETURNING"),
    ("UPDATE customers SET score = 1 RETURNING predict_score(score)", "RETURNING"),
    ("INSERT INTO audit VALUES (1) ON CONFLICT DO UPDATE SET churn = predict_churn(1, 'x')", "ON CONFLICT"),
    ("SELECT * FROM predict_score(1)", "FROM-clause function"),
    ("SELECT * FROM generate_series(1, predict_score(1)::int)", "FROM-clause function"),
    ("SELECT id FROM customers WHERE predict_score(random())", "random()"),
    ("SELECT id FROM customers TABLESAMPLE BERNOULLI (50) WHERE predict_score(score) > 1", "TABLESAMPLE"),
    ("WITH u AS (UPDATE customers SET age = age RETURNING *) SELECT id FROM u WHERE predict_score(score) > 1",
     "modifies data"),
    ("SELECT c.id FROM customers c JOIN (orders o JOIN LATERAL (SELECT predict_score(o.amount) p) s ON true) "
     "ON o.customer_id = c.id", "LATERAL"),
    ("SELECT count(*) FROM customers; SELECT predict_score(1)", "on its own"),
    ("SELECT predict_score(x => 1)", "named"),
    ("SELECT predict_score(generate_series(1, 3))", "set-returning"),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT predict_score(n)::int FROM r WHERE n < 3) SELECT * FROM r",
     "depends on its own result"),
]


@pytest.mark.parametrize(("sql", "words"), REFUSED, ids=[r[0][:60] for r in REFUSED])
def test_refused_with_0A000(sql, words):
    with pytest.raises(PgError) as info:
        plan(sql)
    assert info.value.sqlstate == "0A000"
    assert words in info.value.message
    assert info.value.message.startswith("mlproxy: ")


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT predict_score(score) OVER () FROM customers",
     "OVER specified, but predict_score is not a window function nor an aggregate function"),
    ("SELECT predict_score(DISTINCT score) FROM customers",
     "DISTINCT specified, but predict_score is not an aggregate function"),
])
def test_aggregate_syntax_on_a_model_function(sql, message):
    with pytest.raises(PgError) as info:
        plan(sql)
    assert (info.value.sqlstate, info.value.message, info.value.position) == ("42809", message, sql.index("predict") + 1)


def test_refusals_point_at_the_call():
    sql = "SELECT id\nFROM customers WHERE predict_score(random()) > 1"
    with pytest.raises(PgError) as info:
        plan(sql)
    assert sql[info.value.position - 1:].startswith("predict_score(random())")


def test_unparsable_text_is_left_to_postgres():
    assert plan("SELECT predict_score(1 FROM") is None
    assert plan("SELEC predict_score(1)") is None


EXPLAINS = [
    ("EXPLAIN SELECT id, predict_score(score) FROM customers", StreamingPlan, False),
    ("EXPLAIN (ANALYZE, COSTS OFF) SELECT id FROM customers WHERE predict_score(score) > 2", GeneralPlan, True),
    ("EXPLAIN (ANALYZE false) SELECT id FROM customers WHERE predict_score(score) > 2", GeneralPlan, False),
    ("EXPLAIN ANALYZE VERBOSE CREATE TABLE zz AS SELECT predict_score(score) FROM customers", GeneralPlan, True),
    ("EXPLAIN ANALYZE DELETE FROM orders WHERE predict_score(amount) > 20", GeneralPlan, True),
]


@pytest.mark.parametrize(("sql", "inner", "analyze"), EXPLAINS)
def test_explain(conn, sql, inner, analyze):
    p = plan(sql)
    assert isinstance(p, ExplainPlan) and isinstance(p.inner, inner) and p.analyze is analyze
    assert p.sql.text.startswith(sql[: sql.index(" ", 8)])
    assert p.description.startswith("mlproxy: streaming" if inner is StreamingPlan else "mlproxy: general path")
    assert not p.inner.sql.text.startswith("EXPLAIN")
    with conn.transaction(force_rollback=True):
        if analyze:
            fill_tables(conn, p.inner)
        else:
            for step in p.steps:
                for statement in step.create:
                    conn.execute(statement)
                psycopg.RawCursor(conn).execute(step.probe.text)
        lines = [r[0] for r in psycopg.RawCursor(conn).execute(p.sql.text).fetchall()]
    assert lines and ("pg_temp" in "\n".join(lines) or inner is StreamingPlan or "SubPlan" in "\n".join(lines))


def test_copy_query(conn):
    p = plan("COPY (SELECT id, predict_score(score) FROM customers ORDER BY id) TO STDOUT")
    assert isinstance(p, GeneralPlan)
    with conn.transaction(force_rollback=True):
        fill_tables(conn, p)
        with psycopg.RawCursor(conn).copy(p.sql.text) as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
    assert data.decode().splitlines()[:2] == ["1\t4", "2\t5.5"]
