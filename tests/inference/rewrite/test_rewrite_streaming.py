"""The streaming path: placeholders and appended argument columns, run for real."""

from __future__ import annotations

import datetime

import psycopg
import pytest

from proxy.inference.rewrite import GeneralPlan, StreamingPlan

from .harness import check, plan

CASES = [
    ("SELECT id, predict_churn(age, plan) FROM customers", ()),
    ("SELECT *, predict_churn(age, plan) FROM customers", ()),
    ("SELECT predict_churn(age, plan) p, c.*, predict_score(score) FROM customers c", ()),
    ("SELECT c.id, o.id, predict_score(o.amount) FROM customers c JOIN orders o ON o.customer_id = c.id", ()),
    ("SELECT id, predict_churn(age + $1, plan) FROM customers WHERE id <> $2", (1, 3)),
    ("SELECT region, predict_score(avg(score)) FROM customers GROUP BY region", ()),
    ("SELECT id, predict_mix(age, plan, active, joined, seen) FROM customers", ()),
    ("SELECT id, predict_churn_prob(age, plan) FROM customers", ()),
    ("SELECT id, predict_score(sum(score) OVER (ORDER BY id)) FROM customers", ()),
    ("WITH c AS (SELECT * FROM customers WHERE age > 20) SELECT id, predict_churn(age, plan) FROM c", ()),
    ("SELECT 'é€😀' AS \"ü\", predict_churn(age, plan) FROM customers", ()),
    ("SELECT id, predict_score(score) FROM customers FOR UPDATE", ()),
    ("SELECT id, predict_churn(3, $1::text) FROM customers", ("gold",)),
    ("SELECT predict_churn(age, plan) FROM customers GROUP BY ROLLUP (age, plan)", ()),
    ("/* leading */ SELECT id, predict_score(score) FROM customers; -- trailing", ()),
    ("SELECT generate_series(1, 2) AS g, predict_score(score) FROM customers", ()),
]


@pytest.mark.parametrize(("sql", "params"), CASES, ids=[c[0][:70] for c in CASES])
def test_streaming_matches_the_oracle(conn, sql, params):
    assert isinstance(check(conn, sql, params), StreamingPlan)


def test_streaming_with_a_data_modifying_cte(conn):
    sql = ("WITH ins AS (INSERT INTO audit (customer_id) SELECT id FROM customers RETURNING customer_id) "
           "SELECT predict_score(count(*)) FROM ins")
    assert isinstance(check(conn, sql, table="audit"), StreamingPlan)


ORDERED = [
    "SELECT id, predict_churn(age, plan) AS \"Churn?\" FROM customers WHERE id > 2 ORDER BY id LIMIT 4 OFFSET 1",
    "SELECT DISTINCT ON (region) region, predict_churn(age, plan) FROM customers ORDER BY region, id",
    "SELECT id, predict_score(score) FROM customers ORDER BY score DESC NULLS LAST, 1",
]


@pytest.mark.parametrize("sql", ORDERED)
def test_streaming_keeps_order_and_limits(conn, sql):
    assert isinstance(check(conn, sql, ordered=True), StreamingPlan)


GENERAL = [
    "SELECT DISTINCT predict_churn(age, plan) FROM customers",
    "SELECT id, predict_churn(age, plan) AS p FROM customers ORDER BY p",
    "SELECT id, predict_churn(age, plan) FROM customers ORDER BY 2",
    "SELECT predict_churn(age, plan) FROM customers GROUP BY 1",
    "SELECT predict_churn(age, plan), count(*) FROM customers GROUP BY predict_churn",
    "SELECT id, predict_churn(age, plan) FROM customers UNION ALL SELECT 1, true",
    "SELECT predict_churn(age, plan)::int FROM customers",
    "SELECT predict_score(predict_score(score)) FROM customers",
    "SELECT c.*, predict_score(1), o.* FROM customers c, orders o",
    "SELECT *, predict_score(1) FROM customers ORDER BY 9",
    "SELECT id, predict_score(score) INTO TEMP x FROM customers",
    "CREATE TABLE x AS SELECT predict_score(score) FROM customers",
    "COPY (SELECT predict_score(score) FROM customers) TO STDOUT",
]


@pytest.mark.parametrize("sql", GENERAL)
def test_shapes_that_take_the_general_path(sql):
    assert isinstance(plan(sql), GeneralPlan)


def test_rewritten_text(conn):
    p = plan("SELECT id, predict_churn(age, plan) AS p FROM customers")
    assert p.sql.text == (
        "SELECT id, (CASE WHEN false THEN predict_churn(age, plan) END) AS p, "
        "((age)::integer)::double precision AS __mlproxy_0_0, (plan)::text AS __mlproxy_0_1 FROM customers")
    assert p.user_columns == 2 and p.appended_columns == 2
    assert p.calls[0].column == 1 and [a.index for a in p.calls[0].args] == [2, 3]
    assert p.description == "mlproxy: streaming inference of predict_churn in the select list"


def test_row_description_and_appended_values(conn):
    """Names and types as the client would see them; appended columns hold the cast arguments."""
    p = plan("SELECT id, predict_mix(age, plan, active, joined, seen), predict_churn(age, plan) FROM customers "
             "WHERE id = 1")
    cur = psycopg.RawCursor(conn)
    cur.execute(p.sql.text)
    names = [d.name for d in cur.description]
    assert names[:3] == ["id", "predict_mix", "predict_churn"]
    assert [d.type_code for d in cur.description[:3]] == [23, 25, 16]  # int4, text, bool
    row = cur.fetchone()
    assert row[1] is None and row[2] is None  # placeholders; the stub never ran
    mix = p.calls[0].args
    assert [a.kind for a in mix] == ["float", "text", "int", "epoch", "epoch"]
    assert [row[a.index] for a in mix] == [
        30.0, "basic", 1,
        datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc).timestamp(),
        datetime.datetime(2021, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc).timestamp(),
    ]
    assert [row[a.index] for a in p.calls[1].args] == [30.0, "basic"]


def test_star_layout_is_resolved_from_the_row_description(conn):
    p = plan("SELECT predict_score(score) AS s, *, predict_churn(age, plan) FROM customers")
    assert p.has_star and p.user_columns == 3
    cur = psycopg.RawCursor(conn)
    cur.execute(p.sql.text)
    resolved = p.resolve(len(cur.description))
    assert resolved.user_columns == 10  # s, the 8 columns of customers, predict_churn
    assert resolved.calls[1].column == 9
    assert [cur.description[a.index].name for c in resolved.calls for a in c.args] == \
        ["__mlproxy_0_0", "__mlproxy_1_0", "__mlproxy_1_1"]


def test_integer_argument_is_cast_like_the_declared_type(conn):
    """A smallint or numeric expression reaches the model as the declared integer would."""
    p = plan("SELECT predict_churn(age::smallint, plan) FROM customers WHERE id = 2")
    cur = psycopg.RawCursor(conn)
    cur.execute(p.sql.text)
    assert cur.fetchone()[1:] == (41.0, "gold")
