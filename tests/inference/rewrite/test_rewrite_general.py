"""The general path, run against Postgres the way the proxy runs it, against an oracle.

Every statement is planned, its input queries run, "predictions" computed in
Python, loaded with COPY, and the final statement run; the result (and, for DML,
the table afterwards) must equal the statement run with SQL reference functions.
The stubs raise if executed, so any stub call fails the test.
"""

from __future__ import annotations

import time

import pytest

from proxy.inference.rewrite import GeneralPlan

from .harness import check, fill_tables, plan, reference

CASES = [
    # WHERE / ORDER BY / GROUP BY / HAVING
    ("SELECT id FROM customers WHERE predict_churn(age, plan)", ()),
    ("SELECT id, age FROM customers WHERE predict_churn(age, plan) AND region = 'eu' OR id = 3", ()),
    ("SELECT id, predict_churn(age, plan) FROM customers WHERE predict_score(score) > 3", ()),
    ("SELECT count(*) FROM customers WHERE predict_churn(age, plan) IS NOT TRUE", ()),
    ("SELECT predict_churn(age, plan) AS c, count(*) FROM customers GROUP BY 1", ()),
    ("SELECT predict_churn(age, plan), count(*) FROM customers GROUP BY predict_churn(age, plan)", ()),
    ("SELECT predict_churn(age, plan) c, region, count(*) FROM customers GROUP BY GROUPING SETS ((1), (region))", ()),
    ("SELECT region, count(*) FROM customers GROUP BY region HAVING predict_score(avg(score)) > 3", ()),
    ("SELECT region, predict_score(sum(score)) + 0 AS s FROM customers WHERE age > 20 GROUP BY ROLLUP (region)", ()),
    ("SELECT region AS r, predict_score(count(*)) + 0 AS s FROM customers GROUP BY r", ()),
    ("SELECT region, predict_score(count(*)) AS s FROM customers GROUP BY region HAVING predict_score(count(*)) > 2", ()),
    ("SELECT predict_score(count(*))::int FROM customers", ()),
    ("SELECT region, avg(predict_score(score)), count(*) FILTER (WHERE predict_churn(age, plan)) "
     "FROM customers GROUP BY region", ()),
    ("SELECT predict_churn(age, plan) FROM customers GROUP BY age, plan ORDER BY 1", ()),
    ("SELECT DISTINCT predict_churn(age, plan) FROM customers", ()),
    ("SELECT DISTINCT region, predict_score(score) FROM customers ORDER BY predict_score(score), region", ()),
    ("SELECT id, CASE WHEN age > 30 THEN predict_churn(age, plan) END FROM customers", ()),
    # window functions
    ("SELECT id, predict_score(lag(score) OVER (ORDER BY id)) + 0 FROM customers WHERE id > 1", ()),
    ("SELECT id, predict_score(rank() OVER w) + 0 FROM customers WINDOW w AS (ORDER BY age)", ()),
    ("SELECT region, predict_score(avg(score) OVER ()) + 0 FROM customers GROUP BY region, score HAVING count(*) > 0", ()),
    # joins
    ("SELECT c.id, o.id FROM customers c JOIN orders o ON o.customer_id = c.id AND predict_score(o.amount) > 20", ()),
    ("SELECT c.id, o.id FROM customers c LEFT JOIN orders o ON predict_churn(c.age, o.region)", ()),
    ("SELECT c.id FROM customers c JOIN orders o ON predict_churn(c.age, o.region) "
     "JOIN orders o2 ON o2.customer_id = c.id AND predict_score(o2.amount) > 5", ()),
    ("SELECT c.id FROM (customers c JOIN orders o ON predict_churn(c.age, o.region)) "
     "LEFT JOIN orders o2 ON o2.customer_id = c.id AND predict_score(o2.amount + o.amount) > 5", ()),
    # sub-queries, correlated or not
    ("SELECT id, (SELECT max(predict_score(o.amount)) FROM orders o) FROM customers", ()),
    ("SELECT id, (SELECT max(predict_score(o.amount + c.score)) FROM orders o WHERE o.customer_id = c.id) AS m "
     "FROM customers c", ()),
    ("SELECT id, (SELECT predict_score(sum(o.amount)) FROM orders o WHERE o.customer_id = c.id) + 0 FROM customers c", ()),
    ("SELECT id FROM customers c WHERE EXISTS "
     "(SELECT 1 FROM orders o WHERE o.customer_id = c.id AND predict_score(o.amount) > 20)", ()),
    ("SELECT id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND "
     "EXISTS (SELECT 1 WHERE predict_score(o.amount + c.age) > 60))", ()),
    ("SELECT id FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE predict_churn(customer_id, region))", ()),
    ("SELECT id FROM customers c WHERE predict_score(c.score) > ALL "
     "(SELECT predict_score(o.amount) FROM orders o WHERE o.customer_id = c.id)", ()),
    ("SELECT (SELECT count(*) FROM (SELECT predict_score(c.score) AS p) s WHERE p > 2) FROM customers c", ()),
    ("SELECT * FROM (SELECT id, predict_score(score) AS p FROM customers) s WHERE p > 3", ()),
    ("SELECT x.id FROM (SELECT id, score FROM customers UNION ALL SELECT id, amount FROM orders) x "
     "WHERE predict_score(x.score) > 10", ()),
    ("SELECT c.id, s.p FROM customers c, LATERAL (SELECT predict_score(c.score) AS p) s", ()),
    ("SELECT s.p FROM customers c, LATERAL (SELECT predict_score(c.score + o.amount) AS p FROM orders o "
     "WHERE o.customer_id = c.id) s", ()),
    ("SELECT c.id, s.p FROM customers c LEFT JOIN LATERAL (SELECT predict_score(o.amount) p FROM orders o "
     "WHERE o.customer_id = c.id) s ON true", ()),
    ("SELECT c.id, x.p FROM customers c CROSS JOIN LATERAL (SELECT predict_score(max(o.amount)) + 0 AS p "
     "FROM orders o WHERE o.customer_id = c.id) x", ()),
    ("SELECT c.id, x.p FROM orders o2, customers c JOIN orders o ON o.customer_id = c.id LEFT JOIN LATERAL "
     "(SELECT predict_score(o.amount + o2.amount) AS p WHERE c.age > 20) x ON true WHERE o2.id = 10", ()),
    ("SELECT id FROM customers WHERE EXISTS "
     "(SELECT 1 FROM orders JOIN LATERAL (SELECT predict_score(customers.score) p) s ON s.p > 10)", ()),
    ("SELECT c.id, (SELECT string_agg(o.id::text, ',') FROM orders o WHERE o.customer_id = c.id "
     "AND predict_churn(c.age, o.region)) FROM customers c", ()),
    ("SELECT id, score FROM customers WHERE score > "
     "(SELECT avg(predict_score(amount)) FROM orders WHERE region = customers.region)", ()),
    ("SELECT ARRAY(SELECT predict_score(o.amount) FROM orders o WHERE o.customer_id = c.id ORDER BY 1) "
     "FROM customers c", ()),
    ("SELECT id, predict_score(score) FROM customers WHERE id = "
     "(SELECT min(customer_id) FROM orders WHERE predict_score(amount) > 10)", ()),
    # CTEs and set operations
    ("WITH s AS (SELECT id, predict_score(score) AS p FROM customers) SELECT id, p FROM s WHERE p > 2", ()),
    ("WITH s AS (SELECT id, age, plan FROM customers WHERE id < 6) SELECT id FROM s WHERE predict_churn(age, plan)", ()),
    ("WITH s AS MATERIALIZED (SELECT id, age, plan FROM customers), t AS (SELECT * FROM s WHERE id > 2) "
     "SELECT id FROM t WHERE predict_churn(age, plan) ORDER BY id", ()),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) "
     "SELECT n, predict_score(n) FROM r ORDER BY predict_score(n)", ()),
    ("SELECT id, predict_churn(age, plan) FROM customers WHERE id < 4 "
     "UNION SELECT id, predict_churn(age, 'gold') FROM customers WHERE id > 5", ()),
    ("VALUES (predict_score(1.5)), (predict_score($1))", (4.0,)),
    ("SELECT * FROM (VALUES (predict_score(1)), (predict_score(2))) v(x)", ()),
    ("SELECT id FROM customers WHERE age IN (VALUES (predict_score(14)::int), (30))", ()),
    ("SELECT 1 UNION SELECT predict_score(2)::int", ()),
    ("WITH RECURSIVE r AS (SELECT predict_score(1)::int n UNION ALL SELECT n + 1 FROM r WHERE n < 5) "
     "SELECT * FROM r", ()),
    ("WITH a AS (SELECT id, score FROM customers), b AS (SELECT id, predict_score(score) p FROM a) "
     "SELECT * FROM b WHERE p > 2", ()),
    ("SELECT id FROM customers WHERE true AND predict_churn(age, plan) AND 1 = 1", ()),
    ("SELECT c.id, o.id FROM customers c JOIN orders o ON true AND predict_score(o.amount) > 5", ()),
    ("SELECT 'é€' AS e, id FROM customers WHERE 'ü' <> 'x' AND predict_score(score) > 2 AND NULL IS NULL", ()),
    ("SELECT region, string_agg(plan, ',' ORDER BY predict_score(score), plan) FROM customers GROUP BY region", ()),
    ("SELECT sum(predict_score(score)) OVER (PARTITION BY region) FROM customers", ()),
    ("SELECT DISTINCT ON (predict_churn(age, plan)) predict_churn(age, plan), id FROM customers "
     "ORDER BY predict_churn(age, plan), id", ()),
    # nesting, several models, parameters
    ("SELECT id, predict_score(predict_score(score)) FROM customers", ()),
    ("SELECT id FROM customers WHERE predict_churn(age, predict_churn(age, plan)::text)", ()),
    ("SELECT id, predict_churn(age, plan) OR predict_score(score) > 5 AS x FROM customers", ()),
    ("SELECT id, predict_score(score), predict_score(age) FROM customers ORDER BY 2, 3, 1", ()),
    ("SELECT id FROM customers WHERE predict_score(score + $1) > $2 AND id <> $3", (1.0, 4.0, 2)),
    ("SELECT id FROM customers WHERE region = $2 AND predict_score(score) > $1", (2.0, "eu")),
    ("SELECT id FROM customers WHERE predict_score(score) > $3", (1, 2, 3.0)),
    ("SELECT id, predict_mix(age, plan, active, joined, seen) || '' FROM customers", ()),
    ("SELECT id FROM customers WHERE (predict_churn_prob(age, plan) ->> 'true')::float > 0.5", ()),
    ("SELECT id FROM customers WHERE predict_score(score) > 1 AND random() < 2", ()),
]


