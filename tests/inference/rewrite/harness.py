"""Run rewrite plans against the real Postgres the way the proxy will, and an oracle.

Each model function exists twice in schema `mlrw`: `predict_x`, a stub that raises
if Postgres ever executes it, and `ref_x`, a SQL function computing the same
deterministic "model" as the Python function in MODELS.  The oracle runs the
client's statement with predict_ -> ref_, so Postgres itself says what the answer
must be; the plan runs with the stubs and Python predictions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
import psycopg

from proxy.inference.rewrite import GeneralPlan, ModelFunction, StreamingPlan, plan_query

SCHEMA = "mlrw"


def _churn(age, plan):
    return (int(age or 0) % 3 == 0) or plan == "gold"


def _score(x):
    return (x or 0.0) * 2 + 1


def _mix(n, s, flag, day, moment):
    parts = [None if n is None else str(int(n)), s, flag, None if day is None else int(day),
             None if moment is None else int(moment)]
    return "|".join(str(p) for p in parts if p is not None)


def _prob(age, plan):
    p = 0.25 if _churn(age, plan) else 0.75
    return json.dumps({"false": p, "true": 1 - p})


MODELS = {"predict_churn": _churn, "predict_score": _score, "predict_mix": _mix, "predict_churn_prob": _prob}

FUNCTIONS = {
    "predict_churn": [ModelFunction(SCHEMA, "predict_churn", ("integer", "text"), "boolean", 1, "predict")],
    "predict_score": [ModelFunction(SCHEMA, "predict_score", ("double precision",), "double precision", 2, "predict")],
    "predict_mix": [ModelFunction(SCHEMA, "predict_mix", ("integer", "character varying(3)", "boolean", "date",
                                                          "timestamp with time zone"), "text", 3, "predict")],
    "predict_churn_prob": [ModelFunction(SCHEMA, "predict_churn_prob", ("integer", "text"), "jsonb", 4, "prob")],
}

SETUP = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
SET search_path = {SCHEMA};
CREATE TABLE customers (id int PRIMARY KEY, age int, plan text, score double precision, active boolean,
                        joined date, seen timestamptz, region text);
INSERT INTO customers VALUES
 (1, 30, 'basic', 1.5, true, '2020-01-01', '2021-03-04 05:06:07+00', 'eu'),
 (2, 41, 'gold', 2.25, false, '2019-06-30', '2022-01-01 00:00:00+00', 'us'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 33, 'basic', -0.5, true, '2021-02-03', '2020-12-31 23:59:59+00', 'eu'),
 (5, 30, 'pro', 7.0, false, '2018-01-01', '2019-07-07 07:07:07+00', 'asia'),
 (6, 52, 'gold', 3.5, true, '2022-05-05', '2023-05-05 05:05:05+00', 'us'),
 (7, 19, 'pro', 0.0, NULL, '2017-09-09', '2018-08-08 08:08:08+00', 'eu'),
 (8, 27, 'basic', 4.75, true, '2016-10-10', '2017-11-11 11:11:11+00', 'asia');
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, amount numeric(10,2), region text);
INSERT INTO orders VALUES (10, 1, 12.50, 'eu'), (11, 1, 3.00, 'eu'), (12, 2, 99.99, 'us'),
 (13, 4, 5.25, 'eu'), (14, 6, 42.00, 'us'), (15, 9, 1.00, 'asia'), (16, 8, 8.80, 'asia');
CREATE TABLE audit (customer_id int, churn boolean, score double precision);
"""

_STUB = """CREATE FUNCTION {name}({args}) RETURNS {ret} LANGUAGE plpgsql AS
$$BEGIN RAISE EXCEPTION 'stub {name} was executed'; END$$"""
REFERENCES = {
    "churn": ("integer, text", "boolean", "SELECT coalesce($1, 0) % 3 = 0 OR coalesce($2 = 'gold', false)"),
    "score": ("double precision", "double precision", "SELECT coalesce($1, 0) * 2 + 1"),
    "mix": ("integer, character varying(3), boolean, date, timestamptz", "text",
            "SELECT concat_ws('|', $1, $2, $3::int, extract(epoch FROM $4)::bigint, extract(epoch FROM $5)::bigint)"),
    "churn_prob": ("integer, text", "jsonb",
                   "SELECT jsonb_build_object('false', p, 'true', 1 - p) FROM "
                   "(SELECT CASE WHEN coalesce($1, 0) % 3 = 0 OR coalesce($2 = 'gold', false) "
                   "THEN 0.25 ELSE 0.75 END AS p) s"),
}


