"""XGBoost models (MODEL_TYPE XGBOOST, every AUTO OFF objective) compiled through
Treelite's XGBoost frontend predict what XGBoost itself predicts: values and
probabilities to float32 precision, labels exactly, on held-out rows, on rows with
NULLs and unseen categories, and on inputs exactly on (and one float32 step either
side of) every split threshold. (The generic round-trip tests run these cases
against TrainedModel.reference_predict, which is XGBoost's predict too.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb

from .cases import CASES
from .conftest import assert_equivalent
from .data import adversarial_columns

XGB_CASES = sorted(name for name in CASES if name.startswith("xgb"))
#: XGBoost sums its leaves in float32, the compiled library in float64
FLOAT32 = dict(rtol=2e-6, atol=2e-6)


def _xgboost_predict(trained, columns) -> np.ndarray:
    """XGBoost's own predict on the model's feature matrix (labels for binary:hinge
    and multi:softmax, probabilities for binary:logistic, values for reg:*)."""
    booster = trained.estimator.booster
    return booster.predict(xgb.DMatrix(trained.transform(columns)))


def _threshold_columns(trained, booster, base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`base` with each plainly encoded numeric input replaced by values on, just
    below and just above (in float32) every threshold XGBoost split it at."""
    splits: dict[int, list[float]] = {}
    for tree in json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]:
        for f, t, left in zip(tree["split_indices"], tree["split_conditions"], tree["left_children"]):
            if left != -1:
                splits.setdefault(int(f), []).append(float(t))
    out = dict(base)
    n = len(next(iter(base.values())))
    rng = np.random.default_rng(5)
    for j, feat in enumerate(trained.preprocessing["features"]):
        if feat["op"] != "numeric" or feat.get("center", 0.0) != 0.0 or feat.get("scale", 1.0) != 1.0:
            continue
        if j not in splits or base[feat["input"]].dtype.kind != "f":
            continue
        t32 = np.asarray(splits[j], dtype=np.float32)
        pool = np.concatenate([t32, np.nextafter(t32, np.float32(-np.inf)),
                               np.nextafter(t32, np.float32(np.inf))]).astype(np.float64)
        out[feat["input"]] = rng.permutation(np.resize(pool, n))
    return out


@pytest.mark.parametrize("name", XGB_CASES)
def test_xgboost_objectives_match_xgboost_predict(registry, name):
    trained = registry.trained(name)
    pred = registry.predictor(name)
    assert pred.info["backend"] == "native", pred.info.get("fallback_reason")
    assert pred.artifact.manifest["estimator"]["family"] == "XGBoost"
    loss = trained.estimator.loss
    assert loss == CASES[name].objective or CASES[name].objective is None
    held = CASES[name].test_columns()
    batches = {"held-out": held,
               "adversarial": adversarial_columns(pred.artifact.manifest["preprocessing"]["inputs"]),
               "thresholds": _threshold_columns(trained, trained.estimator.booster, held)}
    for what, cols in batches.items():
        want = _xgboost_predict(trained, cols)
        got = pred.predict(cols)
        if loss in ("binary:hinge", "multi:softmax"):  # XGBoost gives class indices
            labels = np.asarray(trained.classes)[want.astype(np.int64)]
            assert_equivalent(got, labels, what=f"{name} {what} labels")
        elif loss == "multi:softprob":  # AUTO's multiclass loss: probabilities
            np.testing.assert_allclose(pred.predict_proba(cols), want, **FLOAT32, err_msg=what)
            assert_equivalent(got, np.asarray(trained.classes)[want.argmax(axis=1)], what=f"{name} {what} labels")
        elif loss == "binary:logistic":
            np.testing.assert_allclose(pred.predict_proba(cols)[:, 1], want, **FLOAT32, err_msg=what)
            cut = 0.5 if trained.threshold is None else trained.threshold  # tuned only for F1 & co.
            assert trained.threshold is None or CASES[name].objective is None
            assert_equivalent(got, np.asarray(trained.classes)[(want >= cut).astype(np.int64)],
                              what=f"{name} {what} labels")
        else:
            np.testing.assert_allclose(got, want, rtol=FLOAT32["rtol"], atol=FLOAT32["atol"] * np.abs(want).max(),
                                       err_msg=f"{name} {what}")


def test_treelite_keeps_each_objectives_output_function(registry):
    posts = {name: registry.artifact(name).treelite_model().get_header_accessor().get_field("postprocessor")
             for name in XGB_CASES if CASES[name].objective}
    assert posts == {"xgb_binary_logistic": "sigmoid", "xgb_hinge": "hinge", "xgb_logistic": "sigmoid",
                     "xgb_pseudohubererror": "identity", "xgb_softmax": "softmax",
                     "xgb_squarederror": "identity", "xgb_squaredlogerror": "identity",
                     "xgb_tweedie": "exponential"}
