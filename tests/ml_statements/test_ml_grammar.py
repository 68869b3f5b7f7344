"""CREATE / SHOW / DROP MODEL: every clause, AWS's own examples, quoting, comments."""

from __future__ import annotations

import pytest

from proxy.errors import FEATURE_NOT_SUPPORTED, INVALID_PARAMETER_VALUE, SYNTAX_ERROR, PgError
from proxy.ml_statements import (
    CreateModel,
    DropModel,
    ModelFunction,
    ModelName,
    QualifiedName,
    ShowModel,
    SourceQuery,
    TableName,
    parse_ml_statement,
    parse_statements,
)

BASE = "CREATE MODEL m FROM t TARGET y FUNCTION f"


def create(sql: str) -> CreateModel:
    statement = parse_ml_statement(sql)
    assert isinstance(statement, CreateModel), statement
    return statement


def error(sql: str, offset: int = 0) -> PgError:
    with pytest.raises(PgError) as info:
        parse_ml_statement(sql, offset=offset)
    return info.value


# -- examples from the Redshift ML documentation -------------------------------------

CHURN_AUTO = """
CREATE MODEL customer_churn_auto_model
FROM (SELECT state,
             account_length,
             area_code,
             total_charge/account_length AS average_daily_spend,
             cust_serv_calls/account_length AS average_daily_cases,
             churn
      FROM customer_activity
      WHERE record_date < '2020-01-01'
     )
TARGET churn
FUNCTION ml_fn_customer_churn_auto
IAM_ROLE default
SETTINGS (
  S3_BUCKET 'amzn-s3-demo-bucket'
);"""

CHURN_F1 = """
CREATE MODEL customer_churn_model
FROM (SELECT state, area_code, total_charge/account_length AS average_daily_spend,
             cust_serv_calls/account_length AS average_daily_cases, churn
      FROM customer_activity WHERE record_date < '2020-01-01')
TARGET churn
FUNCTION predict_customer_churn
IAM_ROLE 'arn:aws:iam::123456789012:role/RedshiftML'
PROBLEM_TYPE BINARY_CLASSIFICATION
OBJECTIVE 'F1'
SETTINGS (S3_BUCKET 'amzn-s3-demo-bucket', MAX_RUNTIME 1800);"""

CHURN_XGBOOST = """
CREATE MODEL customer_churn_xgboost
FROM customer_activity
TARGET churn
FUNCTION ml_fn_customer_churn_xgboost
IAM_ROLE default
AUTO OFF
MODEL_TYPE XGBOOST
OBJECTIVE 'binary:logistic'
PREPROCESSORS 'none'
HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '100')
SETTINGS (S3_BUCKET 'amzn-s3-demo-bucket');"""

ABALONE_MULTICLASS = """
CREATE MODEL abalone_xgboost_multi_predict_age
FROM ( SELECT length_val, diameter, height, whole_weight, shucked_weight,
              viscera_weight, shell_weight, rings
       FROM abalone_xgb WHERE record_number < 2500 )
TARGET rings FUNCTION ml_fn_abalone_xgboost_multi_predict_age
IAM_ROLE default
AUTO OFF
MODEL_TYPE XGBOOST
OBJECTIVE 'multi:softmax'
PREPROCESSORS 'none'
HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '100', NUM_CLASS '30')
SETTINGS (S3_BUCKET 'amzn-s3-demo-bucket');"""

KMEANS = """
CREATE MODEL customers_clusters
FROM customers
FUNCTION customers_cluster
IAM_ROLE default
AUTO OFF
MODEL_TYPE KMEANS
PREPROCESSORS '[
{
  "ColumnSet": [ "*" ],
  "Transformers": [ "NumericPassthrough" ]
}
]'
HYPERPARAMETERS DEFAULT EXCEPT (
 K '5'
)
SETTINGS (
  S3_BUCKET 'amzn-s3-demo-bucket'
);"""