@pytest.mark.parametrize(("sql", "params"), CASES, ids=[c[0][:70] for c in CASES])
def test_select_placements(conn, sql, params):
    assert isinstance(check(conn, sql, params), GeneralPlan)


ORDERED = [
    "SELECT * FROM (SELECT region, predict_score(count(*)) FROM customers GROUP BY region) s ORDER BY 1",
    "SELECT region FROM customers GROUP BY region ORDER BY predict_score(count(*)), region",
    "/* leading */ SELECT id FROM customers WHERE predict_score(score) > 2 ORDER BY id ; /* trailing */",
    "SELECT * FROM customers ORDER BY id LIMIT predict_score(1)::int",
    "SELECT id, predict_churn(age, plan) FROM customers GROUP BY ROLLUP (id, age, plan) ORDER BY 1, 2",
    "SELECT id FROM customers ORDER BY predict_score(score) DESC, id",
    "SELECT id, predict_churn(age, plan) AS p FROM customers ORDER BY p, id",
    "SELECT region, predict_score(count(*)) FROM customers GROUP BY region ORDER BY 2",
]


@pytest.mark.parametrize("sql", ORDERED)
def test_order_by(conn, sql):
    assert isinstance(check(conn, sql, ordered=True), GeneralPlan)


DML = [
    ("INSERT INTO audit SELECT id, predict_churn(age, plan), predict_score(score) FROM customers", (), "audit"),
    ("INSERT INTO audit (customer_id, churn) SELECT id, predict_churn(age, plan) FROM customers "
     "WHERE predict_score(score) > 2", (), "audit"),
    ("INSERT INTO audit VALUES (1, predict_churn(3, 'x'), predict_score($1))", (2.5,), "audit"),
    ("CREATE TABLE churners AS SELECT id, predict_churn(age, plan) AS c FROM customers", (), "churners"),
    ("CREATE TEMP TABLE scored AS SELECT id, predict_score(score) FROM customers WITH DATA", (), "scored"),
    ("SELECT id, predict_churn(age, plan) AS c INTO TEMP tmp_churn FROM customers", (), "tmp_churn"),
    ("UPDATE customers SET score = predict_score(score) WHERE predict_churn(age, plan)", (), "customers"),
    ("UPDATE customers c SET plan = 'x' FROM orders o WHERE o.customer_id = c.id AND predict_score(o.amount) > 20",
     (), "customers"),
    ("UPDATE customers SET score = (SELECT predict_score(max(amount)) FROM orders o WHERE o.customer_id = customers.id)",
     (), "customers"),
    ("DELETE FROM orders o USING customers c WHERE o.customer_id = c.id AND predict_churn(c.age, o.region)",
     (), "orders"),
    ("DELETE FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE predict_score(amount) > 20)",
     (), "customers"),
    ("DELETE FROM orders WHERE amount > $1 RETURNING id, predict_score(amount)", (10,), "orders"),
    ("CREATE TABLE x AS SELECT 1 AS a, predict_score(score) FROM customers", (), "x"),
    ("WITH s AS (SELECT id, age, plan FROM customers) INSERT INTO audit (customer_id, churn) "
     "SELECT id, predict_churn(age, plan) FROM s WHERE predict_score(age) > 40", (), "audit"),
    ("WITH s AS (SELECT id FROM customers WHERE id < 4) UPDATE customers SET score = predict_score(score) "
     "WHERE id IN (SELECT id FROM s) AND predict_churn(age, plan)", (), "customers"),
]


