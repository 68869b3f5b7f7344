"""CREATE MODEL, SHOW MODEL and DROP MODEL through the proxy, end to end: real
Postgres, real drivers, real training in worker processes."""

from __future__ import annotations

import asyncio
import threading
import time

import asyncpg
import psycopg
import pytest

from tests.ml.conftest import wait_for_state
from tests.support.servers import psql


def connect(proxy, **kw) -> psycopg.Connection:
    return psycopg.connect(proxy.dsn(), autocommit=True, **kw)


def test_create_model_from_table_trains_to_ready(dataset_tables):
    notices: list[str] = []
    with connect(dataset_tables) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("DROP MODEL IF EXISTS cancer_model")
        cur = conn.execute("""
            CREATE MODEL cancer_model
            FROM breast_cancer
            TARGET diagnosis
            FUNCTION predict_cancer
            IAM_ROLE default
            SETTINGS (S3_BUCKET 'ignored-bucket', MAX_RUNTIME 8)""")
        assert cur.statusmessage == "CREATE MODEL"
        assert any("training in the background" in n for n in notices)
        info = wait_for_state(conn, "cancer_model")
        assert info["Model State"] == "READY", info
        assert info["Problem Type"] == "BINARY_CLASSIFICATION"
        assert info["Target Column"] == "diagnosis"
        assert info["Function Name"] == "predict_cancer"
        assert info["Function Parameters"].split() == ["id"] + [f"f{i}" for i in range(30)]
        assert float(info["validation:accuracy"]) > 0.85
        # progress and the outcome reached this session as NOTICEs
        conn.execute("SELECT 1")
        assert any("is READY" in n for n in notices), notices


def test_show_model_all_and_keys(dataset_tables):
    with connect(dataset_tables) as conn:
        conn.execute("DROP MODEL IF EXISTS iris_model")
        conn.execute("CREATE MODEL iris_model FROM (SELECT f0, f1, f2, f3, species FROM iris) "
                     "TARGET species FUNCTION predict_iris SETTINGS (MAX_RUNTIME 6)")
        rows = conn.execute("SHOW MODEL ALL").fetchall()
        assert ("public", "iris_model", "TRAINING") in rows or ("public", "iris_model", "READY") in rows
        keys = [k for k, _ in conn.execute("SHOW MODEL iris_model").fetchall()]
        for key in ("Model Name", "Schema Name", "Owner", "Creation Time", "Model State", "Query",
                    "Target Column", "Model Type", "Problem Type", "Objective", "Function Name",
                    "Function Parameters", "Function Parameter Types", "Max Runtime"):
            assert key in keys
        info = wait_for_state(conn, "iris_model")
        assert info["Model State"] == "READY", info
        assert info["Problem Type"] == "MULTICLASS_CLASSIFICATION"
        assert info["Query"] == "SELECT f0, f1, f2, f3, species FROM iris"


def test_from_query_with_join_and_where(dataset_tables):
    with connect(dataset_tables) as conn:
        conn.execute("DROP MODEL IF EXISTS churn_model")
        conn.execute("""
            CREATE MODEL churn_model
            FROM (SELECT c.age, p.plan, c.usage, c.signup, c.churned
                    FROM customers c JOIN plans p USING (plan_id)
                   WHERE NOT c.test_row)
            TARGET churned
            FUNCTION predict_churn(int, text, numeric, date)
            PROBLEM_TYPE BINARY_CLASSIFICATION
            OBJECTIVE 'F1'
            SETTINGS (MAX_RUNTIME 6)""")
        info = wait_for_state(conn, "churn_model")
        assert info["Model State"] == "READY", info
        assert info["Function Parameter Types"] == "int4 text numeric date"  # pg_type names, as Redshift
        assert info["Function Return Type"] == "boolean"
        assert info["Objective"] == "F1"
        assert int(info["Rows Used"]) <= 480
        sig = conn.execute("SELECT oid::regprocedure::text, pg_get_userbyid(proowner) FROM pg_proc "
                           "WHERE proname = 'predict_churn' AND pronamespace = 'public'::regnamespace").fetchone()
        assert sig == ("predict_churn(integer,text,numeric,date)", "postgres")


def test_model_function_outside_the_proxy_says_so(dataset_tables, upstream):
    with connect(dataset_tables) as conn:
        conn.execute("DROP MODEL IF EXISTS stub_model")
        conn.execute("CREATE MODEL stub_model FROM (SELECT f0, f1, species FROM iris) TARGET species "
                     "FUNCTION predict_stub SETTINGS (MAX_RUNTIME 5)")
    out = psql(upstream.host, upstream.port, "SELECT predict_stub(1.0, 2.0);", check=False)
    assert "can only be evaluated through mlproxy" in out.stderr


