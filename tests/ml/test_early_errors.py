"""Everything CREATE MODEL can know when it is issued is an error then (issue 14,
"errors up front"): bad hyperparameters, training data no model can learn from or be
validated on, too many columns, a transaction block. Each through the proxy with
psycopg: the SQLSTATE, the cursor position, the session still usable, and nothing
registered (no catalog row, no function) and nothing left on disk."""

from __future__ import annotations

import psycopg
import pytest

from automl.validation import MIN_ROWS
from proxy.ml_commands.create_model import MIN_TRAINING_ROWS
from tests.support.servers import start_proxy


def connect(proxy) -> psycopg.Connection:
    return psycopg.connect(proxy.dsn(), autocommit=True)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("early-errors-data")


@pytest.fixture(scope="module")
def early(pg, data_dir):
    process = start_proxy(pg.uri, "--data-dir", str(data_dir))
    with connect(process) as conn:
        conn.execute("DROP TABLE IF EXISTS ee_small, ee_const, ee_nulls, ee_wide, ee_empty, ee_ids, ee_three")
        conn.execute("CREATE TABLE ee_three AS SELECT (g * 7) % 11 AS a, 'c' || (g % 3) AS y "
                     "FROM generate_series(1, 60) g")
        conn.execute("CREATE TABLE ee_ids AS SELECT g AS id, 'k' || g AS code, 7 AS seven, NULL::float8 AS nothing, "
                     "g % 2 = 0 AS y FROM generate_series(1, 60) g")
        conn.execute("CREATE TABLE ee_empty (x int, y int)")
        conn.execute("CREATE TABLE ee_small AS SELECT g AS x, g % 2 AS y FROM generate_series(1, 12) g")
        conn.execute("CREATE TABLE ee_const AS SELECT g AS x, 'same'::text AS y FROM generate_series(1, 50) g")
        conn.execute("CREATE TABLE ee_nulls AS SELECT g AS x, NULL::int AS y FROM generate_series(1, 50) g")
        cols = ", ".join(f"g AS c{i}" for i in range(101))
        conn.execute(f"CREATE TABLE ee_wide AS SELECT {cols}, g % 2 AS y FROM generate_series(1, 40) g")
    yield process
    process.stop()


def _nothing_registered(conn, function: str) -> None:
    if conn.execute("SELECT to_regclass('mlproxy.models') IS NOT NULL").fetchone() == (True,):
        assert conn.execute("SELECT count(*) FROM mlproxy.models WHERE function_name = %s",
                            (function,)).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE %s",
                        (function + "%",)).fetchone() == (0,)


