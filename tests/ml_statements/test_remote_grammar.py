"""CREATE MODEL ... SAGEMAKER (BYOM remote inference): what the grammar accepts and refuses."""

from __future__ import annotations

import pytest

from proxy.errors import PgError
from proxy.ml_statements import CreateRemoteModel, parse_statements


def parse(sql: str):
    return parse_statements(sql)[0][1]


def error(sql: str) -> PgError:
    with pytest.raises(PgError) as info:
        parse(sql)
    return info.value


def test_redshift_example_any_clause_order():
    stmt = parse("CREATE MODEL remote_customer_churn FUNCTION remote_fn_customer_churn_predict "
                 "(varchar, int, float, float) RETURNS int SAGEMAKER 'customer-churn-endpoint' "
                 "IAM_ROLE 'arn:aws:iam::0123456789012:role/Redshift-ML';")
    assert isinstance(stmt, CreateRemoteModel)
    assert stmt.endpoint == "customer-churn-endpoint" and stmt.target_model is None
    assert stmt.function.arg_types == ("character varying", "integer", "double precision", "double precision")
    assert stmt.function.returns == "integer"
    assert stmt.options["iam_role"] == "arn:aws:iam::0123456789012:role/Redshift-ML"
    again = parse("create model remote_customer_churn iam_role default sagemaker 'customer-churn-endpoint' "
                  "settings (max_batch_rows 50, s3_bucket 'b') function remote_fn_customer_churn_predict "
                  "(varchar, int, float, float) returns int")
    assert again.endpoint == stmt.endpoint and again.function == stmt.function
    assert again.options["settings"] == {"max_batch_rows": 50, "s3_bucket": "b"}


def test_multi_model_endpoint_and_super():
    stmt = parse("CREATE MODEL s.m FUNCTION f (float8) RETURNS SUPER SAGEMAKER 'ep':'model-a.tar.gz'")
    assert (stmt.name.schema, stmt.endpoint, stmt.target_model) == ("s", "ep", "model-a.tar.gz")
    assert stmt.function.returns == "super"


@pytest.mark.parametrize("sql, sqlstate, at", [
    ("CREATE MODEL m FUNCTION f (int) RETURNS int SAGEMAKER 'ep' TARGET y", "42601", "TARGET"),
    ("CREATE MODEL m FUNCTION f (int) RETURNS int SAGEMAKER 'ep' MODEL_TYPE XGBOOST", "42601", "MODEL_TYPE"),
    ("CREATE MODEL m FUNCTION f RETURNS int SAGEMAKER 'ep'", "22023", "f RETURNS"),
    ("CREATE MODEL m FUNCTION f (int) SAGEMAKER 'ep'", "22023", "f (int)"),
    ("CREATE MODEL m SAGEMAKER 'ep'", "42601", None),
    ("CREATE MODEL m FUNCTION f () RETURNS int SAGEMAKER 'ep'", "42601", ") RETURNS"),
    ("CREATE MODEL m FUNCTION f (int) RETURNS int SAGEMAKER ep", "42601", "ep"),
    ("CREATE MODEL m FUNCTION f (int) RETURNS int SAGEMAKER ''", "22023", None),
    ("CREATE MODEL m FUNCTION f (int) RETURNS int SAGEMAKER 'ep': x", "42601", "x"),
    ("CREATE MODEL m FUNCTION f (int) RETURNS int SAGEMAKER 'ep' SETTINGS (MAX_BATCH_ROWS 0)", "22023", "0)"),
    ("CREATE MODEL m FUNCTION f (int) RETURNS int SAGEMAKER 'ep' SETTINGS (MAX_BATCH_ROWS 'x')", "22023", "'x'"),
    ("CREATE MODEL m FUNCTION f (int) RETURNS int SAGEMAKER 'ep' SETTINGS (MAX_CELLS 10)", "22023", "MAX_CELLS"),
    ("CREATE MODEL m FUNCTION f (int) RETURNS int SAGEMAKER 'ep' SETTINGS (MAX_BATCH_ROWS 1, "
     "MAX_BATCH_ROWS 2)", "22023", "MAX_BATCH_ROWS 2"),
])
def test_refused(sql, sqlstate, at):
    err = error(sql)
    assert err.sqlstate == sqlstate, err
    if at is not None:
        assert err.position == sql.index(at) + 1, err
