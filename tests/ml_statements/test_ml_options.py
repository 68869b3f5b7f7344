"""Option vocabulary: canonical values, aliases, cross-clause rules, 22023 errors."""

from __future__ import annotations

import pytest

from proxy.errors import INVALID_PARAMETER_VALUE, SYNTAX_ERROR, PgError
from proxy.ml_statements import OBJECTIVES, parse_ml_statement
from proxy.ml_statements.options import OBJECTIVE_ALIASES

BASE = "CREATE MODEL m FROM t TARGET y FUNCTION f"


def options(clauses: str, base: str = BASE) -> dict:
    return parse_ml_statement(f"{base} {clauses}").options


def error(clauses: str, base: str = BASE) -> PgError:
    sql = f"{base} {clauses}"
    with pytest.raises(PgError) as info:
        parse_ml_statement(sql)
    return info.value


@pytest.mark.parametrize(
    ("spelling", "objective"),
    [("MSE", "MSE"), ("rmse", "MSE"), ("reg:squarederror", "MSE"), ("MAE", "MAE"), ("Accuracy", "Accuracy"),
     ("Binary_Accuracy", "Accuracy"), ("F1", "F1"), ("F1Macro", "F1Macro"), ("F1_Macro", "F1Macro"),
     ("f1 macro", "F1Macro"), ("AUC", "AUC"), ("binary:logistic", "AUC"), ("multi:softmax", "Accuracy")],
)
def test_objective_spellings(spelling, objective):
    assert options(f"OBJECTIVE '{spelling}'")["objective"] == objective


def test_every_alias_maps_to_a_canonical_objective():
    assert {canonical for canonical, _ in OBJECTIVE_ALIASES.values()} == set(OBJECTIVES)


@pytest.mark.parametrize(("objective", "implied"), [
    ("binary:logistic", "BINARY_CLASSIFICATION"), ("binary:hinge", "BINARY_CLASSIFICATION"),
    ("multi:softmax", "MULTICLASS_CLASSIFICATION"), ("reg:squarederror", "REGRESSION"), ("MSE", None),
])
def test_xgboost_objectives_imply_the_problem_type(objective, implied):
    assert options(f"OBJECTIVE '{objective}'")["problem_type"] == implied


@pytest.mark.parametrize(
    "clauses",
    ["PROBLEM_TYPE BINARY_CLASSIFICATION OBJECTIVE 'MSE'",
     "PROBLEM_TYPE REGRESSION OBJECTIVE 'Accuracy'",
     "PROBLEM_TYPE MULTICLASS_CLASSIFICATION OBJECTIVE 'AUC'",
     "PROBLEM_TYPE BINARY_CLASSIFICATION OBJECTIVE 'multi:softmax'"],
)
def test_objective_must_fit_the_problem_type(clauses):
    e = error(clauses)
    assert e.sqlstate == INVALID_PARAMETER_VALUE and "does not apply to" in e.message
    assert e.position == len(BASE) + 1 + clauses.index("OBJECTIVE '") + len("OBJECTIVE ") + 1


def test_unknown_objective_names_the_allowed_values():
    e = error("OBJECTIVE 'MAPE'")
    assert (e.sqlstate, e.message) == (INVALID_PARAMETER_VALUE, "invalid OBJECTIVE 'MAPE'")
    assert all(f"'{o}'" in e.hint for o in OBJECTIVES)


@pytest.mark.parametrize(("clause", "allowed"), [
    ("MODEL_TYPE TIMESERIES", "XGBOOST, MLP, LINEAR_LEARNER, KMEANS, FORECAST"),
    ("PROBLEM_TYPE CLUSTERING", "REGRESSION, BINARY_CLASSIFICATION, MULTICLASS_CLASSIFICATION"),
])
def test_unknown_enumerations_name_the_allowed_values(clause, allowed):
    e = error(clause)
    assert e.sqlstate == INVALID_PARAMETER_VALUE and allowed in e.hint
    assert e.position == len(BASE) + 1 + clause.index(" ") + 2


@pytest.mark.parametrize(
    ("setting", "expectation"),
    [("MAX_RUNTIME -5", "a positive integer"), ("MAX_RUNTIME 0", "a positive integer"),
     ("MAX_CELLS 1.5", "a positive integer"), ("MAX_CELLS '1e3'", "a positive integer"),
     ("MAX_CELLS lots", "a positive integer"), ("KMS_KEY_ID 5", "a quoted string"),
     ("S3_GARBAGE_COLLECT 'yes'", "ON or OFF"), ("MAX_BATCH_ROWS -1", "a positive integer")],
)
def test_bad_setting_values(setting, expectation):
    e = error(f"SETTINGS (S3_BUCKET 'b', {setting})")
    key, value = setting.split(" ", 1)
    assert (e.sqlstate, e.message) == (INVALID_PARAMETER_VALUE, f"invalid value for {key}: {value}")
    assert e.hint == f"{key} must be {expectation}."
    assert e.position == len(BASE) + len(" SETTINGS (S3_BUCKET 'b', ") + len(key) + 2