def test_errors_keep_the_session_in_sync(dataset_tables):
    with connect(dataset_tables) as conn:
        cases = [
            ("CREATE MODEL m1 FROM iris TARGET species FUNCTION f1 SETTINGS (MAX_RUNTIME -5)",
             psycopg.errors.InvalidParameterValue),
            ("CREATE MODEL m1 FROM iris TARGET species FUNCTION f1 MODEL_TYPE FOREST",
             psycopg.errors.InvalidParameterValue),
            ("CREATE MODEL m1 FROM iris TARGET FUNCTION f1", psycopg.errors.SyntaxError),
            ("CREATE MODEL m1 FROM (SELECT * FORM iris) TARGET species FUNCTION f1",
             psycopg.errors.SyntaxError),
            ("CREATE MODEL m1 FROM no_such_table TARGET species FUNCTION f1",
             psycopg.errors.UndefinedTable),
            ("CREATE MODEL m1 FROM (SELECT 1/0 AS x, 2 AS y) TARGET y FUNCTION f1",
             psycopg.errors.DivisionByZero),
            ("CREATE MODEL m1 FROM iris TARGET nope FUNCTION f1", psycopg.errors.UndefinedColumn),
            ("DROP MODEL no_such_model", psycopg.errors.UndefinedObject),
            ("SHOW MODEL no_such_model", psycopg.errors.UndefinedObject),
        ]
        for sql, error in cases:
            with pytest.raises(error) as info:
                conn.execute(sql)
            assert conn.execute("SELECT 'in sync'").fetchone() == ("in sync",), sql
            if error is psycopg.errors.SyntaxError:
                assert info.value.diag.statement_position is not None
        assert ("public", "m1") not in [r[:2] for r in conn.execute("SHOW MODEL ALL").fetchall()]
        conn.execute("BEGIN")
        with pytest.raises(psycopg.errors.ActiveSqlTransaction):
            conn.execute("CREATE MODEL m2 FROM iris TARGET species FUNCTION f2")
        conn.execute("ROLLBACK")


def test_syntax_error_position_points_at_the_token(dataset_tables):
    with connect(dataset_tables) as conn:
        sql = "SELECT 1; CREATE MODEL m3 FROM iris TARGETT species FUNCTION f3"
        with pytest.raises(psycopg.errors.SyntaxError) as info:
            conn.execute(sql)
        assert int(info.value.diag.statement_position) == sql.index("TARGETT") + 1


def test_duplicate_name_and_multi_statement_strings(dataset_tables):
    with connect(dataset_tables) as conn:
        conn.execute("DROP MODEL IF EXISTS dup_model")
        conn.execute("SELECT 1; CREATE MODEL dup_model FROM (SELECT f0, f1, species FROM iris) "
                     "TARGET species FUNCTION predict_dup SETTINGS (MAX_RUNTIME 5); SELECT 2")
        with pytest.raises(psycopg.errors.DuplicateObject):
            conn.execute("CREATE MODEL dup_model FROM iris TARGET species FUNCTION predict_dup2")
        cur = conn.execute("SHOW MODEL dup_model; SELECT 'after'")
        assert cur.fetchall()[0] == ("Model Name", "dup_model")
        assert cur.nextset() and cur.fetchall() == [("after",)]
        conn.execute("DROP MODEL dup_model")


def test_extended_protocol_with_asyncpg(dataset_tables):
    async def run():
        conn = await asyncpg.connect(dataset_tables.dsn())
        try:
            await conn.execute("DROP MODEL IF EXISTS ext_model")
            status = await conn.execute(
                "CREATE MODEL ext_model FROM (SELECT f0, f1, f2, species FROM iris) "
                "TARGET species FUNCTION predict_ext SETTINGS (MAX_RUNTIME 5)")
            assert status == "CREATE MODEL"
            rows = await conn.fetch("SHOW MODEL ext_model")
            assert rows[0]["Key"] == "Model Name" and rows[0]["Value"] == "ext_model"
            stmt = await conn.prepare("SHOW MODEL ALL")
            assert ("public", "ext_model") in [(r[0], r[1]) for r in await stmt.fetch()]
            with pytest.raises(asyncpg.exceptions.DuplicateObjectError):
                await conn.execute("CREATE MODEL ext_model FROM iris TARGET species FUNCTION g")
            assert await conn.fetchval("SELECT 40 + $1::int", 2) == 42
            assert await conn.execute("DROP MODEL ext_model") == "DROP MODEL"
            with pytest.raises(asyncpg.exceptions.UndefinedObjectError):
                await conn.execute("DROP MODEL ext_model")
            assert await conn.execute("DROP MODEL IF EXISTS ext_model") == "DROP MODEL"
        finally:
            await conn.close()
    asyncio.run(run())