CASES = [
    # (statement, SQLSTATE, the text the cursor points at, a phrase of the message)
    ("CREATE MODEL ee_m FROM ee_small TARGET y FUNCTION ee_f MODEL_TYPE XGBOOST "
     "HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUDN '10')", "22023", "NUM_ROUDN", "unrecognized XGBOOST"),
    ("CREATE MODEL ee_m FROM ee_small TARGET y FUNCTION ee_f MODEL_TYPE XGBOOST "
     "HYPERPARAMETERS DEFAULT EXCEPT (MAX_DEPTH '11')", "22023", "'11'", "MAX_DEPTH"),
    ("CREATE MODEL ee_m FROM ee_small TARGET y FUNCTION ee_f MODEL_TYPE XGBOOST "
     "HYPERPARAMETERS DEFAULT EXCEPT (ETA '0.9')", "22023", "'0.9'", "ETA"),
    ("CREATE MODEL ee_m FROM ee_small TARGET y FUNCTION ee_f MODEL_TYPE XGBOOST "
     "HYPERPARAMETERS DEFAULT EXCEPT (SUBSAMPLE '0.2')", "22023", "'0.2'", "SUBSAMPLE"),
    # an XGBoost objective that does not fit the target (issue 15)
    ("CREATE MODEL ee_m FROM (SELECT x, x * 1.5 AS y FROM ee_small, generate_series(1, 3)) TARGET y "
     "FUNCTION ee_f MODEL_TYPE XGBOOST OBJECTIVE 'binary:logistic' AUTO OFF", "22023", "y FUNCTION", "BINARY_CLASSIFICATION"),
    ("CREATE MODEL ee_m FROM (SELECT x, (x % 3)::text AS y FROM ee_small, generate_series(1, 3)) TARGET y "
     "FUNCTION ee_f MODEL_TYPE XGBOOST OBJECTIVE 'multi:softmax' AUTO OFF", "22023", "y FUNCTION", "NUM_CLASS"),
    ("CREATE MODEL ee_m FROM (SELECT x, (x % 3)::text AS y FROM ee_small, generate_series(1, 3)) TARGET y "
     "FUNCTION ee_f MODEL_TYPE XGBOOST OBJECTIVE 'multi:softmax' AUTO OFF "
     "HYPERPARAMETERS DEFAULT EXCEPT (NUM_CLASS '4')", "22023", "y FUNCTION", "3 distinct"),
    ("CREATE MODEL ee_m FROM (SELECT x, (x % 3)::text AS y FROM ee_small, generate_series(1, 3)) TARGET y "
     "FUNCTION ee_f MODEL_TYPE XGBOOST OBJECTIVE 'reg:tweedie' AUTO OFF", "22023", "y FUNCTION", "REGRESSION"),
    ("CREATE MODEL ee_m FROM (SELECT x, x - 30.5 AS y FROM ee_small, generate_series(1, 3)) TARGET y "
     "FUNCTION ee_f MODEL_TYPE XGBOOST OBJECTIVE 'reg:tweedie' AUTO OFF", "22023", "OBJECTIVE 'reg:tweedie'", "non-negative"),
    ("CREATE MODEL ee_m FROM ee_small FUNCTION ee_f MODEL_TYPE KMEANS "
     "HYPERPARAMETERS DEFAULT EXCEPT (K '1')", "22023", "'1'", "K"),
    ("CREATE MODEL ee_m FROM ee_empty TARGET y FUNCTION ee_f", "22000", "ee_empty",
     "the training query returned no rows"),
    ("CREATE MODEL ee_m FROM (SELECT x, y FROM ee_small WHERE false) TARGET y FUNCTION ee_f", "22000",
     "SELECT x", "the training query returned no rows"),
    ("CREATE MODEL ee_m FROM ee_const TARGET y FUNCTION ee_f", "22000", "y FUNCTION",
     "has the same value in every row"),
    ("CREATE MODEL ee_m FROM ee_nulls TARGET y FUNCTION ee_f", "22000", "y FUNCTION", "is NULL in every row"),
    ("CREATE MODEL ee_m FROM ee_small TARGET y FUNCTION ee_f", "22000", "ee_small",
     f"has 12 rows with a non-NULL target; at least {MIN_TRAINING_ROWS} are needed"),
    ("CREATE MODEL ee_m FROM ee_const TARGET x FUNCTION ee_f SETTINGS (MAX_CELLS 20)", "22000", "ee_const",
     f"has 10 rows with a non-NULL target; at least {MIN_TRAINING_ROWS}"),
    ("CREATE MODEL ee_m FROM (SELECT x, date '2020-01-01' + x AS d FROM ee_const) TARGET d FUNCTION ee_f",
     "0A000", "d FUNCTION", "has type date, which cannot be predicted"),
    ("CREATE MODEL ee_m FROM ee_three TARGET y FUNCTION ee_f PROBLEM_TYPE BINARY_CLASSIFICATION", "22023",
     "PROBLEM_TYPE", "needs exactly 2 target classes, found 3"),
    ("CREATE MODEL ee_m FROM ee_three TARGET y FUNCTION ee_f OBJECTIVE 'AUC'", "22023", "OBJECTIVE",
     "does not apply to MULTICLASS_CLASSIFICATION"),
    ("CREATE MODEL ee_m FROM ee_three TARGET y FUNCTION ee_f MODEL_TYPE XGBOOST "
     "HYPERPARAMETERS DEFAULT EXCEPT (SCALE_POS_WEIGHT '2')", "22023", "HYPERPARAMETERS",
     "SCALE_POS_WEIGHT applies only to BINARY_CLASSIFICATION"),
    ("CREATE MODEL ee_m FROM ee_three TARGET y FUNCTION ee_f AUTO OFF MODEL_TYPE XGBOOST "
     "PREPROCESSORS '[{\"ColumnSet\": [\"nope\"], \"Transformers\": [\"StandardScaler\"]}]'", "42703",
     "PREPROCESSORS", "names column 'nope', which is not an input column"),
    ("CREATE MODEL ee_m FROM ee_three TARGET y FUNCTION ee_f AUTO OFF MODEL_TYPE XGBOOST "
     "PREPROCESSORS '[{\"ColumnSet\": [\"a\"], \"Transformers\": [\"OneHotEncoder\"]}]'", "22023",
     "PREPROCESSORS", "OneHotEncoder applies to text or boolean columns"),
    ("CREATE MODEL ee_m FROM ee_ids TARGET y FUNCTION ee_f", "22000", "ee_ids",
     "no column of the training data can be used as a feature"),
    ("CREATE MODEL ee_m FROM ee_wide TARGET y FUNCTION ee_f SETTINGS (MAX_FEATURES 100)", "54011", "ee_wide",
     "101 feature columns; at most 100"),
    ("CREATE MODEL ee_m FROM ee_wide TARGET y FUNCTION ee_f", "54023", "ee_wide",
     "functions cannot have more than 100 arguments"),
]


