"""The page itself, from catalog rows as visible_models gives them: names that are
markup, mathtext or comment closers stay text; Shapley values win over importances
when the row has them; a missing matplotlib is said with the command that fixes it."""

from __future__ import annotations

import subprocess
import sys
from html import escape
from pathlib import Path

from proxy.report.load import ModelData, ReportError, parse_model_name
from proxy.report.page import render

NASTY = ["<em>bold</em>", "$\\frac{1}{0$", "--><script>x()</script><!--", "a&amp;b", "\"'`"]


def _row(**extra):
    evaluation = {"kind": "classification", "rows": 9, "classes": NASTY[:3], "threshold": None,
                  "confusion_matrix": [[3, 0, 0], [0, 2, 1], [0, 0, 3]],
                  "curves": [{"class": c, "roc": {"fpr": [0, 0.5, 1], "tpr": [0, 0.9, 1], "auc": 0.9},
                              "pr": {"recall": [0, 1], "precision": [1, 0.5], "average_precision": 0.8}}
                             for c in NASTY[:3]],
                  "trials": [{"trial": i, "family": NASTY[i % 5], "score": 0.5 + i / 10,
                              "seconds": 1.0, "fidelity": 1.0, "phase": "screen",
                              "params": {NASTY[0]: NASTY[1]}} for i in range(4)],
                  "greater_is_better": True}
    row = {"schema_name": NASTY[0], "model_name": NASTY[2], "state": "READY",
           "model_type": NASTY[3], "problem_type": "MULTICLASS_CLASSIFICATION", "objective": NASTY[1],
           "metrics": {NASTY[4]: 1.0}, "target": NASTY[0],
           "feature_importances": {n: 0.2 for n in NASTY}, "details": {"evaluation": evaluation}}
    row.update(extra)
    return row


def test_every_catalog_value_is_text():
    html = render(ModelData(None, "m", _row(), [(n, n) for n in NASTY], user=NASTY[2], database=NASTY[0]))
    for name in NASTY:
        assert escape(name) in html
        if escape(name) != name:
            assert name not in html
    assert "<script" not in html and "<em>" not in html
    assert "&lt;em&gt;bold&lt;/em&gt;" in html and "--&gt;&lt;script&gt;" in html
    assert 'id="fig-importance"' in html and "Feature importance</h2>" in html
    assert html.count("<svg") == 5  # leaderboard, importance, confusion, ROC, PR


def test_shapley_values_are_preferred():
    shap = {"version": "1.0", "explanations": {"kernel_shap": {
        "label0": {"global_shap_values": {"x": 0.5, "y": -0.25}, "expected_value": 0.1},
        "label1": {"global_shap_values": {"x": 0.25, "y": 0.25}, "expected_value": 0.1}}}}
    html = render(ModelData(None, "m", _row(explanations=shap), []))
    assert "Feature importance (Shapley values)</h2>" in html and "mean |SHAP value|" not in html


def test_model_names_parse_as_sql_spells_them():
    assert parse_model_name("Sales.Churn") == ("sales", "churn")
    assert parse_model_name('"My Schema"."<script>"') == ("My Schema", "<script>")
    assert parse_model_name('"a""b"') == (None, 'a"b')
    for bad in ("a.b.c", "a..b", "", '"unterminated'):
        try:
            parse_model_name(bad)
        except ReportError as exc:
            assert exc.sqlstate == "42601"
        else:
            raise AssertionError(bad)


def test_without_matplotlib_the_command_says_how_to_install_it(tmp_path):
    blocker = tmp_path / "matplotlib"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    done = subprocess.run([sys.executable, "-m", "proxy", "report", "m", "-o", str(tmp_path / "x.html")],
                          capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2],
                          env={"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parents[2]}",
                               "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    assert "pip install 'mlproxy[report]'" in done.stderr
    assert not (tmp_path / "x.html").exists()


def test_large_models_give_a_bounded_page():
    import numpy as np
    from automl import evaluation as E

    rng = np.random.default_rng(5)
    k = 60
    y = rng.integers(0, k, 4000)
    proba = rng.random((4000, k))
    proba /= proba.sum(axis=1, keepdims=True)
    ev = E.classification_evaluation(y, proba, [f"class {i}" for i in range(k)],
                                     "MULTICLASS_CLASSIFICATION", None)
    ev["trials"] = E.trials([{"trial": i, "family": "XGBOOST", "score": float(rng.random()),
                              "seconds": 0.1, "fidelity": 0.5, "phase": "screen",
                              "params": {"max_depth": i % 7}} for i in range(800)])
    row = {"schema_name": "s", "model_name": "m", "state": "READY", "objective": "Accuracy",
           "metrics": {"accuracy": 0.1}, "feature_importances": {f"c{i}": 1 / 200 for i in range(200)},
           "details": {"evaluation": ev}, "progress": {"phase": "done", "trials": 800}}
    html = render(ModelData("s", "m", row, []))
    assert "the 30 most important of 200 inputs" in html
    assert "Too many classes for a confusion matrix" in html and 'id="fig-roc"' in html
    assert html.count("<tr><td class=\"num\">") == 25 and "800 trials (the first 500 stored)" in html
    centers = rng.random((10, 60)).tolist()
    km = {"kind": "clustering", "rows": 50, "features": [f"f{i}" for i in range(60)], "centroids": centers,
          "sizes": [5] * 10, "held_out_sizes": [5] * 10, "trials": [], "greater_is_better": False}
    html2 = render(ModelData("s", "k", {**row, "details": {"evaluation": km}}, []))
    assert 'id="fig-centroids"' in html2 and 'id="fig-cluster-sizes"' in html2
    assert len(html) < 3_000_000 and len(html2) < 3_000_000
