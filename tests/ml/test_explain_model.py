"""EXPLAIN_MODEL and `<function>_explain` through the proxy.

EXPLAIN_MODEL returns the Shapley document the training worker stored (Redshift's
shape, one label per class for multiclass), Redshift's explanation state while a
model trains and for models without one (KMEANS); names are read as Postgres reads
a qualified name. `<function>_explain` gives per-row Shapley values, equal to
compiler.contributions on the same rows (summed to input columns) and adding up
with expected_value to the model's margin, in the select list and in WHERE, over
the simple and extended protocols; both follow the model's privileges.
"""

from __future__ import annotations

import asyncio
import json
import math

import asyncpg
import numpy as np
import psycopg
import psycopg.types.json
import psycopg.types.string
import pytest

from compiler.artifact import load
from compiler.explain import by_input, contributions
from compiler.preprocess import Preprocessor
from tests.ml.conftest import wait_for_state

FEATURES = ("f0", "f1", "f2", "f3")
ARGS = ", ".join(FEATURES)
MODELS = {
    "xe_bin": ("breast_cancer", "diagnosis",
               "MODEL_TYPE XGBOOST OBJECTIVE 'binary:logistic' AUTO OFF "
               "HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '15', MAX_DEPTH '3')"),
    "xe_multi": ("iris", "species",
                 "MODEL_TYPE XGBOOST OBJECTIVE 'multi:softmax' AUTO OFF "
                 "HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '10', MAX_DEPTH '3', NUM_CLASS '3')"),
    "xe_reg": ("diabetes", "progression",
               "MODEL_TYPE XGBOOST OBJECTIVE 'reg:squarederror' AUTO OFF "
               "HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '15', MAX_DEPTH '3')"),
    "xe_lin": ("diabetes", "progression", "MODEL_TYPE LINEAR_LEARNER PROBLEM_TYPE REGRESSION"),
}
GRANTEE, STRANGER = "xe_grantee", "xe_stranger"


@pytest.fixture(scope="module")
def explained(dataset_tables):
    """The four models, trained at once, plus a grantee and a stranger role."""
    with psycopg.connect(dataset_tables.dsn(), autocommit=True) as conn:
        for name, (table, target, clauses) in MODELS.items():
            conn.execute(f"DROP MODEL IF EXISTS {name}")
            conn.execute(f"CREATE MODEL {name} FROM (SELECT {ARGS}, {target} FROM {table}) "
                         f"TARGET {target} FUNCTION {name}_fn {clauses} SETTINGS (MAX_RUNTIME 60)")
        for name in MODELS:
            info = wait_for_state(conn, name)
            assert info["Model State"] == "READY", info
        for role in (GRANTEE, STRANGER):
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(f"DROP OWNED BY {role}")
                conn.execute(f"DROP ROLE {role}")
            conn.execute(f"CREATE ROLE {role} LOGIN")
            conn.execute(f"GRANT SELECT ON breast_cancer, iris, diabetes TO {role}")
        conn.execute(f"GRANT EXECUTE ON MODEL xe_bin TO {GRANTEE}")
    return dataset_tables


def _catalog(conn, name: str) -> tuple[dict, object, dict]:
    """The stored explanations, the artifact and the details of a model (as superuser)."""
    (doc, artifact, details), = conn.execute(
        "SELECT explanations, artifact, details FROM mlproxy.models WHERE model_name = %s", (name,)).fetchall()
    return doc, load(bytes(artifact)), details


def _expected_rows(conn, name: str, table: str, ids: list[int]) -> tuple[list[dict], np.ndarray]:
    """compiler.contributions on the rows `ids`, summed to input columns, as the
    per-row function answers them; and each row's outputs (margins)."""
    _, artifact, details = _catalog(conn, name)
    rows = conn.execute(f"SELECT {ARGS} FROM {table} WHERE id = ANY(%s) ORDER BY id", (ids,)).fetchall()
    columns = {f: np.array([r[i] for r in rows], dtype=np.float64) for i, f in enumerate(FEATURES)}
    X = Preprocessor(artifact.manifest["preprocessing"]).transform(columns)
    background = details.get("shap_background")
    phi = contributions(artifact, X, background=None if background is None else np.array([background]))
    names, per_input = by_input(phi, artifact.manifest["preprocessing"])
    margins = phi.sum(axis=2)
    out = []
    for i in range(len(rows)):
        if phi.shape[1] == 1:
            k = 0
        elif artifact.manifest["problem_type"] == "BINARY_CLASSIFICATION":
            k = 1
        else:
            k = int(margins[i].argmax())
        out.append({**{n: float(v) for n, v in zip(names, per_input[i, k])},
                    "expected_value": float(phi[i, k, -1])})
    return out, margins