@pytest.mark.parametrize(("sql", "params", "table"), DML, ids=[c[0][:70] for c in DML])
def test_data_changes(conn, sql, params, table):
    assert isinstance(check(conn, sql, params, table=table), GeneralPlan)


def test_steps_follow_dependencies():
    p = plan("SELECT id FROM customers WHERE predict_churn(age, predict_score(score)::text) "
             "AND predict_score(predict_score(age)) > 3")
    order = {c: k for k, s in enumerate(p.steps) for c in s.calls}
    for k, step in enumerate(p.steps):
        assert all(d < k for d in step.depends_on)
    assert [s.function.name for s in p.steps].count("predict_score") == 2  # inner and outer levels
    # calls by position: 0 predict_churn, 1 its inner predict_score, 2 outer and 3 inner predict_score
    assert order[0] > order[1] and order[2] > order[3] and order[1] == order[3]


def test_calls_of_one_model_and_block_share_a_step_and_a_scan():
    p = plan("SELECT predict_score(score), predict_score(age) + 1 FROM customers WHERE predict_score(score) > 1")
    assert len(p.steps) == 1 and p.steps[0].calls == (0, 1, 2)
    text = p.steps[0].input.text
    assert text.count("FROM customers") == 1 and "CROSS JOIN LATERAL (VALUES" in text