REGRESSION_LINEAR = """
CREATE MODEL remaining_sales_model
FROM sales.train_data
TARGET remaining_sales
FUNCTION predict_remaining_sales(int, int, numeric(10,2), varchar(20))
RETURNS double precision
IAM_ROLE default
MODEL_TYPE LINEAR_LEARNER
PROBLEM_TYPE REGRESSION
OBJECTIVE 'MSE'
SETTINGS (S3_BUCKET 'amzn-s3-demo-bucket', S3_GARBAGE_COLLECT OFF, KMS_KEY_ID 'kms-key',
          MAX_CELLS 10000, MAX_RUNTIME 3600, MAX_BATCH_ROWS 500);"""

PREPROCESSED_MLP = """
CREATE MODEL customer_churn_mlp
FROM customer_activity
TARGET churn
FUNCTION predict_churn_mlp
IAM_ROLE default
MODEL_TYPE MLP
PREPROCESSORS '[
  {"ColumnSet": ["state", "area_code"], "Transformers": ["OneHotEncoder"]},
  {"ColumnSet": ["account_length", "total_charge"], "Transformers": ["NumericPassthrough"]}
]'
SETTINGS (S3_BUCKET 'amzn-s3-demo-bucket');"""


def test_churn_auto_model():
    stmt = create(CHURN_AUTO)
    assert stmt.name == ModelName(None, "customer_churn_auto_model")
    assert isinstance(stmt.source, SourceQuery)
    assert stmt.source.text.startswith("SELECT state,\n") and stmt.source.text.endswith("'2020-01-01'\n     ")
    assert stmt.target == "churn"
    assert stmt.function == ModelFunction(QualifiedName(None, "ml_fn_customer_churn_auto"), None, None)
    assert stmt.options == {
        "iam_role": "default", "auto": True, "model_type": None, "problem_type": None,
        "objective": None, "preprocessors": None, "hyperparameters": {},
        "settings": {"s3_bucket": "amzn-s3-demo-bucket"},
        "given": {"objective": None, "preprocessors": None, "hyperparameters": []},
    }
    assert stmt.text == CHURN_AUTO


def test_problem_type_and_objective():
    stmt = create(CHURN_F1)
    assert stmt.options["iam_role"] == "arn:aws:iam::123456789012:role/RedshiftML"
    assert (stmt.options["problem_type"], stmt.options["objective"]) == ("BINARY_CLASSIFICATION", "F1")
    assert stmt.options["settings"] == {"s3_bucket": "amzn-s3-demo-bucket", "max_runtime": 1800}


def test_xgboost_auto_off_with_hyperparameters():
    options = create(CHURN_XGBOOST).options
    assert options["auto"] is False and options["model_type"] == "XGBOOST"
    assert (options["objective"], options["problem_type"]) == ("AUC", "BINARY_CLASSIFICATION")
    assert options["preprocessors"] == "none"
    assert options["hyperparameters"] == {"num_round": 100}


def test_xgboost_multiclass():
    options = create(ABALONE_MULTICLASS).options
    assert (options["objective"], options["problem_type"]) == ("Accuracy", "MULTICLASS_CLASSIFICATION")
    assert options["hyperparameters"] == {"num_round": 100, "num_class": 30}


def test_kmeans_without_target():
    stmt = create(KMEANS)
    assert stmt.target is None and stmt.source == TableName(None, "customers")
    assert stmt.options["model_type"] == "KMEANS"
    assert stmt.options["hyperparameters"] == {"k": 5}
    assert stmt.options["preprocessors"] == [{"ColumnSet": ["*"], "Transformers": ["NumericPassthrough"]}]


def test_function_types_returns_and_all_settings():
    stmt = create(REGRESSION_LINEAR)
    assert stmt.source == TableName("sales", "train_data")
    assert stmt.function.arg_types == ("integer", "integer", "numeric(10,2)", "character varying(20)")
    assert stmt.function.returns == "double precision"
    assert stmt.options["settings"] == {
        "s3_bucket": "amzn-s3-demo-bucket", "s3_garbage_collect": False, "kms_key_id": "kms-key",
        "max_cells": 10000, "max_runtime": 3600, "max_batch_rows": 500,
    }
    assert (stmt.options["model_type"], stmt.options["problem_type"], stmt.options["objective"]) == (
        "LINEAR_LEARNER", "REGRESSION", "MSE")