def _close(got: dict, want: dict) -> bool:
    return got.keys() == want.keys() and all(math.isclose(got[k], want[k], rel_tol=1e-9, abs_tol=1e-12)
                                             for k in want)


def test_explain_model_returns_the_stored_document(explained):
    with psycopg.connect(explained.dsn(), autocommit=True) as conn:
        for name, labels in (("xe_bin", 1), ("xe_multi", 3), ("xe_reg", 1), ("xe_lin", 1)):
            stored, _, _ = _catalog(conn, name)
            (doc,), = conn.execute(f"SELECT explain_model('{name}')").fetchall()
            assert doc == stored
            assert doc["version"] == "1.0"
            shap = doc["explanations"]["kernel_shap"]
            assert sorted(shap) == [f"label{i}" for i in range(labels)], name
            for label in shap.values():
                assert sorted(label["global_shap_values"]) == list(FEATURES)
                assert all(v >= 0 for v in label["global_shap_values"].values())
                assert isinstance(label["expected_value"], float)
        # names as Postgres reads a qualified name: case folded unless quoted, and a
        # quoted name with a dot is one name (not schema "public", model "xe_bin")
        (doc,), = conn.execute("SELECT explain_model('public.xe_bin')").fetchall()
        for spelling in ('PUBLIC.XE_BIN', '"public"."xe_bin"', 'xe_bin', '  public . xe_bin '):
            assert conn.execute("SELECT explain_model(%s)", (spelling,)).fetchone()[0] == doc, spelling
        for spelling, state in (('"public.xe_bin"', "42704"), ('"XE_BIN"', "42704"),
                                ("a.b.c.d", "42601"), ('public."xe', "22023")):
            with pytest.raises(psycopg.Error) as err:
                conn.execute("SELECT explain_model(%s)", (spelling,))
            assert err.value.sqlstate == state, spelling


def test_explain_model_states_while_training_and_for_kmeans(explained):
    with psycopg.connect(explained.dsn(), autocommit=True) as conn:
        conn.execute("DROP MODEL IF EXISTS xe_clusters")
        conn.execute(f"CREATE MODEL xe_clusters FROM (SELECT {ARGS} FROM iris) FUNCTION xe_clusters_fn "
                     "AUTO OFF MODEL_TYPE KMEANS HYPERPARAMETERS DEFAULT EXCEPT (K '3') "
                     "SETTINGS (MAX_RUNTIME 30)")
        (training,), = conn.execute("SELECT explain_model('xe_clusters')").fetchall()
        assert training == {"explanations": "waiting for training job to complete"}
        assert wait_for_state(conn, "xe_clusters")["Model State"] == "READY"
        (done,), = conn.execute("SELECT explain_model('xe_clusters')").fetchall()
        assert done == {"explanations": "processing job failed"}
        # KMEANS has no target: no per-row explanation function either
        assert conn.execute("SELECT to_regproc('xe_clusters_fn_explain')").fetchone()[0] is None
        conn.execute("DROP MODEL xe_clusters")


