"""Model calls in every place SQL allows an expression, under every protocol and
result format a driver can pick, compared with the offline predictor.

Select-list calls take the streaming path; calls anywhere else take the general
path (temporary tables). Both are served under the simple and the extended
protocol (prepared statements too: the general path computes the predictions at
every Bind, prepared_general.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import psycopg
import pytest

from tests.support.clients import run_async

from .clients import MODES, assert_usable, fetch

C = "predict_churn(age, plan, usage, signup, promo)"
P = "predict_price(rooms, area, city)"
S = "predict_species(f0, f1, f2, f3)"
PROBE = "SELECT id, predict_price(rooms, area, city) FROM houses WHERE id = 7"


@dataclass
class Expected:
    """Offline predictions by id, and the stored target where a test needs it."""

    churn: dict[int, bool]
    price: dict[int, float]
    species: dict[int, str]
    true_price: dict[int, float]


@dataclass(frozen=True)
class Placement:
    name: str
    sql: str  # `{table}`: the test's scratch table
    expect: Callable[[Expected], list[tuple]]
    streaming: bool = False
    setup: str | None = None  # run directly before the statement
    check: str | None = None  # for writes: read back directly, compared with expect


def _ordered(d: dict) -> list[tuple]:
    return sorted(d.items())


PLACEMENTS = [
    Placement("select_list", f"SELECT id, {C} FROM customers ORDER BY id",
              lambda e: _ordered(e.churn), streaming=True),
    Placement("select_list_first_regression", f"SELECT {P} AS predicted, id FROM houses ORDER BY id",
              lambda e: [(v, i) for i, v in _ordered(e.price)], streaming=True),
    Placement("select_list_multiclass", f"SELECT id, {S} FROM iris ORDER BY id",
              lambda e: _ordered(e.species), streaming=True),
    Placement("where", f"SELECT id FROM customers WHERE {C} ORDER BY id",
              lambda e: [(i,) for i, v in _ordered(e.churn) if v]),
    Placement("order_by", f"SELECT id FROM houses ORDER BY {P} DESC, id LIMIT 25",
              lambda e: [(i,) for i in sorted(e.price, key=lambda i: (-e.price[i], i))[:25]]),
    Placement("group_by_having",
              f"SELECT {S} AS s, count(*) FROM iris GROUP BY 1 HAVING count(*) > 1 ORDER BY 1",
              lambda e: sorted((s, n) for s, n in Counter(e.species.values()).items() if n > 1)),
    Placement("join_on",
              "SELECT c.id, l.label FROM customers c JOIN labels l "
              "ON l.value = predict_churn(c.age, c.plan, c.usage, c.signup, c.promo) ORDER BY c.id",
              lambda e: [(i, "leaves" if v else "stays") for i, v in _ordered(e.churn)]),
    Placement("scalar_subquery", f"SELECT (SELECT count(*) FROM customers WHERE {C}) AS leaving",
              lambda e: [(sum(e.churn.values()),)]),
    Placement("correlated_subquery",
              "SELECT h.id FROM houses h WHERE h.price > "
              "(SELECT predict_price(h.rooms, h.area, h.city)) ORDER BY h.id",
              lambda e: [(i,) for i in sorted(e.price) if e.true_price[i] > e.price[i]]),
    Placement("cte",
              f"WITH scored AS (SELECT id, {C} AS leaves FROM customers) "
              "SELECT id FROM scored WHERE leaves ORDER BY id",
              lambda e: [(i,) for i, v in _ordered(e.churn) if v]),
    Placement("union_all",
              f"SELECT id, {P} FROM houses WHERE id <= 250 UNION ALL "
              f"SELECT id, {P} FROM houses WHERE id > 250 ORDER BY 1",
              lambda e: _ordered(e.price)),
    Placement("larger_expression", f"SELECT id, {P} * 2 FROM houses ORDER BY id",
              lambda e: [(i, v * 2) for i, v in _ordered(e.price)]),
    Placement("insert_select", f"INSERT INTO {{table}} (id, p) SELECT id, {P} FROM houses",
              lambda e: _ordered(e.price),
              setup="CREATE TABLE {table} (id int, p double precision)",
              check="SELECT id, p FROM {table} ORDER BY id"),
    Placement("create_table_as", f"CREATE TABLE {{table}} AS SELECT id, {S} AS s FROM iris",
              lambda e: _ordered(e.species),
              check="SELECT id, s FROM {table} ORDER BY id"),
    Placement("update_set", f"UPDATE {{table}} SET p = {C}",
              lambda e: _ordered(e.churn),
              setup="CREATE TABLE {table} AS SELECT id, age, plan, usage, signup, promo, "
                    "NULL::boolean AS p FROM customers",
              check="SELECT id, p FROM {table} ORDER BY id"),
]
IDS = [p.name for p in PLACEMENTS]


@pytest.fixture(scope="module")
def expected(suite) -> Expected:
    with suite.direct() as d:
        return Expected(
            churn=suite.churn.by_id(d, "SELECT id, age, plan, usage, signup, promo FROM customers"),
            price=suite.price.by_id(d, "SELECT id, rooms, area, city FROM houses"),
            species=suite.species.by_id(d, "SELECT id, f0, f1, f2, f3 FROM iris"),
            true_price=dict(d.execute("SELECT id, price FROM houses").fetchall()))


def _written(suite, placement: Placement, table: str) -> list[tuple] | None:
    """What a write statement left in its table (None: the table does not exist)."""
    with suite.direct() as d:
        if d.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
            return None
        return d.execute(placement.check.format(table=table)).fetchall()


def _prepare(suite, placement: Placement, table: str) -> None:
    if placement.setup:
        with suite.direct() as d:
            d.execute(placement.setup.format(table=table))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("placement", PLACEMENTS, ids=IDS)
def test_psycopg(suite, expected, scratch_table, placement, mode):
    _prepare(suite, placement, scratch_table)
    sql = placement.sql.format(table=scratch_table)
    with suite.connect() as conn:
        rows = fetch(conn, sql, mode)
        if mode == "prepared-text" and not placement.check:  # again: Bind/Execute only
            rows = fetch(conn, sql, mode)
        got = _written(suite, placement, scratch_table) if placement.check else rows
        assert got == placement.expect(expected)
        assert_usable(conn, PROBE)


@pytest.mark.parametrize("placement", PLACEMENTS, ids=IDS)
def test_asyncpg(suite, expected, scratch_table, placement):
    """asyncpg: fetch() prepares a named statement (Parse/Describe/Sync) and runs it
    with Bind/Execute/Sync, binary results; the statement cache runs it again."""
    _prepare(suite, placement, scratch_table)
    sql = placement.sql.format(table=scratch_table)

    async def body():
        conn = await asyncpg.connect(suite.asyncpg_dsn())
        try:
            rows = [tuple(r) for r in await conn.fetch(sql)]
            if placement.check:
                assert _written(suite, placement, scratch_table) == placement.expect(expected)
            else:
                assert rows == placement.expect(expected)
                assert [tuple(r) for r in await conn.fetch(sql)] == rows  # from the cache
            assert await conn.fetchval("SELECT 41 + 1") == 42
            assert len(await conn.fetch(PROBE)) == 1
        finally:
            await conn.close()

    run_async(body())


def test_pipeline_of_plain_and_model_statements(suite, expected):
    """Several statements in one pipeline (one Sync), model calls among plain ones,
    as pgjdbc sends BEGIN + query when autocommit is off."""
    ids = [3, 4, 5]
    with suite.connect(autocommit=False) as conn:
        with conn.pipeline():
            plain = conn.cursor().execute("SELECT 1")
            first = conn.cursor().execute(f"SELECT id, {C} FROM customers WHERE id = ANY(%s) ORDER BY id",
                                          (ids,))
            middle = conn.cursor().execute("SELECT 2")
            second = conn.cursor().execute(f"SELECT id, {P} FROM houses WHERE id = ANY(%s) ORDER BY id",
                                           (ids,), binary=True)
        assert plain.fetchall() == [(1,)] and middle.fetchall() == [(2,)]
        assert first.fetchall() == [(i, expected.churn[i]) for i in ids]
        assert second.fetchall() == [(i, expected.price[i]) for i in ids]
        conn.rollback()
        assert_usable(conn, PROBE)