def test_preprocessors_json():
    assert create(PREPROCESSED_MLP).options["preprocessors"] == [
        {"ColumnSet": ["state", "area_code"], "Transformers": ["OneHotEncoder"]},
        {"ColumnSet": ["account_length", "total_charge"], "Transformers": ["NumericPassthrough"]},
    ]


# -- clauses one by one --------------------------------------------------------------

@pytest.mark.parametrize(
    ("clause", "key", "value"),
    [
        ("IAM_ROLE default", "iam_role", "default"),
        ("IAM_ROLE DEFAULT", "iam_role", "default"),
        ("IAM_ROLE 'arn:aws:iam::1:role/r'", "iam_role", "arn:aws:iam::1:role/r"),
        ("AUTO ON", "auto", True),
        ("auto off model_type xgboost", "auto", False),
        ("MODEL_TYPE mlp", "model_type", "MLP"),
        ("MODEL_TYPE Linear_Learner", "model_type", "LINEAR_LEARNER"),
        ("PROBLEM_TYPE multiclass_classification", "problem_type", "MULTICLASS_CLASSIFICATION"),
        ("OBJECTIVE 'mse'", "objective", "MSE"),
        ("OBJECTIVE 'F1_Macro'", "objective", "F1Macro"),
        ("OBJECTIVE $$AUC$$", "objective", "AUC"),
        ("PREPROCESSORS 'NONE'", "preprocessors", "none"),
        ("PREPROCESSORS '[]'", "preprocessors", []),
        ("HYPERPARAMETERS DEFAULT", "hyperparameters", {}),
        ("MODEL_TYPE XGBOOST HYPERPARAMETERS DEFAULT EXCEPT (ETA '0.3', max_depth 6, \"Subsample\" '0.5', "
         "tree_method 'hist')",
         "hyperparameters", {"eta": 0.3, "max_depth": 6, "subsample": 0.5, "tree_method": "hist"}),
        ("SETTINGS ()", "settings", {}),
        ("SETTINGS (max_cells 1_000, \"MAX_RUNTIME\" 60, TAGS 'a=b', FREQUENCY 'H', HORIZON 3, PERCENTILES '0.5')",
         "settings", {"max_cells": 1000, "max_runtime": 60, "tags": "a=b", "frequency": "H", "horizon": 3,
                      "percentiles": "0.5"}),
    ],
)
def test_each_option_clause(clause, key, value):
    assert create(f"{BASE} {clause}").options[key] == value


@pytest.mark.parametrize(
    "sql",
    [
        BASE + " SETTINGS (S3_BUCKET 'b') IAM_ROLE default AUTO ON",
        "CREATE MODEL m FUNCTION f IAM_ROLE default TARGET y FROM t AUTO ON SETTINGS (S3_BUCKET 'b')",
        "CREATE MODEL m TARGET y AUTO ON SETTINGS (S3_BUCKET 'b') FROM t FUNCTION f IAM_ROLE default",
    ],
)
def test_clause_order_is_flexible(sql):
    assert create(sql) == create(BASE + " IAM_ROLE default AUTO ON SETTINGS (S3_BUCKET 'b')")


def test_function_with_schema_types_and_returns():
    stmt = create(
        "CREATE MODEL m FROM t TARGET y FUNCTION ml.predict (DOUBLE  PRECISION, character varying(20), "
        "timestamp with time zone, numeric(10,2), int[], \"MyType\", bool, text) RETURNS timestamptz"
    )
    assert stmt.function.name == QualifiedName("ml", "predict")
    assert stmt.function.arg_types == (
        "double precision", "character varying(20)", "timestamp with time zone", "numeric(10,2)",
        "integer[]", '"MyType"', "boolean", "text",
    )
    assert stmt.function.returns == "timestamp with time zone"


def test_returns_ends_at_the_next_clause():
    stmt = create(BASE + " RETURNS double precision IAM_ROLE default")
    assert stmt.function.returns == "double precision" and stmt.options["iam_role"] == "default"