@pytest.mark.parametrize(("sql", "sqlstate", "at", "phrase"), CASES)
def test_errors_up_front(early, tmp_path, sql, sqlstate, at, phrase):
    with connect(early) as conn:
        with pytest.raises(psycopg.Error) as info:
            conn.execute(sql)
        diag = info.value.diag
        assert (diag.sqlstate, phrase in diag.message_primary) == (sqlstate, True), diag.message_primary
        assert int(diag.statement_position) == sql.index(at) + 1, (diag.statement_position, at)
        assert conn.execute("SELECT 'in sync'").fetchone() == ("in sync",)
        _nothing_registered(conn, "ee_f")


def test_the_hints_say_what_to_do(early):
    with connect(early) as conn:
        with pytest.raises(psycopg.Error) as info:
            conn.execute("CREATE MODEL ee_m FROM ee_small TARGET y FUNCTION ee_f MODEL_TYPE XGBOOST "
                         "HYPERPARAMETERS DEFAULT EXCEPT (MAX_DEPHT '3')")
        assert info.value.diag.message_detail == 'Did you mean "MAX_DEPTH"?'
        assert "COLSAMPLE_BYTREE" in info.value.diag.message_hint
        with pytest.raises(psycopg.Error) as info:
            conn.execute("CREATE MODEL ee_m FROM ee_const TARGET x FUNCTION ee_f SETTINGS (MAX_CELLS 20)")
        assert info.value.diag.message_hint == "MAX_CELLS allows only 10 rows of 2 columns; raise it to at least 40."
        with pytest.raises(psycopg.Error) as info:
            conn.execute("CREATE MODEL ee_m FROM ee_wide TARGET y FUNCTION ee_f SETTINGS (MAX_FEATURES 100)")
        assert "SETTINGS (MAX_FEATURES 101)" in info.value.diag.message_hint
        with pytest.raises(psycopg.Error) as info:
            conn.execute("CREATE MODEL ee_m FROM ee_ids TARGET y FUNCTION ee_f")
        detail = info.value.diag.message_detail
        assert 'column "id": ID-like' in detail and 'column "code": ID-like' in detail
        assert 'column "seven": constant' in detail and 'column "nothing": all values are NULL' in detail


def test_a_transaction_block_is_25001_with_how_to_autocommit(early):
    with connect(early) as conn:
        conn.execute("BEGIN")
        with pytest.raises(psycopg.errors.ActiveSqlTransaction) as info:
            conn.execute("CREATE MODEL ee_m FROM ee_small TARGET y FUNCTION ee_f")
        hint = info.value.diag.message_hint
        for how in ("\\set AUTOCOMMIT on", "setAutoCommit(true)", "conn.autocommit = True",
                    'isolation_level="AUTOCOMMIT"'):
            assert how in hint
        conn.execute("ROLLBACK")
        _nothing_registered(conn, "ee_f")


