"""SHOW MODEL in full and Redshift's ML system views, as each role sees them.

Roles: the model's owner (a plain login role with CREATE MODEL), a grantee with
EXECUTE on the model, a member of a role that has EXECUTE, and a stranger. As in
Redshift, GRANT EXECUTE ON MODEL is what makes a model visible to others (a new
model is private).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import asyncpg
import psycopg
import pytest

from proxy.ml_commands.system_views import qualify, view_references
from tests.inference.sql.clients import MODES, assert_usable, fetch
from tests.ml.conftest import wait_for_state

OWNER, GRANTEE, TEAM, MEMBER, STRANGER = "h6_owner", "h6_grantee", "h6_team", "h6_member", "h6_stranger"
OWNER_ONLY = {"IAM Role", "S3 Bucket", "KMS Key", "Estimated Cost", "Table", "Query"}
CREATE_READY = """
    CREATE MODEL h6_ready
    FROM h6_cancer
    TARGET diagnosis
    FUNCTION h6_predict
    IAM_ROLE 'arn:aws:iam::123456789012:role/h6'
    AUTO OFF
    MODEL_TYPE XGBOOST
    OBJECTIVE 'binary:logistic'
    HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '10', MAX_DEPTH '3')
    SETTINGS (S3_BUCKET 'h6-bucket', KMS_KEY_ID 'h6-key', MAX_RUNTIME 20)"""


def connect(proxy, user: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(proxy.dsn(user=user), autocommit=True)


def show(conn, name: str) -> list[tuple[str, str]]:
    return conn.execute(f"SHOW MODEL {name}").fetchall()


@pytest.fixture(scope="module")
def roles(dataset_tables):
    with connect(dataset_tables) as admin:
        for role, login in ((OWNER, True), (GRANTEE, True), (TEAM, False), (MEMBER, True),
                            (STRANGER, True)):
            admin.execute(f"DO $$BEGIN CREATE ROLE {role} {'LOGIN' if login else 'NOLOGIN'}; "
                          "EXCEPTION WHEN duplicate_object THEN NULL; END$$")
        admin.execute(f"GRANT {TEAM} TO {MEMBER}")
        admin.execute(f"GRANT CREATE ON SCHEMA public TO {OWNER}")
        admin.execute(f"GRANT CREATE MODEL TO {OWNER}")
        admin.execute("DROP TABLE IF EXISTS h6_cancer, h6_dates")
        admin.execute("CREATE TABLE h6_cancer AS SELECT f0, f1, f2, diagnosis FROM breast_cancer")
        admin.execute("CREATE TABLE h6_dates AS SELECT f0, date '2020-01-01' + (id % 2) AS d FROM iris")
        admin.execute(f"GRANT SELECT ON h6_cancer, h6_dates, diabetes TO {OWNER}")
    return dataset_tables


@pytest.fixture(scope="module")
def ready(roles):
    with connect(roles, OWNER) as owner:
        owner.execute("DROP MODEL IF EXISTS h6_ready")
        owner.execute(CREATE_READY)
        info = wait_for_state(owner, "h6_ready")
        assert info["Model State"] == "READY", info
        # private, then shared with one user and one role (see the module docstring)
        owner.execute(f"GRANT EXECUTE ON MODEL h6_ready TO {GRANTEE}, ROLE {TEAM}")
    return roles


def test_owner_sees_every_key_in_redshift_order(ready):
    with connect(ready, OWNER) as owner:
        rows = show(owner, "h6_ready")
    keys = [k for k, _ in rows]
    info = dict(rows)
    metrics = [k for k in keys if k.startswith("validation:")]
    assert metrics and keys[5:5 + len(metrics)] == metrics
    redshift = ["Model Name", "Schema Name", "Owner", "Creation Time", "Model State", *metrics,
                "Estimated Cost", "", "TRAINING DATA:", "Table", "Target Column", "",
                "PARAMETERS:", "Model Type", "Problem Type", "Objective", "Training Job Name",
                "Function Name", "Function Parameters", "Function Parameter Types", "IAM Role",
                "S3 Bucket", "KMS Key", "Max Runtime", "", "HYPERPARAMETERS:", "num_round",
                "max_depth"]
    assert keys[:len(redshift)] == redshift
    mlproxy = ["", "MLPROXY:", "Function Return Type", "Winner Hyperparameters", "Rows Used",
               "Sampling", "Training Time", "", "PREPROCESSING:", "f0", "f1", "f2", "",
               "LEADERBOARD:"]
    assert keys[len(redshift):len(redshift) + len(mlproxy)] == mlproxy
    rest = keys[len(redshift) + len(mlproxy):]
    board = rest[:rest.index("")]
    assert board == [f"#{i}" for i in range(1, len(board) + 1)] and 1 <= len(board) <= 5
    report = rest[len(board):]
    assert report[:2] == ["", "AUTOML REPORT:"] and len(report) > 3
    assert report[2:] == [str(i) for i in range(1, len(report) - 1)]
    # the statement's own words, not their canonical meaning
    assert (info["Model Name"], info["Schema Name"], info["Owner"]) == ("h6_ready", "public", OWNER)
    assert (info["Model Type"], info["Objective"]) == ("XGBOOST", "binary:logistic")
    assert info["Problem Type"] == "BINARY_CLASSIFICATION"
    assert (info["num_round"], info["max_depth"]) == ("10", "3")
    assert (info["IAM Role"], info["S3 Bucket"], info["KMS Key"]) == (
        "arn:aws:iam::123456789012:role/h6", "h6-bucket", "h6-key")
    assert (info["Table"], info["Target Column"], info["Max Runtime"]) == ("h6_cancer", "diagnosis", "20")
    assert info["Function Parameters"] == "f0 f1 f2"
    assert info["Function Parameter Types"] == "float8 float8 float8"
    assert info["Function Return Type"] == "text"
    assert info["Training Job Name"].startswith("mlproxy-")
    assert info["f0"].startswith("numeric")
    assert info["Sampling"] == "none: all 569 rows"
    assert int(info["Rows Used"]) == 569
    assert info["Training Time"].endswith(" s")
    assert "xgboost" in info["#1"].lower() and "AUC" in info["#1"]
    assert any("winner" in value for key, value in rows[len(redshift) + len(mlproxy):])
    assert info["Winner Hyperparameters"].startswith("{")
    assert 0.5 < float(info["validation:auc"]) <= 1.0


@pytest.mark.parametrize("user", [GRANTEE, MEMBER])
def test_grantee_sees_the_model_without_owner_only_keys(ready, user):
    with connect(ready, OWNER) as owner:
        owner_keys = [k for k, _ in show(owner, "h6_ready")]
    with connect(ready, user) as conn:
        rows = show(conn, "h6_ready")
        keys = [k for k, _ in rows]
        assert keys == [k for k in owner_keys if k not in OWNER_ONLY]
        assert dict(rows)["Objective"] == "binary:logistic"
        shap = conn.execute("SELECT explain_model('h6_ready')").fetchone()[0]
        assert set(shap["explanations"]["kernel_shap"]["label0"]["global_shap_values"]) == {"f0", "f1", "f2"}
        assert ("public", "h6_ready", "READY") in conn.execute("SHOW MODEL ALL").fetchall()
        # nor can the catalog be read around SHOW MODEL
        for column in ("source_query", "options", "create_statement"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT {column} FROM mlproxy.models")
        options, query = conn.execute("SELECT options, source_query FROM mlproxy.visible_models "
                                      "WHERE model_name = 'h6_ready'").fetchone()
        assert query is None and "iam_role" not in options and "settings" not in options
        assert "from_table" not in options["given"]


def test_stranger_cannot_see_the_model(ready):
    with connect(ready, STRANGER) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
            show(conn, "h6_ready")
        assert err.value.diag.message_primary == "permission denied for model h6_ready"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            show(conn, "public.h6_ready")
        with pytest.raises(psycopg.errors.UndefinedObject):
            show(conn, "h6_no_such_model")
        assert "h6_ready" not in [r[1] for r in conn.execute("SHOW MODEL ALL").fetchall()]
        assert conn.execute("SELECT count(*) FROM mlproxy.visible_models").fetchone() == (0,)
        for column in ("metrics", "state", "source_query"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT {column} FROM mlproxy.models")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT explain_model('h6_ready')")
        assert_usable(conn)


def test_set_role_decides_what_show_model_shows(ready):
    with connect(ready) as admin:  # a superuser: sees everything
        assert "IAM Role" in dict(show(admin, "h6_ready"))
        admin.execute(f"SET ROLE {STRANGER}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            show(admin, "h6_ready")
        admin.execute(f"SET ROLE {MEMBER}")
        keys = {k for k, _ in show(admin, "h6_ready")}
        assert "Model Name" in keys and not keys & OWNER_ONLY
        admin.execute(f"SET ROLE {OWNER}")
        assert "IAM Role" in dict(show(admin, "h6_ready"))
        admin.execute("RESET ROLE")


def test_training_model_shows_progress_naming_the_metric(roles):
    with connect(roles, OWNER) as owner:
        owner.execute("DROP MODEL IF EXISTS h6_long")
        owner.execute("CREATE MODEL h6_long FROM diabetes TARGET progression "
                      "FUNCTION h6_predict_long SETTINGS (MAX_RUNTIME 600)")
        try:
            deadline = time.monotonic() + 60
            while True:
                info = dict(show(owner, "h6_long"))
                assert info["Model State"] == "TRAINING"
                if "best MSE" in info["Training Progress"] or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert "best MSE" in info["Training Progress"], info["Training Progress"]
            keys = [k for k, _ in show(owner, "h6_long")]
            assert keys[:6] == ["Model Name", "Schema Name", "Owner", "Creation Time",
                                "Model State", ""]
            assert not any(k.startswith("validation:") for k in keys) and "Estimated Cost" not in keys
            assert info["Table"] == "diabetes" and info["Max Runtime"] == "600"
            assert info["Model Type"] == "AUTO" and info["AutoML Job Name"].startswith("mlproxy-")
        finally:
            owner.execute("DROP MODEL h6_long")


def test_failed_model_shows_its_reason(roles):
    # What CREATE MODEL can know is refused up front; a worker killed mid-job (as by
    # the OOM killer) is what still ends FAILED.
    with connect(roles, OWNER) as owner:
        owner.execute("DROP MODEL IF EXISTS h6_failed")
        owner.execute("CREATE MODEL h6_failed FROM (SELECT f0, f1, diagnosis FROM h6_cancer) "
                      "TARGET diagnosis FUNCTION h6_predict_failed SETTINGS (MAX_RUNTIME 120)")
        model_id = owner.execute("SELECT id FROM mlproxy.visible_models "
                                 "WHERE model_name = 'h6_failed'").fetchone()[0]
        started = f"training started model=public.h6_failed id={model_id} "
        assert roles.wait_for_log(started, timeout=60)
        pid = re.search(re.escape(started) + r"database=\S+ pid=(\d+)", roles.read_log()).group(1)
        os.kill(int(pid), signal.SIGKILL)
        info = wait_for_state(owner, "h6_failed", timeout=90)
        keys = [k for k, _ in show(owner, "h6_failed")]
        owner.execute("DROP MODEL h6_failed")
    assert info["Model State"] == "FAILED"
    assert keys[4:6] == ["Model State", "Failure Reason"]
    assert "ended unexpectedly" in info["Failure Reason"]
    assert not any(k.startswith("validation:") for k in keys)


def test_kmeans_echoes_its_clauses(roles):
    with connect(roles, OWNER) as owner:
        owner.execute("DROP MODEL IF EXISTS h6_kmeans")
        owner.execute("CREATE MODEL h6_kmeans FROM (SELECT f0, f1 FROM h6_cancer) FUNCTION h6_cluster "
                      "AUTO OFF MODEL_TYPE kmeans PREPROCESSORS 'none' "
                      "HYPERPARAMETERS DEFAULT EXCEPT (K '3') SETTINGS (MAX_RUNTIME 10)")
        info = wait_for_state(owner, "h6_kmeans")
        keys = [k for k, _ in show(owner, "h6_kmeans")]
        owner.execute("DROP MODEL h6_kmeans")
    assert info["Model State"] == "READY", info
    assert (info["Model Type"], info["Preprocessors"], info["k"]) == ("KMEANS", "none", "3")
    assert info["Query"] == "SELECT f0, f1 FROM h6_cancer" and info["Target Column"] == ""
    assert "Training Job Name" in keys and "LEADERBOARD:" not in keys
    assert keys.index("Preprocessors") == keys.index("Max Runtime") + 1
    assert keys[keys.index("HYPERPARAMETERS:") + 1] == "k"


def test_show_model_all_lists_what_each_role_may_see(ready):
    expected = {"postgres": True, OWNER: True, GRANTEE: True, MEMBER: True, STRANGER: False}
    for user, visible in expected.items():
        with connect(ready, user) as conn:
            cur = conn.execute("SHOW MODEL ALL")
            assert [c.name for c in cur.description] == ["Schema Name", "Model Name", "Model State"]
            assert (("public", "h6_ready") in [r[:2] for r in cur.fetchall()]) is visible, user


INFO = "SELECT trim(model_name), trim(model_state) FROM svv_ml_model_info WHERE model_name = 'h6_ready'"
STV = "SELECT trim(user_name), life_cycle FROM STV_ML_MODEL_INFO WHERE trim(model_name) = 'h6_ready'"
PRIVS = ("SELECT identity_name, identity_type, privilege_type, admin_option "
         "FROM Svv_Ml_Model_Privileges WHERE model_name = 'h6_ready' ORDER BY identity_name")
JOIN = ("SELECT trim(i.model_name), p.identity_name FROM svv_ml_model_info i "
        "JOIN svv_ml_model_privileges p ON p.namespace_name = trim(i.schema_name) "
        "AND p.model_name = trim(i.model_name) WHERE i.model_name = 'h6_ready' ORDER BY 2")


@pytest.mark.parametrize("mode", MODES)
def test_system_views_per_role(ready, mode):
    grants = [(GRANTEE, "user", "EXECUTE", False), (TEAM, "role", "EXECUTE", False)]
    expected = {
        OWNER: ([("h6_ready", "Model is Ready")], grants),
        GRANTEE: ([("h6_ready", "Model is Ready")], grants[:1]),
        MEMBER: ([("h6_ready", "Model is Ready")], grants[1:]),
        STRANGER: ([], []),
    }
    for user, (info, privileges) in expected.items():
        with connect(ready, user) as conn:
            assert fetch(conn, INFO, mode) == info, user
            assert fetch(conn, STV, mode) == [(OWNER, "ACTIVE" + " " * 14)] * len(info), user
            assert fetch(conn, PRIVS, mode) == privileges, user
            assert fetch(conn, JOIN, mode) == [("h6_ready", g[0]) for g in privileges], user
            assert_usable(conn)


@pytest.mark.parametrize("mode", MODES)
def test_system_view_in_a_statement_that_calls_the_model(ready, mode):
    streaming = ("SELECT h6_predict(c.f0, c.f1, c.f2) IS NOT NULL, trim(i.model_state) "
                 "FROM (SELECT * FROM h6_cancer LIMIT 2) c CROSS JOIN svv_ml_model_info i "
                 "WHERE i.model_name = 'h6_ready'")
    general = ("SELECT count(*) FROM h6_cancer c JOIN SVV_ML_MODEL_INFO i ON i.model_name = 'h6_ready' "
               "WHERE h6_predict(c.f0, c.f1, c.f2) IN ('0', '1', 'benign', 'malignant')")
    with connect(ready, OWNER) as owner:
        assert fetch(owner, streaming, mode) == [(True, "Model is Ready")] * 2
        assert fetch(owner, general, mode) == [(569,)]
        assert_usable(owner)


def test_system_views_with_asyncpg(ready):
    async def run(user: str):
        conn = await asyncpg.connect(ready.dsn(user=user))
        try:
            stmt = await conn.prepare("SELECT * FROM svv_ml_model_info WHERE model_name = $1")
            types = [(a.name, a.type.name) for a in stmt.get_attributes()]
            rows = await stmt.fetch("h6_ready")
            privileges = await conn.fetch("SELECT * FROM svv_ml_model_privileges")
            stv = await conn.fetch("select * from stv_ml_model_info")  # a simple Query
            try:  # SHOW MODEL, prepared
                shown = dict(await (await conn.prepare("SHOW MODEL h6_ready")).fetch())
            except asyncpg.exceptions.InsufficientPrivilegeError:
                shown = None
            return types, rows, privileges, stv, shown
        finally:
            await conn.close()

    types, rows, privileges, stv, shown = asyncio.run(run(OWNER))
    assert shown["IAM Role"] == "arn:aws:iam::123456789012:role/h6"
    _, _, _, _, shown = asyncio.run(run(GRANTEE))
    assert shown["Model State"] == "READY" and not shown.keys() & OWNER_ONLY
    assert types == [("database_name", "bpchar"), ("schema_name", "bpchar"), ("user_name", "bpchar"),
                     ("model_name", "bpchar"), ("life_cycle", "bpchar"), ("is_refreshable", "int4"),
                     ("model_state", "bpchar")]
    assert [(r["model_name"].strip(), r["is_refreshable"]) for r in rows] == [("h6_ready", 1)]
    assert {(r["identity_name"], r["identity_type"], r["model_version"]) for r in privileges} >= {
        (GRANTEE, "user", 1), (TEAM, "role", 1)}
    assert "h6_ready" in [r["model_name"].strip() for r in stv]
    _, rows, privileges, stv, shown = asyncio.run(run(STRANGER))
    assert shown is None
    assert rows == [] and [r for r in privileges if r["model_name"] == "h6_ready"] == []
    assert "h6_ready" not in [r["model_name"].strip() for r in stv]


def test_own_relation_of_that_name_wins_and_other_text_is_left_alone(ready):
    with connect(ready) as admin:
        admin.execute("DROP SCHEMA IF EXISTS h6_shadow CASCADE")
        admin.execute("CREATE SCHEMA h6_shadow")
        admin.execute("CREATE TABLE h6_shadow.svv_ml_model_info (x int)")
        admin.execute("INSERT INTO h6_shadow.svv_ml_model_info VALUES (42)")
        try:
            admin.execute("SET search_path = h6_shadow, public")
            assert admin.execute("SELECT * FROM svv_ml_model_info").fetchall() == [(42,)]
            admin.execute("RESET search_path")
            assert admin.execute("WITH svv_ml_model_info AS (SELECT 7 AS x) "
                                 "SELECT x FROM svv_ml_model_info").fetchall() == [(7,)]
            assert admin.execute("SELECT 'svv_ml_model_info', x AS svv_ml_model_info "
                                 "FROM h6_shadow.svv_ml_model_info").fetchall() == [
                ("svv_ml_model_info", 42)]
            sql = "SELECT 1 FROM svv_ml_model_info WHERE no_such_column = 1"
            with pytest.raises(psycopg.errors.UndefinedColumn) as err:
                admin.execute(sql)
            assert int(err.value.diag.statement_position) == sql.index("no_such_column") + 1
            assert_usable(admin)
        finally:
            admin.execute("DROP SCHEMA h6_shadow CASCADE")


@pytest.mark.parametrize("sql,qualified", [
    ("SELECT * FROM svv_ml_model_info", "SELECT * FROM mlproxy.svv_ml_model_info"),
    ("select * from SVV_ML_MODEL_INFO i join stv_ml_model_info s using (model_name)",
     "select * from mlproxy.SVV_ML_MODEL_INFO i join mlproxy.stv_ml_model_info s using (model_name)"),
    ("SELECT 'é', (SELECT count(*) FROM svv_ml_model_privileges) FROM t",
     "SELECT 'é', (SELECT count(*) FROM mlproxy.svv_ml_model_privileges) FROM t"),
    ("UPDATE t SET x = 1 FROM svv_ml_model_info i WHERE t.y = i.model_name; SELECT 1",
     "UPDATE t SET x = 1 FROM mlproxy.svv_ml_model_info i WHERE t.y = i.model_name; SELECT 1"),
    # left alone: qualified, quoted other case, a CTE, a target, a column, a string, bad SQL
    ("SELECT * FROM pg_catalog.svv_ml_model_info", None),
    ('SELECT * FROM "SVV_ML_MODEL_INFO"', None),
    ("WITH svv_ml_model_info AS (SELECT 1) SELECT * FROM svv_ml_model_info", None),
    ("INSERT INTO svv_ml_model_info VALUES (1)", None),
    ("CREATE TABLE svv_ml_model_info (x int)", None),
    ("SELECT svv_ml_model_info, 'stv_ml_model_info' FROM t", None),
    ("SELECT * FROM svv_ml_model_info WHERE", None),
])
def test_view_references_are_relations_in_from_lists(sql, qualified):
    refs = view_references(sql)
    assert (qualify(sql, [offset for offset, _ in refs]) if refs else None) == qualified