def test_drop_during_training_stops_the_job(dataset_tables):
    with connect(dataset_tables) as conn:
        conn.execute("DROP MODEL IF EXISTS long_model")
        conn.execute("CREATE MODEL long_model FROM diabetes TARGET progression "
                     "FUNCTION predict_long SETTINGS (MAX_RUNTIME 600)")
        assert wait_for_state(conn, "long_model", timeout=2)["Model State"] == "TRAINING"
        conn.execute("DROP MODEL long_model")
        assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname = 'predict_long' "
                            "AND pronamespace = 'public'::regnamespace").fetchone() == (0,)
        assert "long_model" not in [r[1] for r in conn.execute("SHOW MODEL ALL").fetchall()]


def test_privileges_are_postgres_own(dataset_tables):
    with connect(dataset_tables) as admin:
        admin.execute("DROP ROLE IF EXISTS analyst")
        admin.execute("CREATE ROLE analyst LOGIN")
        admin.execute("GRANT CREATE ON SCHEMA public TO analyst")
        admin.execute("DROP MODEL IF EXISTS admins_model")
        admin.execute("CREATE MODEL admins_model FROM (SELECT f0, f1, species FROM iris) "
                      "TARGET species FUNCTION predict_admins SETTINGS (MAX_RUNTIME 5)")
    with psycopg.connect(dataset_tables.dsn(user="analyst"), autocommit=True) as analyst:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute("CREATE MODEL sneaky FROM iris TARGET species FUNCTION predict_sneaky")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute("DROP MODEL admins_model")
        assert analyst.execute("SELECT 1").fetchone() == (1,)
    with connect(dataset_tables) as admin:
        assert "admins_model" in [r[1] for r in admin.execute("SHOW MODEL ALL").fetchall()]
        admin.execute("DROP MODEL admins_model")
        admin.execute("REVOKE CREATE ON SCHEMA public FROM analyst")
        admin.execute("DROP ROLE analyst")


def test_concurrent_create_model_from_several_sessions(dataset_tables):
    errors: list[BaseException] = []

    def create(i: int) -> None:
        try:
            with connect(dataset_tables) as conn:
                conn.execute(f"DROP MODEL IF EXISTS conc_{i}")
                conn.execute(f"CREATE MODEL conc_{i} FROM (SELECT f0, f1, f2, species FROM iris) "
                             f"TARGET species FUNCTION predict_conc_{i} SETTINGS (MAX_RUNTIME 2)")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    with connect(dataset_tables) as conn:
        for i in range(4):
            assert wait_for_state(conn, f"conc_{i}")["Model State"] == "READY"
            conn.execute(f"DROP MODEL conc_{i}")


def test_sessions_racing_to_create_one_model_name_get_42710(dataset_tables):
    """Several sessions CREATE MODEL the same name at once: one wins, every other
    gets 42710 'already exists' (the race for the stubs was Postgres' own 23505)."""
    for round_ in range(3):
        outcomes: list[str] = []
        barrier = threading.Barrier(3)

        def create() -> None:
            with connect(dataset_tables) as conn:
                barrier.wait(10)
                try:
                    conn.execute("CREATE MODEL race_m FROM (SELECT f0, f1, species FROM iris) "
                                 "TARGET species FUNCTION predict_race SETTINGS (MAX_RUNTIME 5)")
                    outcomes.append("created")
                except psycopg.Error as exc:
                    outcomes.append(exc.sqlstate or repr(exc))

        threads = [threading.Thread(target=create) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        with connect(dataset_tables) as conn:
            conn.execute("DROP MODEL IF EXISTS race_m")
        assert sorted(outcomes) == ["42710", "42710", "created"], (round_, outcomes)


def test_the_outcome_notice_reaches_a_session_the_relay_pump_holds(dataset_tables):
    """The creating session goes quiet after CREATE MODEL (plain statements only, so
    the native relay holds it); the READY notice still reaches it, between requests."""
    notices: list[str] = []
    with connect(dataset_tables) as conn, connect(dataset_tables) as watcher:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        conn.execute("DROP MODEL IF EXISTS quiet_iris_model")
        conn.execute("CREATE MODEL quiet_iris_model FROM (SELECT f0, f1, f2, f3, species FROM iris) "
                     "TARGET species FUNCTION predict_quiet_iris SETTINGS (MAX_RUNTIME 4)")
        assert conn.execute("SELECT 1").fetchone() == (1,)  # relayed from here on
        try:
            info = wait_for_state(watcher, "quiet_iris_model")
            assert info["Model State"] == "READY", info
            deadline = time.monotonic() + 10
            while not any("is READY" in n for n in notices) and time.monotonic() < deadline:
                assert conn.execute("SELECT 2").fetchone() == (2,)
                time.sleep(0.1)
            assert any("quiet_iris_model" in n and "is READY" in n for n in notices), notices
        finally:
            watcher.execute("DROP MODEL IF EXISTS quiet_iris_model")