def test_from_query_text_is_kept_exactly():
    query = " /* training set */ SELECT a, (b + 1) AS \"B)\", ')' FROM t WHERE c IN (SELECT 1)  -- done\n"
    stmt = create(f"CREATE MODEL m FROM ({query}) TARGET a FUNCTION f")
    assert stmt.source == SourceQuery(query)
    assert stmt.positions["source"] == len("CREATE MODEL m FROM (") + 1


@pytest.mark.parametrize("query", ["VALUES (1, 2)", "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
                                   "(SELECT 1) UNION ALL (SELECT 2)", "TABLE t"])
def test_from_accepts_any_select_form(query):
    assert create(f"CREATE MODEL m FROM ({query}) TARGET a FUNCTION f").source == SourceQuery(query)


# -- names: quoting and case folding ---------------------------------------------------

def test_quoting_and_case_folding():
    stmt = create('CREATE MODEL "MySchema".MyModel FROM "Sales"."Q1 Data" TARGET "Churn" FUNCTION Predict_Churn')
    assert stmt.name == ModelName("MySchema", "mymodel")
    assert stmt.source == TableName("Sales", "Q1 Data")
    assert stmt.target == "Churn"
    assert stmt.function.name == QualifiedName(None, "predict_churn")
    assert str(stmt.name) == '"MySchema".mymodel' and str(stmt.source) == '"Sales"."Q1 Data"'


def test_doubled_quotes_and_reserved_words_in_quotes():
    stmt = create('CREATE MODEL "Quoted ""names""" FROM "select" TARGET "from" FUNCTION "all"')
    assert stmt.name.name == 'Quoted "names"'
    assert (stmt.source.name, stmt.target, stmt.function.name.name) == ("select", "from", "all")
    assert str(stmt.name) == '"Quoted ""names"""'


def test_keywords_are_case_insensitive():
    lower = create("create model m from t target y function f iam_role default auto off model_type xgboost "
                   "problem_type regression objective 'mse' hyperparameters default except (num_round '5') "
                   "settings (s3_bucket 'b', max_cells 100)")
    upper = create("CREATE MODEL M FROM T TARGET Y FUNCTION F IAM_ROLE DEFAULT AUTO OFF MODEL_TYPE XGBOOST "
                   "PROBLEM_TYPE REGRESSION OBJECTIVE 'MSE' HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '5') "
                   "SETTINGS (S3_BUCKET 'b', MAX_CELLS 100)")
    # what the statement wrote is kept as written, for SHOW MODEL
    assert lower.options.pop("given")["hyperparameters"] == [["num_round", "5"]]
    assert upper.options.pop("given")["hyperparameters"] == [["NUM_ROUND", "5"]]
    assert lower == upper


def test_comments_anywhere_and_a_trailing_semicolon():
    plain = create(BASE + " MODEL_TYPE xgboost SETTINGS (MAX_CELLS 5)")
    commented = create(
        "-- leading\nCREATE/* a */MODEL /* b /* nested */ */ m--c\nFROM t TARGET/**/y FUNCTION f "
        "MODEL_TYPE -- d\n xgboost SETTINGS ( /* e */ MAX_CELLS /* f */ 5 /* g */ ) ; -- after\n/* end */"
    )
    assert commented == plain


# -- SHOW and DROP -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SHOW MODEL ALL", ShowModel(None, text="")),
        ("show model all;", ShowModel(None, text="")),
        ("SHOW MODEL churn", ShowModel(ModelName(None, "churn"), text="")),
        ('SHOW MODEL ml."All"', ShowModel(ModelName("ml", "All"), text="")),
        ('SHOW MODEL "all"', ShowModel(ModelName(None, "all"), text="")),
        ("DROP MODEL churn", DropModel(ModelName(None, "churn"), False, text="")),
        ("drop model if exists ml.churn;", DropModel(ModelName("ml", "churn"), True, text="")),
        ("DROP MODEL if", DropModel(ModelName(None, "if"), False, text="")),
    ],
)
def test_show_and_drop(sql, expected):
    assert parse_ml_statement(sql) == expected


def test_show_model_all_flag():
    assert parse_ml_statement("SHOW MODEL ALL").is_all
    assert not parse_ml_statement("SHOW MODEL m").is_all


# -- not ML statements: forwarded unchanged --------------------------------------------

