"""The artifact container: content addressing, refusal of damaged or foreign bytes,
and refusal (at dump time) of models that cannot be compiled."""

from __future__ import annotations

import copy
import hashlib
import struct
from dataclasses import replace

import numpy as np
import pytest

import compiler
from compiler import artifact as art_mod
from compiler.errors import CorruptArtifact, UnsupportedArtifact, UnsupportedModel

from .cases import SklearnTrained


@pytest.fixture(scope="module")
def tree_art(registry):
    return registry.artifact("xgboost_binary")


@pytest.fixture(scope="module")
def linear_art(registry):
    return registry.artifact("linear_multiclass")


def test_sha256_is_the_hash_of_the_bytes(tree_art, linear_art):
    for a in (tree_art, linear_art):
        assert a.sha256 == hashlib.sha256(a.data).hexdigest()
        assert a.data.startswith(art_mod.MAGIC)
    assert tree_art.kind == "tree" and len(tree_art.payload) > 0
    assert linear_art.kind == "linear" and linear_art.payload == b""


def test_artifact_holds_no_executable_code(tree_art):
    """DESIGN principle 5: JSON and a Treelite checkpoint only — no pickle opcodes,
    no ELF/Mach-O/PE headers."""
    for marker in (b"\x80\x04\x95", b"\x80\x05\x95", b"\x7fELF", b"\xcf\xfa\xed\xfe", b"MZ\x90\x00"):
        assert marker not in tree_art.data


@pytest.mark.parametrize("damage", ["flip_payload", "flip_manifest", "flip_trailer", "truncate", "append",
                                    "garbage", "empty", "bad_magic"])
def test_damaged_bytes_are_refused(tree_art, damage):
    data = bytearray(tree_art.data)
    if damage == "flip_payload":
        data[len(data) - 100] ^= 0x01
    elif damage == "flip_manifest":
        data[20] ^= 0x20
    elif damage == "flip_trailer":
        data[-1] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "append":
        data += b"\0"
    elif damage == "garbage":
        data = bytearray(b"not an artifact at all" * 3)
    elif damage == "empty":
        data = bytearray()
    elif damage == "bad_magic":
        data[0:8] = b"PK\x03\x04zipz"
    with pytest.raises(CorruptArtifact) as info:
        compiler.load(bytes(data))
    assert info.value.sqlstate == "XX001"
    assert "artifact" in str(info.value)


def test_hash_mismatch_is_refused_even_for_valid_bytes(tree_art, linear_art):
    with pytest.raises(CorruptArtifact, match="expected") as info:
        compiler.load(linear_art.data, expected_sha256=tree_art.sha256)
    assert info.value.sqlstate == "XX001"
    assert compiler.load(tree_art.data, expected_sha256=tree_art.sha256.upper()).sha256 == tree_art.sha256


def test_load_predictor_checks_the_expected_hash(tree_art, linear_art, cache_dir):
    with pytest.raises(CorruptArtifact):
        compiler.load_predictor(linear_art.data, cache_dir, expected_sha256=tree_art.sha256)
    with pytest.raises(CorruptArtifact):
        compiler.load_predictor(linear_art, cache_dir, expected_sha256=tree_art.sha256)


def test_newer_format_is_reported_as_unsupported(linear_art):
    head = struct.pack("<8sII", art_mod.MAGIC, art_mod.FORMAT_VERSION + 1, 2) + b"{}" + struct.pack("<Q", 0)
    data = head + hashlib.sha256(head).digest()
    with pytest.raises(UnsupportedArtifact) as info:
        compiler.load(data)
    assert info.value.sqlstate == "0A000"