def test_quoted_integer_settings_are_accepted():
    assert options("SETTINGS (MAX_CELLS '100', MAX_RUNTIME +60)")["settings"] == {"max_cells": 100, "max_runtime": 60}


def test_unknown_setting_lists_the_known_ones():
    e = error("SETTINGS (MAX_ROWS 5)")
    assert (e.sqlstate, e.message, e.position) == (
        INVALID_PARAMETER_VALUE, 'unrecognized setting "MAX_ROWS"', len(BASE) + len(" SETTINGS (") + 1)
    assert "MAX_CELLS" in e.hint and "KMS_KEY_ID" in e.hint


def test_repeated_setting_or_hyperparameter_is_redundant():
    e = error("SETTINGS (MAX_CELLS 5, max_cells 6)")
    assert (e.sqlstate, e.message) == (SYNTAX_ERROR, 'conflicting or redundant options at or near "max_cells"')
    e = error("MODEL_TYPE XGBOOST HYPERPARAMETERS DEFAULT EXCEPT (ETA '0.1', eta '0.2')")
    assert e.sqlstate == SYNTAX_ERROR and e.detail == "ETA is given more than once."


@pytest.mark.parametrize(
    ("model_type", "pair", "expectation"),
    [("XGBOOST", "NUM_ROUND '0'", "an integer between 1 and 10000 (default 100)"),
     ("XGBOOST", "NUM_CLASS '1'", "an integer between 2 and 10000"),
     ("XGBOOST", "MAX_DEPTH '11'", "an integer between 0 and 10 (default 6)"),
     ("XGBOOST", "MAX_DEPTH '2.5'", "an integer between 0 and 10 (default 6)"),
     ("XGBOOST", "ETA '0.05'", "a number between 0.1 and 0.5 (default 0.3)"),
     ("XGBOOST", "ETA 'fast'", "a number between 0.1 and 0.5 (default 0.3)"),
     ("XGBOOST", "SUBSAMPLE '0.4'", "a number between 0.5 and 1 (default 1)"),
     ("XGBOOST", "GAMMA '6'", "a number between 0 and 5 (default 0)"),
     ("XGBOOST", "MIN_CHILD_WEIGHT '121'", "a number between 0 and 120 (default 1)"),
     ("XGBOOST", "COLSAMPLE_BYTREE '0.2'", "a number between 0.5 and 1 (default 1)"),
     ("XGBOOST", "MAX_DELTA_STEP '11'", "an integer between 0 and 10 (default 0)"),
     ("XGBOOST", "TREE_METHOD 'gpu_hist'", "one of 'auto', 'exact', 'approx', 'hist' (default auto)"),
     ("XGBOOST", "ETA 'nan'", "a number between 0.1 and 0.5 (default 0.3)"),
     ("MLP", "ACTIVATION 'softplus'", "one of 'relu', 'tanh', 'sigmoid', 'logistic' (default relu)"),
     ("LINEAR_LEARNER", "WD '0'", "a number > 0")],
)
def test_hyperparameter_ranges_are_redshifts(model_type, pair, expectation):
    e = error(f"MODEL_TYPE {model_type} HYPERPARAMETERS DEFAULT EXCEPT ({pair})")
    clause = f" MODEL_TYPE {model_type} HYPERPARAMETERS DEFAULT EXCEPT ("
    assert e.sqlstate == INVALID_PARAMETER_VALUE and e.hint == f"{pair.split()[0]} must be {expectation}."
    assert e.position == len(BASE) + len(clause) + len(pair.split()[0]) + 2  # on the value


def test_kmeans_k_range():
    e = error("MODEL_TYPE KMEANS HYPERPARAMETERS DEFAULT EXCEPT (K '1')", "CREATE MODEL m FROM t FUNCTION f")
    assert e.sqlstate == INVALID_PARAMETER_VALUE and e.hint == "K must be an integer between 2 and 10000."