def test_a_call_in_an_on_condition_is_resolved_first():
    """The select-list call is evaluated only on the pairs the ON call lets through."""
    p = plan("SELECT predict_score(o.amount) + 1 FROM customers c JOIN orders o ON predict_churn(c.age, o.region)")
    assert [(s.function.name, s.calls, s.depends_on) for s in p.steps] == [
        ("predict_churn", (1,), ()), ("predict_score", (0,), (0,))]
    assert "ON (true)" not in p.steps[1].input.text and "pg_temp.t_1" in p.steps[1].input.text


def test_parameters_are_renumbered_in_input_queries():
    p = plan("SELECT id FROM customers WHERE region = $3 AND predict_score(score + $2) > $1")
    step = p.steps[0]
    assert step.input.params == (2, 3)
    assert "$1" in step.input.text and "$2" in step.input.text and "$3" not in step.input.text
    assert p.sql.params == (1, 2, 3)


def test_many_calls_plan_quickly():
    values = ", ".join(f"({i}, predict_churn({i}, 'x'), predict_score({i}.5))" for i in range(200))
    started = time.perf_counter()
    p = plan(f"INSERT INTO audit VALUES {values}")
    assert time.perf_counter() - started < 2
    assert [len(s.calls) for s in p.steps] == [200, 200]


def test_input_query_keeps_the_where_clause():
    """A select-list call on a filtered table predicts only the rows that pass."""
    p = plan("SELECT id, predict_churn(age, plan) FROM customers WHERE id = 1 ORDER BY 2")
    assert "id = 1" in p.steps[0].input.text


@pytest.mark.parametrize(("sql", "cursor"), [
    ("DECLARE c CURSOR FOR SELECT id, predict_churn(age, plan) FROM customers ORDER BY id", "transaction"),
    ("DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT id FROM customers WHERE predict_churn(age, plan)", "hold"),
    ("declare \"for\" binary cursor without hold for select predict_score(score) for_x from customers", "transaction"),
])
def test_declare_cursor_takes_the_general_path(conn, sql, cursor):
    """A cursor's query (also a select-list call) reads lookups; its tables live until
    COMMIT, and FETCH gives what the query would."""
    the_plan = plan(sql)
    assert isinstance(the_plan, GeneralPlan) and the_plan.cursor == cursor
    assert the_plan.sql.text.lower().startswith("declare")
    assert all(s.create[0].endswith("ON COMMIT DROP") for s in the_plan.steps)
    query = sql[sql.lower().index(" for ", sql.lower().index("cursor")) + 5:]
    expected = reference(conn, query)
    with conn.transaction(force_rollback=True):
        fill_tables(conn, the_plan)
        conn.execute(the_plan.sql.text)
        name = the_plan.sql.text.split()[1]
        cur = conn.cursor()
        cur.execute(f"FETCH ALL FROM {name}")
        rows = cur.fetchall()
    assert sorted(map(repr, rows)) == sorted(map(repr, expected.rows))