@pytest.mark.parametrize(
    "sql",
    [
        "SELECT model FROM t", "CREATE TABLE model (x int)", "CREATE \"MODEL\" m", "SHOW model.setting",
        "SHOW search_path", "DROP TABLE model", "select 'CREATE MODEL m'", "-- CREATE MODEL m\nSELECT 1",
        "", "   ", "SELECT 'unterminated", "/* unterminated", "12abc model", "EXPLAIN CREATE MODEL m",
        "CREATE OR REPLACE MODEL m FROM t TARGET y FUNCTION f",
    ],
)
def test_not_ml_statements_return_none(sql):
    assert parse_ml_statement(sql) is None


# -- positions and multi-statement strings -----------------------------------------------

def test_error_positions_count_from_the_whole_query_string():
    sql = "SELECT 'é'; CREATE MODEL m FROM t TARGET y FUNCTION f BOGUS; SELECT 2"
    with pytest.raises(PgError) as info:
        parse_statements(sql)
    assert info.value.sqlstate == SYNTAX_ERROR
    assert info.value.message == 'syntax error at or near "BOGUS"'
    assert info.value.position == sql.index("BOGUS") + 1


def test_parse_statements_pairs_pieces_with_statements():
    sql = "SELECT 1; CREATE MODEL m FROM t TARGET y FUNCTION f;; SHOW MODEL m;"
    pairs = parse_statements(sql)
    assert [piece.text for piece, _ in pairs] == ["SELECT 1", " CREATE MODEL m FROM t TARGET y FUNCTION f",
                                                  " SHOW MODEL m"]
    assert [type(stmt).__name__ for _, stmt in pairs] == ["NoneType", "CreateModel", "ShowModel"]
    assert pairs[1][1].offset == 9 and pairs[1][1].positions["name"] == sql.index(" m ") + 2


def test_clause_positions():
    sql = "CREATE MODEL s.m FROM t TARGET y FUNCTION f(int) SETTINGS (MAX_CELLS 5)"
    stmt = parse_ml_statement(sql, offset=100)
    assert stmt.positions == {
        "name": 100 + sql.index("s.m") + 1,
        "from": 100 + sql.index("FROM") + 1,
        "source": 100 + sql.index(" t ") + 2,
        "target": 100 + sql.index(" y ") + 2,
        "function": 100 + sql.index("f(") + 1,
        "settings": 100 + sql.index("SETTINGS") + 1,
    }


# -- errors that need more than the corpus shows -----------------------------------------

def test_duplicate_clause_is_a_syntax_error():
    e = error(BASE + " AUTO ON AUTO OFF")
    assert (e.sqlstate, e.message) == (SYNTAX_ERROR, 'syntax error at or near "AUTO"')
    assert e.position == len(BASE + " AUTO ON ") + 1
    assert e.detail == "AUTO is given more than once."
    assert "MODEL_TYPE" in e.hint and "FROM" not in e.hint


def test_unknown_clause_hint_lists_what_may_come():
    e = error("CREATE MODEL m FROM t TARGET y FUNCTION f MODE_TYPE xgboost")
    assert e.message == 'syntax error at or near "MODE_TYPE"'
    assert e.hint == ("Expected one of IAM_ROLE, AUTO, MODEL_TYPE, PROBLEM_TYPE, OBJECTIVE, PREPROCESSORS, "
                      "HYPERPARAMETERS, SETTINGS, or the end of the statement.")


def test_missing_required_clauses_at_end_of_input():
    e = error("CREATE MODEL m TARGET y")
    assert (e.message, e.position, e.hint) == (
        "syntax error at end of input", len("CREATE MODEL m TARGET y") + 1, "CREATE MODEL requires FROM and FUNCTION.")
    e = error("CREATE MODEL m FROM t TARGET y;")
    assert (e.message, e.position) == ('syntax error at or near ";"', len("CREATE MODEL m FROM t TARGET y") + 1)