def test_unknown_hyperparameter_names_the_allowed_keys_and_a_close_one():
    clause = "MODEL_TYPE XGBOOST HYPERPARAMETERS DEFAULT EXCEPT (ETA '0.2', MAX_DEPHT '3')"
    e = error(clause)
    assert (e.sqlstate, e.message, e.position) == (
        INVALID_PARAMETER_VALUE, 'unrecognized XGBOOST hyperparameter "MAX_DEPHT"',
        len(BASE) + 1 + clause.index("MAX_DEPHT") + 1)
    assert e.detail == 'Did you mean "MAX_DEPTH"?'
    assert "NUM_ROUND" in e.hint and "COLSAMPLE_BYLEVEL" in e.hint
    e = error("MODEL_TYPE MLP HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '10')")
    assert e.detail is None and e.hint.startswith("MLP hyperparameters are ") and "HIDDEN_UNITS" in e.hint


def test_hyperparameters_need_a_model_type():
    e = error("HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '10')")
    assert (e.sqlstate, e.message) == (INVALID_PARAMETER_VALUE, "HYPERPARAMETERS requires MODEL_TYPE")
    assert e.position == len(BASE) + len(" HYPERPARAMETERS DEFAULT EXCEPT (") + 1
    assert options("HYPERPARAMETERS DEFAULT")["hyperparameters"] == {}


def test_hyperparameter_values_are_typed_and_kept_as_written():
    o = options("MODEL_TYPE XGBOOST OBJECTIVE 'binary:logistic' HYPERPARAMETERS DEFAULT EXCEPT "
                "(NUM_ROUND '10', eta 0.25, \"tree_method\" 'HIST', SUBSAMPLE '1')")
    assert o["hyperparameters"] == {"num_round": 10, "eta": 0.25, "tree_method": "hist", "subsample": 1.0}
    assert o["objective"] == "AUC"
    assert o["given"] == {"objective": "binary:logistic", "preprocessors": None,
                          "hyperparameters": [["NUM_ROUND", "10"], ["eta", "0.25"], ["tree_method", "HIST"],
                                              ["SUBSAMPLE", "1"]]}


def test_objective_is_not_a_hyperparameter():
    assert error("HYPERPARAMETERS DEFAULT EXCEPT (OBJECTIVE 'reg:squarederror')").sqlstate == INVALID_PARAMETER_VALUE


def test_invalid_preprocessors_json_points_into_the_literal():
    clause = "PREPROCESSORS '[{\"ColumnSet\": [\"a\"],, }]'"
    e = error(clause)
    assert e.sqlstate == INVALID_PARAMETER_VALUE and e.message.startswith("invalid PREPROCESSORS JSON")
    assert e.position == len(BASE) + 1 + clause.index(",,") + 2


@pytest.mark.parametrize("spec", ['{"ColumnSet": ["a"]}', '[{"ColumnSet": [], "Transformers": ["X"]}]',
                                  '[{"ColumnSet": ["a"], "Transformers": ["X"], "Extra": 1}]', '[1]'])
def test_preprocessors_must_have_redshift_shape(spec):
    e = error(f"PREPROCESSORS '{spec}'")
    assert (e.sqlstate, e.message) == (INVALID_PARAMETER_VALUE, "invalid PREPROCESSORS specification")


def test_kmeans_rules():
    kmeans = "CREATE MODEL m FROM t FUNCTION f"
    assert options("MODEL_TYPE KMEANS HYPERPARAMETERS DEFAULT EXCEPT (K '3')", kmeans)["hyperparameters"] == {"k": 3}
    e = error("MODEL_TYPE KMEANS", kmeans)
    assert e.sqlstate == INVALID_PARAMETER_VALUE and "K" in e.message
    assert e.position == len(kmeans) + len(" MODEL_TYPE ") + 1
    e = error("MODEL_TYPE KMEANS HYPERPARAMETERS DEFAULT EXCEPT (K '3')")
    assert e.message == "MODEL_TYPE KMEANS does not take a TARGET" and e.position == BASE.index(" y") + 2
    e = error("MODEL_TYPE KMEANS PROBLEM_TYPE REGRESSION HYPERPARAMETERS DEFAULT EXCEPT (K '3')", kmeans)
    assert e.message == "MODEL_TYPE KMEANS does not take PROBLEM_TYPE"


def test_target_is_required_for_supervised_models():
    e = error("MODEL_TYPE XGBOOST", "CREATE MODEL m FROM t FUNCTION f")
    assert (e.sqlstate, e.position) == (SYNTAX_ERROR, len("CREATE MODEL m FROM t ") + 1)


def test_auto_off_needs_a_model_type():
    e = error("AUTO OFF")
    assert (e.sqlstate, e.message, e.position) == (
        INVALID_PARAMETER_VALUE, "AUTO OFF requires MODEL_TYPE", len(BASE) + len(" AUTO ") + 1)
