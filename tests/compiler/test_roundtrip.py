"""Train -> artifact -> build -> load -> predict, for every family, checked against
the scikit-learn reference (TrainedModel.reference_predict*) on held-out rows and on
adversarial batches; and the same through a fresh Python process that gets nothing
but the artifact bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import compiler

from .cases import CASES
from .conftest import assert_equivalent, tolerance
from .data import adversarial_columns, as_object_columns, take

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in reduce:RuntimeWarning")
ROOT = Path(__file__).resolve().parents[2]


def _check(registry, name: str, columns: dict, what: str) -> None:
    trained = registry.trained(name)
    pred = registry.predictor(name)
    atol = tolerance(pred.artifact)
    assert_equivalent(pred.predict(columns), trained.reference_predict(columns), what=f"{name} {what} labels",
                      atol=atol)
    if pred.is_classifier:
        assert_equivalent(pred.predict_proba(columns), trained.reference_predict_proba(columns),
                          what=f"{name} {what} probabilities", atol=atol)


@pytest.mark.parametrize("name", sorted(CASES))
def test_held_out_rows_match_reference(registry, name):
    pred = registry.predictor(name)
    if pred.artifact.kind == "tree":
        assert pred.info["backend"] == "native", pred.info.get("fallback_reason")
    _check(registry, name, CASES[name].test_columns(), "held-out")


@pytest.mark.parametrize("name", sorted(CASES))
def test_adversarial_rows_match_reference(registry, name):
    inputs = registry.artifact(name).manifest["preprocessing"]["inputs"]
    columns = adversarial_columns(inputs)
    _check(registry, name, columns, "adversarial")
    # the same values as object arrays with None for NULL (text-format decoding)
    _check(registry, name, as_object_columns(columns), "adversarial/object")


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_row_and_empty_batch(registry, name):
    pred = registry.predictor(name)
    columns = CASES[name].test_columns()
    for row in (0, 17):
        _check(registry, name, take(columns, [row]), f"row {row}")
    empty = take(columns, slice(0, 0))
    labels = pred.predict(empty)
    assert labels.shape == (0,)
    if pred.is_classifier:
        assert pred.predict_proba(empty).shape == (0, len(pred.classes))
        assert labels.dtype == np.asarray(pred.classes).dtype


FRESH_PROCESS = r"""
import json, sys
import numpy as np
import compiler
from tests.compiler.cases import CASES

job = json.loads(sys.argv[1])
results = {}
for name, path in job["artifacts"].items():
    art = compiler.load(open(path, "rb").read(), expected_sha256=job["sha256"][name])
    pred = compiler.load_predictor(art, job["cache_dir"])
    cols = CASES[name].test_columns()
    out = {"labels": pred.predict(cols).tolist(), "backend": pred.info["backend"]}
    if pred.is_classifier:
        out["proba"] = pred.predict_proba(cols).tolist()
    results[name] = out
print(json.dumps(results))
"""


def test_fresh_process_predicts_from_artifact_bytes_alone(registry, tmp_path):
    names = sorted(CASES)
    paths, shas = {}, {}
    for name in names:
        art = registry.artifact(name)
        registry.predictor(name)  # the library is built (the fresh process finds it cached)
        paths[name] = str(tmp_path / f"{name}.mlpx")
        Path(paths[name]).write_bytes(art.data)
        shas[name] = art.sha256
    job = json.dumps({"artifacts": paths, "sha256": shas, "cache_dir": str(registry.cache_dir)})
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS, job], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in names:
        trained = registry.trained(name)
        cols = CASES[name].test_columns()
        res = results[name]
        if registry.artifact(name).kind == "tree":
            assert res["backend"] == "native"
        want = trained.reference_predict(cols)
        got = np.asarray(res["labels"], dtype=want.dtype)
        atol = tolerance(registry.artifact(name))
        assert_equivalent(got, want, what=f"{name} fresh-process labels", atol=atol)
        if "proba" in res:
            assert_equivalent(np.asarray(res["proba"]), trained.reference_predict_proba(cols),
                              what=f"{name} fresh-process probabilities", atol=atol)


def test_artifact_is_deterministic_and_survives_reload(registry):
    name = "random_forest_binary"
    first = registry.artifact(name)
    again = compiler.dump(registry.trained(name))
    assert again.data == first.data and again.sha256 == first.sha256
    loaded = compiler.load(first.data, expected_sha256=first.sha256)
    assert loaded.manifest == first.manifest
    assert loaded.treelite_model().num_tree == registry.trained(name).estimator.n_estimators


def test_thresholds_are_compared_like_scikit_learn(registry):
    """Inputs exactly on every split threshold and one float32/float64 step either
    side: a tree that compared in the wrong precision would disagree here."""
    for name in ("sk_gradient_boosting_binary", "sk_random_forest_multiclass", "sk_hist_poisson"):
        trained = registry.trained(name)
        est = trained.estimator
        pred = registry.predictor(name)
        model = pred.artifact.treelite_model()
        from compiler.trees import split_thresholds

        tables, _ = split_thresholds(model)
        n = max(len(t) for t in tables) * 5
        rng = np.random.default_rng(0)
        cols = {}
        for j, t in enumerate(tables):
            t32 = t.astype(np.float32)
            pool = np.concatenate([t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf),
                                   np.nextafter(t32, np.float32(-np.inf)).astype(np.float64),
                                   np.nextafter(t32, np.float32(np.inf)).astype(np.float64)]) if len(t) else [0.0]
            cols[f"x{j}"] = rng.permutation(np.resize(pool, n))
        assert_equivalent(pred.predict(cols), trained.reference_predict(cols), what=f"{name} thresholds")
        if pred.is_classifier:
            assert_equivalent(pred.predict_proba(cols), est.predict_proba(trained.transform(cols)),
                              what=f"{name} threshold probabilities")


CODE_CASES = sorted(name for name, case in CASES.items() if getattr(case, "codes", False))


@pytest.mark.parametrize("name", CODE_CASES)
def test_integer_codes_are_keyed_as_the_proxy_hands_them_over(registry, name):
    """An integer code feeds a numeric feature and (trees) ordinals whose keys are the
    float64 form of the value; int64, float64 and object batches give the same bits,
    few rows or many."""
    trained = registry.trained(name)
    ops = [f["op"] for f in trained.preprocessing["features"] if f["input"] == "store"]
    assert ops[0] == "numeric" and ops[1:] and set(ops[1:]) == {"ordinal"}, ops
    cats = next(f["categories"] for f in trained.preprocessing["features"] if f["op"] == "ordinal"
                and f["input"] == "store")
    assert all(c.endswith(".0") and 4100 <= float(c) < 4120 for c in cats), cats[:5]
    assert any("behaves as a code" in line for line in trained.report), trained.report
    pred = registry.predictor(name)
    columns = CASES[name].test_columns()
    present = ~np.isnan(columns["store"])
    ints = {**take(columns, present), "store": columns["store"][present].astype(np.int64)}
    for rows in (slice(None), slice(0, 3)):
        got = take(ints, rows)
        want = take(take(columns, present), rows)
        assert_equivalent(pred.predict(got), pred.predict(want), what=f"{name} int64 codes", atol=0.0)
        assert_equivalent(trained.reference_predict(got), trained.reference_predict(want),
                          what=f"{name} int64 codes (reference)", atol=0.0)