def _repack(manifest: dict, payload: bytes = b"") -> bytes:
    return art_mod._pack(manifest, payload)


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update(problem_type="RANKING"), "problem_type"),
    (lambda m: m.update(kind="svm"), "kind"),
    (lambda m: m.update(classes=["only-one"]), "class"),
    (lambda m: m.update(threshold=1.5), "threshold"),
    (lambda m: m["estimator"].update(coef=[[1.0]] * len(m["estimator"]["coef"])), "features"),
    (lambda m: m["estimator"].update(link="probit"), "link"),
    (lambda m: m["estimator"].update(intercept=[0.0]), "intercept"),
    (lambda m: m["preprocessing"]["features"][0].update(op="bucketize"), "op"),
    (lambda m: m["preprocessing"]["features"][0].update(input="nope"), "input"),
    (lambda m: m.update(preprocessing=[]), "preprocessing"),
])
def test_well_framed_but_invalid_manifest_is_corrupt(linear_art, edit, match):
    manifest = copy.deepcopy(linear_art.manifest)
    edit(manifest)
    with pytest.raises(CorruptArtifact, match=match):
        compiler.load(_repack(manifest))


def test_tree_manifest_without_checkpoint_is_corrupt(tree_art):
    with pytest.raises(CorruptArtifact, match="checkpoint"):
        compiler.load(_repack(copy.deepcopy(tree_art.manifest), b""))


def test_tree_checkpoint_that_treelite_rejects_is_corrupt(tree_art):
    # a consistent container whose checkpoint is not Treelite's format
    with pytest.raises(CorruptArtifact, match="Treelite"):
        compiler.load(_repack(copy.deepcopy(tree_art.manifest), b"\x00" * 64))


def _trained_with(estimator, registry, name="sk_gradient_boosting_binary"):
    base = registry.trained(name)
    return replace(base, estimator=estimator)


def test_model_treelite_cannot_import_is_refused_with_a_clear_error(registry):
    from sklearn.tree import DecisionTreeClassifier

    X = np.random.default_rng(0).normal(size=(20, 5))
    tree = DecisionTreeClassifier(max_depth=2).fit(X, np.arange(20) % 2)
    with pytest.raises(UnsupportedModel, match="DecisionTreeClassifier") as info:
        compiler.dump(_trained_with(tree, registry))
    assert info.value.sqlstate == "0A000"
    with pytest.raises(UnsupportedModel):
        compiler.dump(_trained_with(object(), registry))


def test_native_categorical_splits_are_refused(registry):
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = np.c_[rng.integers(0, 6, 200), rng.normal(size=(200, 4))]
    est = HistGradientBoostingClassifier(max_iter=3, categorical_features=[0]).fit(X, X[:, 0] % 2)
    with pytest.raises(UnsupportedModel, match="categorical"):
        compiler.dump(_trained_with(est, registry))


def test_estimator_with_wrong_feature_count_is_refused(registry):
    from sklearn.ensemble import RandomForestClassifier

    rf = RandomForestClassifier(n_estimators=2, random_state=0).fit(np.random.rand(30, 3), np.arange(30) % 2)
    with pytest.raises(UnsupportedModel, match="3 features"):
        compiler.dump(_trained_with(rf, registry))


def test_json_estimator_is_validated_at_dump(registry):
    base = registry.trained("linear_binary")
    bad = copy.deepcopy(base.estimator)
    bad["coef"] = [[float("nan")] * len(bad["coef"][0])]
    with pytest.raises(UnsupportedModel, match="non-finite"):
        compiler.dump(replace(base, estimator=bad))
    bad = copy.deepcopy(base.estimator)
    bad["link"] = "probit"
    with pytest.raises(UnsupportedModel, match="link"):
        compiler.dump(replace(base, estimator=bad))


def test_classes_keep_their_type_through_json(registry):
    for name, kind in (("xgboost_binary", bool), ("xgboost_multiclass", str), ("sk_random_forest_multiclass", int)):
        loaded = compiler.load(registry.artifact(name).data)
        assert all(type(c) is kind for c in loaded.manifest["classes"]), loaded.manifest["classes"]


def test_sklearn_trained_fixture_is_a_real_fitted_model(registry):
    trained = registry.trained("sk_gradient_boosting_binary")
    assert isinstance(trained, SklearnTrained)
    assert hasattr(trained.estimator, "estimators_") and trained.classes == ["no", "yes"]