def test_nothing_is_left_in_the_data_dir(early, data_dir):
    with connect(early) as conn:
        for sql, *_ in CASES:
            with pytest.raises(psycopg.Error):
                conn.execute(sql)
    left = [p for p in (data_dir / "jobs").rglob("*")] if (data_dir / "jobs").exists() else []
    assert [p for p in left if p.is_file()] == []


def test_the_row_minimum_is_the_trainers():
    assert MIN_TRAINING_ROWS == MIN_ROWS


def test_options_keep_what_the_statement_wrote(early):
    """The catalog's options record OBJECTIVE, PREPROCESSORS and HYPERPARAMETERS as
    given (SHOW MODEL echoes them; the canonical objective is what training uses)."""
    with connect(early) as conn:
        conn.execute("DROP TABLE IF EXISTS ee_ok")
        conn.execute("CREATE TABLE ee_ok AS SELECT (g * 7) % 11 AS a, g % 5 AS b, g % 2 = 0 AS y "
                     "FROM generate_series(1, 80) g")
        conn.execute("DROP MODEL IF EXISTS ee_given")
        conn.execute("CREATE MODEL ee_given FROM ee_ok TARGET y FUNCTION ee_given_f MODEL_TYPE XGBOOST "
                     "OBJECTIVE 'binary:logistic' HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '20', eta 0.2) "
                     "SETTINGS (MAX_RUNTIME 5)")
        options = conn.execute("SELECT options FROM mlproxy.models WHERE model_name = 'ee_given'").fetchone()[0]
        conn.execute("DROP MODEL ee_given")
    assert options["objective"] == "AUC" and options["hyperparameters"] == {"num_round": 20, "eta": 0.2}
    assert options["given"] == {"objective": "binary:logistic", "from_table": "ee_ok",
                                "hyperparameters": [["NUM_ROUND", "20"], ["eta", "0.2"]]}


def test_the_proxy_checks_columns_without_loading_the_estimators():
    """precheck uses automl's column and problem rules; `import automl` loads
    scikit-learn only when automl.train is first used (the worker), not in the proxy."""
    import subprocess
    import sys

    code = ("import sys, pyarrow as pa; from proxy.training import precheck; "
            "t = pa.table({'a': list(range(40)), 'y': [i % 2 for i in range(40)]}); "
            "print(precheck.check(t, ['a'], {'target': 'y'}).detail, 'sklearn' in sys.modules); "
            "import automl; print(callable(automl.train), callable(automl.train))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ['column "a": ID-like: unique integers forming a dense sequence False', "True True"]


def test_redshifts_kmeans_example_trains(early):
    """The K-means statement of Redshift's CREATE MODEL documentation, as written
    (PREPROCESSORS with ColumnSet "*"), trains to READY."""
    from tests.ml.conftest import wait_for_state

    with connect(early) as conn:
        conn.execute("DROP TABLE IF EXISTS ee_customers")
        conn.execute("CREATE TABLE ee_customers AS SELECT (g % 7) * 1.5 AS spend, (g * 13) % 29 AS visits "
                     "FROM generate_series(1, 120) g")
        conn.execute("DROP MODEL IF EXISTS ee_clusters")
        conn.execute("""CREATE MODEL ee_clusters
            FROM ee_customers
            FUNCTION ee_customers_cluster
            IAM_ROLE default
            AUTO OFF
            MODEL_TYPE KMEANS
            PREPROCESSORS '[
            {
              "ColumnSet": [ "*" ],
              "Transformers": [ "NumericPassthrough" ]
            }
            ]'
            HYPERPARAMETERS DEFAULT EXCEPT ( K '3' )
            SETTINGS (S3_BUCKET 'bucket', MAX_RUNTIME 20)""")
        info = wait_for_state(conn, "ee_clusters", timeout=120)
        clusters = conn.execute("SELECT DISTINCT ee_customers_cluster(spend, visits) FROM ee_customers").fetchall()
        conn.execute("DROP MODEL ee_clusters")
    assert info["Model State"] == "READY", info
    assert {c for (c,) in clusters} <= {0, 1, 2} and len(clusters) > 1
