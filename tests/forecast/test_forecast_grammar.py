"""MODEL_TYPE FORECAST's grammar: no FUNCTION, required HORIZON/FREQUENCY, checked
PERCENTILES and forecast objectives, each a 22023 at the offending token."""

from __future__ import annotations

import pytest

from proxy.errors import INVALID_PARAMETER_VALUE, SYNTAX_ERROR, PgError
from proxy.ml_statements import parse_ml_statement

BASE = "CREATE MODEL m FROM (SELECT id, ts, v FROM t) TARGET v IAM_ROLE default AUTO ON MODEL_TYPE FORECAST"


def parse(sql: str):
    return parse_ml_statement(sql)


def error(sql: str) -> PgError:
    with pytest.raises(PgError) as info:
        parse_ml_statement(sql)
    return info.value


def test_redshift_example_parses_with_defaults():
    stmt = parse(f"{BASE} SETTINGS (S3_BUCKET 'b', HORIZON 7, FREQUENCY 'D', S3_GARBAGE_COLLECT OFF)")
    assert stmt.function is None and stmt.target == "v"
    assert stmt.options["model_type"] == "FORECAST"
    assert stmt.options["forecast"] == {
        "horizon": 7, "frequency": "D", "percentiles": ["0.1", "0.5", "0.9"],
        "columns": ["p10", "p50", "p90"], "objective": "AverageWeightedQuantileLoss"}


@pytest.mark.parametrize(("percentiles", "columns"), [
    ("mean", ["mean"]), ("0.05, 0.50,0.95", ["p5", "p50", "p95"]), ("0.01,0.25,0.5,0.75,mean",
                                                                   ["p1", "p25", "p50", "p75", "mean"])])
def test_percentiles_become_columns(percentiles, columns):
    stmt = parse(f"{BASE} OBJECTIVE 'wape' SETTINGS (HORIZON 3, FREQUENCY '30MIN', PERCENTILES '{percentiles}')")
    f = stmt.options["forecast"]
    assert f["columns"] == columns and f["frequency"] == "30min" and f["objective"] == "WAPE"


@pytest.mark.parametrize(("settings", "bad", "message"), [
    ("HORIZON 0, FREQUENCY 'D'", "0", "invalid value for HORIZON"),
    ("HORIZON 3, FREQUENCY 'Q'", "'Q'", "invalid value for FREQUENCY"),
    ("HORIZON 3, FREQUENCY 'D', PERCENTILES '0.1,1.0'", "'0.1,1.0'", "invalid forecast type"),
    ("HORIZON 3, FREQUENCY 'D', PERCENTILES '0.1,0.2,0.3,0.4,0.5,0.6'", "'0.1,", "at most 5"),
    ("HORIZON 3, FREQUENCY 'D', PERCENTILES '0.125'", "'0.125'", "invalid forecast type"),
    ("HORIZON 3, FREQUENCY 'D', PERCENTILES 'median'", "'median'", "invalid forecast type"),
    ("HORIZON 3, FREQUENCY 'D', PERCENTILES '0.5,0.50'", "'0.5,0.50'", "more than once"),
])
def test_bad_settings_point_at_the_value(settings, bad, message):
    sql = f"{BASE} SETTINGS ({settings})"
    e = error(sql)
    assert e.sqlstate == INVALID_PARAMETER_VALUE and message in e.message, e.message
    assert e.position == sql.index(bad) + 1


@pytest.mark.parametrize("settings", ["(FREQUENCY 'D')", "(HORIZON 4)"])
def test_missing_required_setting_points_at_settings(settings):
    sql = f"{BASE} SETTINGS {settings}"
    e = error(sql)
    assert e.sqlstate == INVALID_PARAMETER_VALUE and "requires the setting" in e.message
    assert e.position == sql.index("SETTINGS") + 1


def test_no_settings_points_at_model_type():
    e = error(BASE)
    assert e.sqlstate == INVALID_PARAMETER_VALUE and "HORIZON" in e.message
    assert e.position == BASE.index("FORECAST") + 1


@pytest.mark.parametrize(("clause", "token", "message"), [
    ("FUNCTION f", "FUNCTION", "does not take FUNCTION"),
    ("OBJECTIVE 'MSE'", "'MSE'", "invalid OBJECTIVE 'MSE' for MODEL_TYPE FORECAST"),
    ("PROBLEM_TYPE REGRESSION", "REGRESSION", "does not take PROBLEM_TYPE"),
    ("HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '3')", "NUM_ROUND", "does not take HYPERPARAMETERS"),
])
def test_clauses_a_forecast_does_not_take(clause, token, message):
    sql = f"{BASE} {clause} SETTINGS (HORIZON 3, FREQUENCY 'D')"
    e = error(sql)
    assert e.sqlstate == INVALID_PARAMETER_VALUE and message in e.message, e.message
    assert e.position == sql.index(token) + 1


def test_auto_off_is_refused():
    sql = BASE.replace("AUTO ON", "AUTO OFF") + " SETTINGS (HORIZON 3, FREQUENCY 'D')"
    e = error(sql)
    assert e.sqlstate == INVALID_PARAMETER_VALUE and e.position == sql.index("OFF") + 1


def test_target_is_required():
    sql = BASE.replace(" TARGET v", "") + " SETTINGS (HORIZON 3, FREQUENCY 'D')"
    assert error(sql).sqlstate == SYNTAX_ERROR


def test_other_models_still_need_function():
    e = error("CREATE MODEL m FROM t TARGET y MODEL_TYPE XGBOOST")
    assert e.sqlstate == SYNTAX_ERROR and "FUNCTION" in e.hint