def setup_schema(conn: psycopg.Connection) -> None:
    conn.execute(SETUP)
    for name, (args, ret, body) in REFERENCES.items():
        conn.execute(_STUB.format(name=f"predict_{name}", args=args, ret=ret))
        conn.execute(f"CREATE FUNCTION ref_{name}({args}) RETURNS {ret} LANGUAGE sql AS $${body}$$")


@dataclass
class Outcome:
    names: list[str]
    types: list[int]
    rows: list[tuple]
    table: list[tuple] | None = None

    def comparable(self, ordered: bool) -> tuple:
        rows = [tuple(_norm(v) for v in r) for r in self.rows]
        if not ordered:
            rows.sort(key=repr)
        return self.names, self.types, rows, self.table


def _norm(value):
    if isinstance(value, float):
        return round(value, 9)
    return value


def plan(sql: str, **kwargs):
    return plan_query(sql, FUNCTIONS, search_path=(SCHEMA,), temp_prefix="t_", **kwargs)


def reference(conn: psycopg.Connection, sql: str, params=(), table: str | None = None) -> Outcome:
    """The statement with the SQL reference models, in a transaction rolled back."""
    ref_sql = re.sub(r"\bpredict_(churn_prob|churn|score|mix)\b", r"ref_\1", sql)
    with conn.transaction(force_rollback=True):
        cur = psycopg.RawCursor(conn)
        cur.execute(ref_sql, params or None)
        outcome = _outcome(cur)
        outcome.names = [re.sub(r"^ref_", "predict_", n) for n in outcome.names]
        if table:
            outcome.table = sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
    return outcome


def _outcome(cur) -> Outcome:
    if cur.description is None:
        return Outcome([], [], [])
    return Outcome([d.name for d in cur.description], [d.type_code for d in cur.description], cur.fetchall())


def run_streaming(conn: psycopg.Connection, plan: StreamingPlan, params=(), table: str | None = None) -> Outcome:
    with conn.transaction(force_rollback=True):
        cur = psycopg.RawCursor(conn)
        cur.execute(plan.sql.text, params or None)
        resolved = plan.resolve(len(cur.description))
        rows = []
        for row in cur.fetchall():
            row = list(row)
            for call in resolved.calls:
                assert row[call.column] is None  # the placeholder
                row[call.column] = _predict(call.function.name, [_decode(row[a.index], a.kind) for a in call.args])
            rows.append(tuple(row[: resolved.user_columns]))
        keep = cur.description[: resolved.user_columns]
        outcome = Outcome([d.name for d in keep], [d.type_code for d in keep], rows)
        if table:
            outcome.table = sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
        return outcome


def _decode(value, kind):
    if value is None:
        return None
    assert {"float": float, "int": int, "epoch": float, "text": str}[kind] is type(value), (value, kind)
    return value


def _predict(name, args):
    value = MODELS[name](*args)
    return json.loads(value) if name.endswith("_prob") else value


def fill_tables(conn: psycopg.Connection, plan: GeneralPlan, params=()) -> None:
    """What the proxy does before the final statement: input, predict, COPY."""
    cur = psycopg.RawCursor(conn)
    for step in plan.steps:
        for statement in step.create:
            conn.execute(statement)
        cur.execute(step.input.text, [params[i - 1] for i in step.input.params] or None)
        rows = cur.fetchall()
        assert [d.type_code for d in cur.description] == [_TRANSPORT_OID[a.kind] for a in step.args]
        assert len(rows) == len(set(rows)), "input rows are DISTINCT"
        with cur.copy(step.copy) as copy:
            for row in rows:
                copy.write_row((*row, MODELS[step.function.name](*row)))
        for statement in step.finish:
            conn.execute(statement)


_TRANSPORT_OID = {"float": 701, "int": 23, "epoch": 701, "text": 25}


def run_general(conn: psycopg.Connection, plan: GeneralPlan, params=(), table: str | None = None) -> Outcome:
    with conn.transaction(force_rollback=True):
        fill_tables(conn, plan, params)
        cur = psycopg.RawCursor(conn)
        cur.execute(plan.sql.text, params or None)
        outcome = _outcome(cur)
        if table:
            outcome.table = sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
        for step in plan.steps:
            for statement in step.drop:
                conn.execute(statement)
    return outcome


def check(conn: psycopg.Connection, sql: str, params=(), *, table: str | None = None, ordered: bool = False):
    """Plan `sql`, run the plan as the proxy would, compare with the oracle; returns the plan."""
    the_plan = plan(sql)
    expected = reference(conn, sql, params, table)
    if isinstance(the_plan, StreamingPlan):
        got = run_streaming(conn, the_plan, params, table)
    else:
        got = run_general(conn, the_plan, params, table)
    assert got.comparable(ordered) == expected.comparable(ordered), (the_plan.sql.text, [s.input.text for s in the_plan.steps])
    return the_plan
