"""`<function>_probabilities` (and its alias `<function>_prob`): Redshift's jsonb
shape, {"probabilities": [...], "labels": [...]}, both arrays sorted by probability,
highest first, equal probabilities in the labels' order; printed as Postgres prints
jsonb; the two names are one function of the model."""

from __future__ import annotations

import json

import numpy as np
import psycopg
import pytest
from hypothesis import given, settings, strategies as st

from proxy.inference.evaluate import probabilities_jsonb
from proxy.inference.interceptor import _functions
from proxy.inference.registry import DatabaseModels, ModelEntry


def test_sorted_by_probability_highest_first():
    out = probabilities_jsonb(["a", "b", "c"], [[0.2, 0.5, 0.3], [0.7, 0.1, 0.2]])
    assert [json.loads(v) for v in out] == [
        {"labels": ["b", "c", "a"], "probabilities": [0.5, 0.3, 0.2]},
        {"labels": ["a", "c", "b"], "probabilities": [0.7, 0.2, 0.1]},
    ]


def test_ties_keep_the_label_order():
    out = probabilities_jsonb([False, True], [[0.5, 0.5]])
    assert json.loads(out[0]) == {"labels": [False, True], "probabilities": [0.5, 0.5]}
    out = probabilities_jsonb([3, 1, 2], [[0.25, 0.5, 0.25]])
    assert json.loads(out[0]) == {"labels": [1, 3, 2], "probabilities": [0.5, 0.25, 0.25]}


def test_labels_keep_their_json_type():
    out = probabilities_jsonb(np.array([0, 1]), np.array([[0.9, 0.1]]))
    assert out[0] == '{"labels": [0, 1], "probabilities": [0.9, 0.1]}'
    out = probabilities_jsonb(["x\"y", "é"], [[0.1, 0.9]])
    assert json.loads(out[0])["labels"] == ["é", "x\"y"]


@pytest.fixture(scope="module")
def direct(upstream):
    with psycopg.connect(host=upstream.host, port=upstream.port, user="postgres", dbname="postgres",
                         autocommit=True) as conn:
        yield conn


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(0, 1, allow_nan=False), min_size=3, max_size=3), min_size=1, max_size=5))
def test_the_text_is_what_postgres_prints_for_the_jsonb(direct, rows):
    out = probabilities_jsonb(["no", "maybe", "yes"], rows)
    for text, row in zip(out, rows):
        assert direct.execute("SELECT %s::jsonb::text", (text,)).fetchone()[0] == text
        value = json.loads(text)
        order = np.argsort(-np.asarray(row), kind="stable")
        assert value["probabilities"] == [row[j] for j in order]
        assert value["labels"] == [["no", "maybe", "yes"][j] for j in order]


def _entry(problem_type: str | None, return_type: str = "text") -> ModelEntry:
    return ModelEntry(7, "public", "m", "public", "predict_churn", "public.predict_churn(integer)", ("age",),
                      ("integer",), return_type, "READY", None, problem_type, "sha")


def test_probabilities_and_prob_are_one_function_of_the_model():
    models = DatabaseModels.build([_entry("BINARY_CLASSIFICATION")])
    assert models.by_function["predict_churn_probabilities"] == models.by_function["predict_churn_prob"]
    assert models.mentions_call(b"SELECT predict_churn_probabilities(age) FROM t")
    functions = _functions(models)
    prob = functions["predict_churn_prob"][0]
    probabilities = functions["predict_churn_probabilities"][0]
    assert (prob.kind, prob.return_type, prob.model_id) == ("prob", "jsonb", 7)
    assert (probabilities.kind, probabilities.return_type, probabilities.model_id) == ("prob", "jsonb", 7)


def test_a_regression_model_has_neither():
    functions = _functions(DatabaseModels.build([_entry("REGRESSION", "double precision")]))
    assert set(functions) == {"predict_churn"}