def test_from_query_errors_point_into_the_query():
    sql = "CREATE MODEL m FROM (SELECT a FROM t WHERE) TARGET a FUNCTION f"
    e = error(sql, offset=10)
    assert (e.sqlstate, e.message, e.position) == (SYNTAX_ERROR, 'syntax error at or near ")"', 10 + sql.index(")") + 1)
    sql = "CREATE MODEL m FROM (SELECT 'é', x FORM t) TARGET a FUNCTION f"
    e = error(sql)
    assert (e.message, e.position) == ('syntax error at or near "t"', sql.index(" t)") + 2)


def test_bring_your_own_model_is_told_apart_from_training():
    from proxy.ml_statements import ModelLocation

    stmt = parse_ml_statement("CREATE MODEL s.m FROM 'models/churn.json' FUNCTION s.f (real, int4, boolean) "
                              "RETURNS float8 IAM_ROLE default SETTINGS (S3_BUCKET 'b')")
    assert stmt.imported and stmt.source == ModelLocation("models/churn.json", "path")
    assert stmt.function.arg_types == ("real", "integer", "boolean") and stmt.function.returns == "double precision"
    assert stmt.options["iam_role"] == "default" and stmt.options["settings"] == {"s3_bucket": "b"}
    assert stmt.target is None
    url = parse_ml_statement("CREATE MODEL m FROM 's3://bucket/a/model.tar.gz' FUNCTION f (real) RETURNS int")
    assert url.imported and url.source == ModelLocation("s3://bucket/a/model.tar.gz", "url")
    # FROM ( query ): an import when there is no TARGET, there is RETURNS, and no training clause
    query = parse_ml_statement("CREATE MODEL m FROM (SELECT b FROM models WHERE id = 1) FUNCTION f (real) RETURNS int")
    assert query.imported and query.source == SourceQuery("SELECT b FROM models WHERE id = 1")
    # ... and training exactly as before otherwise
    for trained in ("CREATE MODEL m FROM (SELECT * FROM t) TARGET y FUNCTION f (real) RETURNS int",
                    "CREATE MODEL m FROM t TARGET y FUNCTION f",
                    "CREATE MODEL m FROM (SELECT a, b FROM t) FUNCTION f RETURNS int MODEL_TYPE KMEANS "
                    "HYPERPARAMETERS DEFAULT EXCEPT (K '2')"):
        assert not parse_ml_statement(trained).imported
    assert error("CREATE MODEL m FROM t FUNCTION f (real) RETURNS int").sqlstate == SYNTAX_ERROR  # needs TARGET
    forgot = error("CREATE MODEL m FROM (SELECT a, y FROM t) FUNCTION f RETURNS int")  # no argument types
    assert (forgot.sqlstate, forgot.message) == (SYNTAX_ERROR, "CREATE MODEL requires TARGET unless MODEL_TYPE is KMEANS")
    assert error("CREATE MODEL m FROM (SELECT 1) FUNCTION f (real) RETURNS int AUTO OFF").sqlstate == INVALID_PARAMETER_VALUE


def test_unsupported_redshift_features():
    assert error("CREATE MODEL m FROM 'sagemaker-job-1' FUNCTION f").sqlstate == FEATURE_NOT_SUPPORTED
    # a remote model (SAGEMAKER) has no training data: FROM with it is a syntax error
    assert error(BASE + " SAGEMAKER 'endpoint'").sqlstate == SYNTAX_ERROR


def test_string_literal_forms():
    stmt = create(BASE + " IAM_ROLE E'arn:\\x41' PREPROCESSORS $json$[{\"ColumnSet\": [\"a's\"], "
                  "\"Transformers\": [\"OneHotEncoder\"]}]$json$ SETTINGS (KMS_KEY_ID U&'k\\0065y')")
    assert stmt.options["iam_role"] == "arn:A"
    assert stmt.options["preprocessors"] == [{"ColumnSet": ["a's"], "Transformers": ["OneHotEncoder"]}]
    assert stmt.options["settings"] == {"kms_key_id": "key"}


def test_backslash_strings_follow_standard_conforming_strings():
    sql = BASE + r" IAM_ROLE 'a\'b'"
    stmt = parse_ml_statement(sql, standard_conforming_strings=False)
    assert stmt.options["iam_role"] == "a'b"
    assert error(sql).message == "unterminated bit string literal at or near \"b'\""  # as Postgres reads it
