"""The prefilter may over-match but must never miss an ML statement."""

from __future__ import annotations

import pytest

from proxy.ml_statements import might_be_ml_statement, parse_ml_statement

from .test_ml_bad_input import BAD_INPUT
from .test_ml_grammar import (
    ABALONE_MULTICLASS,
    CHURN_AUTO,
    CHURN_F1,
    CHURN_XGBOOST,
    KMEANS,
    PREPROCESSED_MLP,
    REGRESSION_LINEAR,
)

VALID = [CHURN_AUTO, CHURN_F1, CHURN_XGBOOST, ABALONE_MULTICLASS, KMEANS, REGRESSION_LINEAR, PREPROCESSED_MLP,
         "SHOW MODEL ALL", "show/**/model\tm", "DROP MODEL IF EXISTS s.m", "create--x\nModel m from t target y function f",
         'drop model"M"']


@pytest.mark.parametrize("sql", VALID)
def test_valid_corpus_is_ml(sql):
    assert parse_ml_statement(sql) is not None


@pytest.mark.parametrize("sql", VALID + [case.sql for case in BAD_INPUT])
def test_no_false_negatives(sql):
    assert might_be_ml_statement(sql)
    assert might_be_ml_statement(sql.encode("utf-8"))
    assert might_be_ml_statement(memoryview(sql.encode("utf-8")))


@pytest.mark.parametrize(
    "sql",
    ["SELECT abalance FROM pgbench_accounts WHERE aid = $1",
     "UPDATE pgbench_accounts SET abalance = abalance + 5 WHERE aid = 7",
     "SELECT models FROM t", "SELECT my_model FROM t", "SELECT modelé", "BEGIN", ""],
)
def test_ordinary_queries_do_not_match(sql):
    assert not might_be_ml_statement(sql)
    assert not might_be_ml_statement(sql.encode("utf-8"))


def test_false_positives_are_harmless():
    for sql in ["SELECT model FROM t", "SELECT 'CREATE MODEL'", "/* model */ SELECT 1"]:
        assert might_be_ml_statement(sql) and parse_ml_statement(sql) is None