def test_per_row_values_in_select_list_and_where(explained):
    with psycopg.connect(explained.dsn(), autocommit=True) as conn:
        for name, table in (("xe_bin", "breast_cancer"), ("xe_multi", "iris"), ("xe_reg", "diabetes"),
                            ("xe_lin", "diabetes")):
            got = conn.execute(f"SELECT id, {name}_fn_explain({ARGS}) FROM {table} ORDER BY id").fetchall()
            ids = [r[0] for r in got]
            want, margins = _expected_rows(conn, name, table, ids)
            for (_, value), expected in zip(got, want):
                assert _close(value, expected), (name, value, expected)
            sums = np.array([sum(v.values()) for _, v in got])
            if name == "xe_multi":  # the predicted class's margin, the highest
                assert np.allclose(sums, margins.max(axis=1), rtol=1e-6, atol=1e-6)
            else:
                assert np.allclose(sums, margins[:, -1], rtol=1e-6, atol=1e-6)
            # the general path: WHERE on the values, compared with the same rows
            cut = float(np.median([w["f2"] for w in want]))
            where = [r[0] for r in conn.execute(
                f"SELECT id FROM {table} WHERE ({name}_fn_explain({ARGS}) ->> 'f2')::float8 > %s ORDER BY id",
                (cut,))]
            assert where == [i for i, w in zip(ids, want) if w["f2"] > cut]
            assert 0 < len(where) < len(ids), name
        # the sum is the model's own margin: the regression's value, the log-odds of
        # the binary model's positive class
        pred = conn.execute(f"SELECT id, xe_reg_fn({ARGS}), xe_reg_fn_explain({ARGS}) FROM diabetes "
                            "ORDER BY id LIMIT 50").fetchall()
        for _, value, explanation in pred:
            assert math.isclose(sum(explanation.values()), value, rel_tol=1e-5, abs_tol=1e-4)
        _, artifact, _ = _catalog(conn, "xe_bin")
        positive = artifact.manifest["classes"][1]
        rows = conn.execute(f"SELECT xe_bin_fn_probabilities({ARGS}), xe_bin_fn_explain({ARGS}) "
                            "FROM breast_cancer ORDER BY id LIMIT 50").fetchall()
        for probabilities, explanation in rows:
            p = dict(zip(probabilities["labels"], probabilities["probabilities"]))[positive]
            assert math.isclose(1 / (1 + math.exp(-sum(explanation.values()))), p, rel_tol=1e-5, abs_tol=1e-6)
        # the text sent is the text Postgres prints for the jsonb (its key order)
        conn.adapters.register_loader("jsonb", psycopg.types.string.TextLoader)
        texts = [r[0] for r in conn.execute(f"SELECT xe_multi_fn_explain({ARGS}) FROM iris ORDER BY id LIMIT 5")]
        conn.adapters.register_loader("jsonb", psycopg.types.json.JsonbLoader)
        for text in texts:
            assert text.startswith('{"f0": ')
            assert conn.execute("SELECT %s::jsonb::text", (text,)).fetchone()[0] == text
        # EXPLAIN_MODEL's expected value is the per-row one (linear: the same means)
        (doc,), = conn.execute("SELECT explain_model('xe_lin')").fetchall()
        (row,), = conn.execute(f"SELECT xe_lin_fn_explain({ARGS}) FROM diabetes LIMIT 1").fetchall()
        assert math.isclose(row["expected_value"],
                            doc["explanations"]["kernel_shap"]["label0"]["expected_value"], rel_tol=1e-9)


