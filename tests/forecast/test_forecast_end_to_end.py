"""A FORECAST model end to end: CREATE MODEL trains in the worker, SHOW MODEL tells
the forecast's settings and backtest metrics, FORECAST(m) returns the stored rows
through both protocols (psycopg simple and extended, asyncpg) and CREATE TABLE AS,
EXECUTE on the model decides who may read it, DROP MODEL removes it."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime

import asyncpg
import psycopg
import pytest

from tests.ml.conftest import wait_for_state

OWNER, GRANTEE, STRANGER = "fc_owner", "fc_grantee", "fc_stranger"
ITEMS, MONTHS, HORIZON = 3, 36, 4
CREATE = (f"CREATE MODEL fc_demand FROM (SELECT item, month, qty FROM fc_demand_data) TARGET qty "
          f"IAM_ROLE default MODEL_TYPE FORECAST OBJECTIVE 'MASE' "
          f"SETTINGS (S3_BUCKET 'b', HORIZON {HORIZON}, FREQUENCY 'M', MAX_RUNTIME 30)")


def truth(item: int, month: int) -> float:
    return 100 + 20 * item + 10 * math.sin(month * math.pi / 6)


@pytest.fixture(scope="module")
def model(forecast_proxy):
    with psycopg.connect(forecast_proxy.dsn(), autocommit=True) as su:
        su.execute("DROP MODEL IF EXISTS fc_demand")
        su.execute("DROP TABLE IF EXISTS fc_demand_data, fc_copy")
        for role in (OWNER, GRANTEE, STRANGER):
            su.execute(f"DROP OWNED BY {role}" if su.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() else "SELECT 1")
            su.execute(f"DROP ROLE IF EXISTS {role}")
            su.execute(f"CREATE ROLE {role} LOGIN")
        su.execute(f"GRANT CREATE ON SCHEMA public TO {OWNER}")
        su.execute(f"GRANT CREATE MODEL TO {OWNER}")
        su.execute(f"""CREATE TABLE fc_demand_data AS
            SELECT 'item' || i AS item, (date '2021-01-01' + make_interval(months => m))::date AS month,
                   round((100 + 20 * i + 10 * sin(m * pi() / 6))::numeric, 3) AS qty
              FROM generate_series(0, {ITEMS - 1}) i, generate_series(0, {MONTHS - 1}) m""")
        su.execute(f"GRANT SELECT ON fc_demand_data TO {OWNER}")
    with psycopg.connect(forecast_proxy.dsn(user=OWNER), autocommit=True) as owner:
        owner.execute(CREATE)
        info = wait_for_state(owner, "fc_demand", timeout=180)
    assert info["Model State"] == "READY", info
    return forecast_proxy


def check_rows(rows):
    assert len(rows) == ITEMS * HORIZON
    for item, time, p10, p50, p90 in rows:
        i = int(item.removeprefix("item"))
        step = (time.year - 2021) * 12 + time.month - 1
        assert MONTHS <= step < MONTHS + HORIZON and time.day == 1
        assert p10 <= p50 <= p90
        assert abs(p50 - truth(i, step)) < 3, (item, time, p50, truth(i, step))


def test_show_model_tells_the_forecast(model):
    with psycopg.connect(model.dsn(user=OWNER), autocommit=True) as conn:
        rows = conn.execute("SHOW MODEL fc_demand").fetchall()
    info = dict(rows)
    assert info["Model Type"] == "FORECAST" and info["Objective"] == "MASE"
    assert float(info["validation:MASE"]) < 1.5 and "validation:WAPE" in info, info
    assert any("HORIZON 4, FREQUENCY 'M', PERCENTILES '0.1,0.5,0.9'" in v for v in info.values()), info
    assert (info["Horizon"], info["Frequency"], info["Percentiles"]) == ("4", "M", "0.1,0.5,0.9"), info
    keys = [k for k, _ in rows]
    assert keys.index("Max Runtime") < keys.index("Horizon") < keys.index("Frequency") < keys.index("Percentiles")


@pytest.mark.parametrize("sql", ["SELECT FORECAST(fc_demand)", "SELECT * FROM FORECAST(public.fc_demand)",
                                 "SELECT f.* FROM forecast(fc_demand) AS f ORDER BY 1, 2"])
def test_forecast_through_psycopg_simple_and_extended(model, sql):
    with psycopg.connect(model.dsn(user=OWNER), autocommit=True) as conn:
        simple = conn.cursor()
        simple.execute(sql, prepare=False)
        assert [c.name for c in simple.description] == ["id", "time", "p10", "p50", "p90"]
        rows = simple.fetchall()
        check_rows(rows)
        assert isinstance(rows[0][1], datetime) and isinstance(rows[0][2], float)
        extended = conn.cursor()
        extended.execute(sql, prepare=True)  # Parse/Bind/Describe/Execute, a named statement
        assert [c.name for c in extended.description] == ["id", "time", "p10", "p50", "p90"]
        assert extended.fetchall() == rows
        assert conn.execute(sql, prepare=True).fetchall() == rows  # the prepared statement again


def test_forecast_through_asyncpg_and_create_table_as(model):
    async def run():
        conn = await asyncpg.connect(model.dsn(user=OWNER))
        try:
            rows = await conn.fetch("SELECT * FROM FORECAST(fc_demand) WHERE id = $1", "item1")
            assert len(rows) == HORIZON and list(rows[0].keys()) == ["id", "time", "p10", "p50", "p90"]
            await conn.execute("DROP TABLE IF EXISTS fc_copy")
            await conn.execute("CREATE TABLE fc_copy AS SELECT FORECAST(fc_demand)")
            copied = await conn.fetch("SELECT id, time, p10, p50, p90 FROM fc_copy ORDER BY 1, 2")
            check_rows([tuple(r) for r in copied])
            types = await conn.fetch("SELECT format_type(atttypid, NULL) FROM pg_attribute "
                                     "WHERE attrelid = 'fc_copy'::regclass AND attnum > 0 ORDER BY attnum")
            assert [t[0] for t in types] == ["text", "timestamp without time zone"] + ["double precision"] * 3
        finally:
            await conn.close()

    asyncio.run(run())


def test_execute_on_the_model_decides_who_reads_it(model):
    with psycopg.connect(model.dsn(user=STRANGER), autocommit=True) as stranger:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            stranger.execute("SELECT FORECAST(fc_demand)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the catalog function directly
            stranger.execute("SELECT * FROM mlproxy.forecast('public', 'fc_demand')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            stranger.execute("SELECT artifact FROM mlproxy.models")
        assert stranger.execute("SELECT count(*) FROM mlproxy.visible_forecasts").fetchone() == (0,)
    with psycopg.connect(model.dsn(user=OWNER), autocommit=True) as owner:
        owner.execute(f"GRANT EXECUTE ON MODEL fc_demand TO {GRANTEE}")
    with psycopg.connect(model.dsn(user=GRANTEE), autocommit=True) as grantee:
        check_rows(grantee.execute("SELECT FORECAST(fc_demand)").fetchall())
    with psycopg.connect(model.dsn(user=OWNER), autocommit=True) as owner:
        owner.execute(f"REVOKE EXECUTE ON MODEL fc_demand FROM {GRANTEE}")
    with psycopg.connect(model.dsn(user=GRANTEE), autocommit=True) as grantee:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            grantee.execute("SELECT FORECAST(fc_demand)")


def test_errors_keep_the_session(model):
    with psycopg.connect(model.dsn(user=OWNER), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("SELECT FORECAST(no_such_model)")
        with pytest.raises(psycopg.errors.UndefinedColumn):  # not a FORECAST call: the server's
            conn.execute("SELECT 1, FORECAST(fc_demand)")
        conn.execute("CREATE OR REPLACE FUNCTION forecast(x int) RETURNS int LANGUAGE sql AS 'SELECT x + 1'")
        assert conn.execute("SELECT forecast(g) FROM generate_series(1, 2) g").fetchall() == [(2,), (3,)]
        conn.execute("DROP FUNCTION forecast(int)")
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_drop_model_removes_the_forecast(model):
    with psycopg.connect(model.dsn(user=OWNER), autocommit=True) as owner:
        owner.execute("DROP MODEL fc_demand")
        with pytest.raises(psycopg.errors.UndefinedObject):
            owner.execute("SELECT FORECAST(fc_demand)")
        assert owner.execute("SELECT to_regprocedure('public.fc_demand_forecast()')").fetchone() == (None,)


def test_replicas_and_restart_read_the_same_forecast(fresh_proxy, tmp_path):
    """The forecast lives in the catalog: a second proxy (a replica) reads the model
    created through the first, and still does once the first has stopped."""
    first = fresh_proxy("--data-dir", str(tmp_path / "a"), "--workers", "1")
    second = fresh_proxy("--data-dir", str(tmp_path / "b"), "--workers", "1")
    with psycopg.connect(first.dsn(), autocommit=True) as conn:
        conn.execute("DROP MODEL IF EXISTS fc_replica")
        conn.execute("DROP TABLE IF EXISTS fc_replica_data")
        conn.execute("""CREATE TABLE fc_replica_data AS
            SELECT 'item' || i AS item, (date '2021-01-01' + make_interval(months => m))::date AS month,
                   (100 + 20 * i + 10 * sin(m * pi() / 6))::float8 AS qty
              FROM generate_series(0, 1) i, generate_series(0, 35) m""")
        conn.execute("CREATE MODEL fc_replica FROM fc_replica_data TARGET qty MODEL_TYPE FORECAST "
                     "SETTINGS (HORIZON 3, FREQUENCY 'M', PERCENTILES 'mean', MAX_RUNTIME 20)")
        assert wait_for_state(conn, "fc_replica", timeout=180)["Model State"] == "READY"
        expected = conn.execute("SELECT * FROM FORECAST(fc_replica) ORDER BY 1, 2").fetchall()
    assert len(expected) == 6 and all(abs(r[2] - truth(int(r[0][-1]), 36 + n % 3)) < 3
                                      for n, r in enumerate(expected))
    first.stop()
    with psycopg.connect(second.dsn(), autocommit=True) as conn:
        cur = conn.execute("SELECT * FROM FORECAST(fc_replica) ORDER BY 1, 2")
        assert [c.name for c in cur.description] == ["id", "time", "mean"] and cur.fetchall() == expected
        conn.execute("DROP MODEL fc_replica")


def test_related_series_over_the_horizon_feed_the_global_model(model):
    """Columns after the target are related time series; rows after an item's last
    target give their future values (the target NULL there), so the global model
    forecasts the promo months; the target need not be the third column; SHOW
    MODEL's keys tell a grantee the forecast's settings too."""
    with psycopg.connect(model.dsn(user=OWNER), autocommit=True) as owner:
        owner.execute("DROP MODEL IF EXISTS fc_promo")
        owner.execute("DROP TABLE IF EXISTS fc_promo_data")
        owner.execute("""CREATE TABLE fc_promo_data AS
            SELECT 'item' || i AS item, (date '2021-01-01' + make_interval(months => m))::date AS month,
                   ((m * m + 3 * i) % 7 = 0)::int AS promo,
                   CASE WHEN m < 36 THEN 100 + 20 * i + 40 * ((m * m + 3 * i) % 7 = 0)::int
                                         + 3 * sin(m * pi() / 6) END AS qty
              FROM generate_series(0, 3) i, generate_series(0, 39) m""")
        owner.execute("CREATE MODEL fc_promo FROM fc_promo_data TARGET qty MODEL_TYPE FORECAST OBJECTIVE 'WAPE' "
                      "SETTINGS (HORIZON 4, FREQUENCY 'M', PERCENTILES '0.5,mean', MAX_RUNTIME 60)")
        info = wait_for_state(owner, "fc_promo", timeout=180)
        assert info["Model State"] == "READY", info
        report = [v for v in info.values() if isinstance(v, str)]
        assert any('GlobalXGBoost uses the related time series "promo"' in v for v in report), info
        assert any("chose GlobalXGBoost" in v for v in report), report  # either variant
        rows = owner.execute("SELECT f.id, f.time, f.p50, f.mean, d.promo, 100 + 20 * right(f.id, 1)::int "
                             "+ 40 * d.promo + 3 * sin(extract(month FROM f.time - interval '1 month') "
                             "* pi() / 6) FROM FORECAST(fc_promo) AS f JOIN fc_promo_data d "
                             "ON d.item = f.id AND d.month = f.time ORDER BY 1, 2").fetchall()
        assert len(rows) == 16 and any(r[4] for r in rows)
        for item, time, p50, mean, promo, truth in rows:
            assert p50 == mean and abs(p50 - truth) < (12 if promo else 30), (item, time, p50, truth)
        owner.execute(f"GRANT EXECUTE ON MODEL fc_promo TO {GRANTEE}")
    with psycopg.connect(model.dsn(user=GRANTEE), autocommit=True) as grantee:
        shown = dict(grantee.execute("SHOW MODEL fc_promo").fetchall())
        assert (shown["Horizon"], shown["Frequency"], shown["Percentiles"]) == ("4", "M", "0.5,mean")
    with psycopg.connect(model.dsn(user=OWNER), autocommit=True) as owner:
        owner.execute("DROP MODEL fc_promo")
