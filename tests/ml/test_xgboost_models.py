"""MODEL_TYPE XGBOOST through the proxy: an XGBoost objective and hyperparameters
reach the trainer (the model is XGBoost's, with that loss), the model function
predicts, and the catalog holds the Shapley values the worker computed."""

from __future__ import annotations

import json

import psycopg

from tests.ml.conftest import wait_for_state


def test_auto_off_xgboost_objective_trains_and_stores_explanations(dataset_tables):
    with psycopg.connect(dataset_tables.dsn(), autocommit=True) as conn:
        conn.execute("DROP MODEL IF EXISTS tweedie_model")
        conn.execute("""
            CREATE MODEL tweedie_model FROM (SELECT f0, f1, f2, f3, progression FROM diabetes)
            TARGET progression FUNCTION predict_tweedie
            MODEL_TYPE XGBOOST OBJECTIVE 'reg:tweedie' AUTO OFF
            HYPERPARAMETERS DEFAULT EXCEPT (NUM_ROUND '30', MAX_DEPTH '3', GAMMA '0.5', ALPHA '1')
            SETTINGS (MAX_RUNTIME 60)""")
        info = wait_for_state(conn, "tweedie_model")
        assert info["Model State"] == "READY", info
        assert info["Problem Type"] == "REGRESSION"
        (model_type, leaderboard, explanations), = conn.execute(
            "SELECT model_type, leaderboard, explanations FROM mlproxy.models WHERE model_name = 'tweedie_model'"
        ).fetchall()
        assert model_type == "XGBOOST"
        params = leaderboard[0]["params"]
        assert (params["objective"], params["num_round"], params["max_depth"], params["gamma"], params["alpha"]) \
            == ("reg:tweedie", 30, 3, 0.5, 1.0)
        label = explanations["explanations"]["kernel_shap"]["label0"]
        assert sorted(label["global_shap_values"]) == ["f0", "f1", "f2", "f3"]
        assert all(v >= 0 for v in label["global_shap_values"].values()) and label["global_shap_values"]["f2"] > 0
        assert isinstance(label["expected_value"], float)
        (value,), = conn.execute("SELECT predict_tweedie(f0, f1, f2, f3) FROM diabetes LIMIT 1").fetchall()
        assert value > 0  # tweedie: exp of the margin
        json.dumps(explanations)