def test_per_row_values_over_the_extended_protocol(explained):
    with psycopg.connect(explained.dsn(), autocommit=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM diabetes WHERE id <= 40 ORDER BY id")]
        want, _ = _expected_rows(conn, "xe_reg", "diabetes", ids)
        for binary in (False, True):
            for _ in range(3):  # prepared on the server after a few executions
                got = conn.execute(f"SELECT xe_reg_fn_explain({ARGS}) FROM diabetes WHERE id <= %s ORDER BY id",
                                   (40,), prepare=True, binary=binary).fetchall()
                assert all(_close(g, w) for (g,), w in zip(got, want))
            where = conn.execute(f"SELECT id FROM diabetes WHERE id <= %s AND "
                                 f"(xe_reg_fn_explain({ARGS}) ->> 'f2')::float8 > %s ORDER BY id",
                                 (40, 0.0), prepare=True, binary=binary).fetchall()
            assert [r[0] for r in where] == [i for i, w in zip(ids, want) if w["f2"] > 0]

    async def run() -> None:
        conn = await asyncpg.connect(explained.dsn())
        try:
            statement = await conn.prepare(
                f"SELECT xe_reg_fn_explain({ARGS}) AS e FROM diabetes WHERE id <= $1 ORDER BY id")
            for _ in range(2):
                got = [json.loads(r["e"]) for r in await statement.fetch(40)]
                assert all(_close(g, w) for g, w in zip(got, want))
        finally:
            await conn.close()

    asyncio.run(run())


def test_privileges_follow_the_model(explained):
    with psycopg.connect(explained.dsn(), autocommit=True) as conn:
        (owner_doc,), = conn.execute("SELECT explain_model('xe_bin')").fetchall()
        (owner_row,), = conn.execute(f"SELECT xe_bin_fn_explain({ARGS}) FROM breast_cancer "
                                     "ORDER BY id LIMIT 1").fetchall()
        # GRANT EXECUTE ON MODEL granted the explanation function with the others
        (granted,), = conn.execute(
            "SELECT has_function_privilege(%s, 'public.xe_bin_fn_explain(double precision, double precision,"
            " double precision, double precision)', 'EXECUTE')", (GRANTEE,)).fetchall()
        assert granted
    with psycopg.connect(explained.dsn(user=GRANTEE), autocommit=True) as conn:
        assert conn.execute("SELECT explain_model('public.xe_bin')").fetchone()[0] == owner_doc
        (row,), = conn.execute(f"SELECT xe_bin_fn_explain({ARGS}) FROM breast_cancer ORDER BY id LIMIT 1")
        assert row == owner_row
        with pytest.raises(psycopg.Error) as err:  # a model not granted to it
            conn.execute("SELECT explain_model('xe_reg')")
        assert err.value.sqlstate == "42501"
    with psycopg.connect(explained.dsn(user=STRANGER), autocommit=True) as conn:
        for sql in ("SELECT explain_model('xe_bin')",
                    f"SELECT xe_bin_fn_explain({ARGS}) FROM breast_cancer LIMIT 1",
                    f"SELECT id FROM breast_cancer WHERE (xe_bin_fn_explain({ARGS}) ->> 'f0')::float8 > 0"):
            with pytest.raises(psycopg.Error) as err:
                conn.execute(sql)
            assert err.value.sqlstate == "42501", sql
    with psycopg.connect(explained.dsn(), autocommit=True) as conn:
        conn.execute(f"REVOKE EXECUTE ON MODEL xe_bin FROM {GRANTEE}")
        try:
            with psycopg.connect(explained.dsn(user=GRANTEE), autocommit=True) as grantee:
                with pytest.raises(psycopg.Error) as err:
                    grantee.execute(f"SELECT xe_bin_fn_explain({ARGS}) FROM breast_cancer LIMIT 1")
                assert err.value.sqlstate == "42501"
        finally:
            conn.execute(f"GRANT EXECUTE ON MODEL xe_bin TO {GRANTEE}")


def test_drop_model_drops_the_explain_function(explained):
    with psycopg.connect(explained.dsn(), autocommit=True) as conn:
        conn.execute("DROP MODEL IF EXISTS xe_drop")
        conn.execute(f"CREATE MODEL xe_drop FROM (SELECT {ARGS}, progression FROM diabetes) TARGET progression "
                     "FUNCTION xe_drop_fn MODEL_TYPE LINEAR_LEARNER PROBLEM_TYPE REGRESSION "
                     "SETTINGS (MAX_RUNTIME 5)")
        assert conn.execute("SELECT to_regproc('xe_drop_fn_explain') IS NOT NULL").fetchone()[0]
        conn.execute("DROP MODEL xe_drop")
        assert conn.execute("SELECT to_regproc('xe_drop_fn_explain')").fetchone()[0] is None


def test_per_row_values_of_text_and_date_columns(explained):
    """One-hot and date-part features are summed back to their input column: one
    value per argument, and with expected_value they add up to the positive class's
    log-odds (a linear classifier here, on a text, a date and two numeric columns)."""
    args = "age, plan, usage, signup"
    with psycopg.connect(explained.dsn(), autocommit=True) as conn:
        conn.execute("DROP MODEL IF EXISTS xe_churn")
        conn.execute(f"CREATE MODEL xe_churn FROM (SELECT {args}, churned FROM customers JOIN plans USING (plan_id)) "
                     "TARGET churned FUNCTION xe_churn_fn MODEL_TYPE LINEAR_LEARNER SETTINGS (MAX_RUNTIME 5)")
        assert wait_for_state(conn, "xe_churn")["Model State"] == "READY"
        _, artifact, _ = _catalog(conn, "xe_churn")
        features = artifact.manifest["preprocessing"]["features"]
        assert len(features) > 4  # one-hot or date parts: more features than columns
        positive = artifact.manifest["classes"][1]
        rows = conn.execute(f"SELECT xe_churn_fn_probabilities({args}), xe_churn_fn_explain({args}) "
                            "FROM customers JOIN plans USING (plan_id) ORDER BY id LIMIT 100").fetchall()
        for probabilities, explanation in rows:
            assert sorted(explanation) == ["age", "expected_value", "plan", "signup", "usage"]
            p = dict(zip(probabilities["labels"], probabilities["probabilities"]))[positive]
            assert math.isclose(1 / (1 + math.exp(-sum(explanation.values()))), p, rel_tol=1e-6, abs_tol=1e-9)
        conn.execute("DROP MODEL xe_churn")
