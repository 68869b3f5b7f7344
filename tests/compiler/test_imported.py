"""compiler/imported.py without a database: what a model file is taken for, how a
model.tar.gz is read, and the artifact an imported model becomes (its predictions
equal xgboost's and lightgbm's through the same predictor trained models use)."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile

import joblib
import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb

from compiler.artifact import dump, load
from compiler.imported import Declaration, ImportRefused, detect_format, import_model, unpack_targz
from compiler.predictor import load_predictor

LIMIT = 1 << 22


def _data(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    X[::9, 2] = np.nan
    return X, (X[:, 0] + np.nan_to_num(X[:, 2]) > 0).astype(int)


@pytest.fixture(scope="module")
def booster():
    X, y = _data()
    return xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(X, y), 10)


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def _dumped(obj, compress) -> bytes:
    out = io.BytesIO()
    joblib.dump(obj, out, compress=compress)
    return out.getvalue()


@pytest.mark.parametrize("compress", [0, 3, ("bz2", 3), ("xz", 3), ("lzma", 3)])
def test_pickles_and_joblib_files_are_refused_with_the_reason(compress):
    with pytest.raises(ImportRefused) as err:
        detect_format(_dumped({"model": 1}, compress))
    assert err.value.sqlstate == "0A000" and "pickle" in err.value.message


def test_a_gzipped_pickle_and_a_tar_holding_a_pickle_are_refused_as_pickles():
    with pytest.raises(ImportRefused, match="pickle"):
        import_model(_dumped({"m": 1}, ("gzip", 3)), Declaration(("real",), "integer"), max_bytes=LIMIT)
    archive = _tar([(tarfile.TarInfo("xgboost-model"), pickle.dumps({"m": 1}, protocol=4))])
    with pytest.raises(ImportRefused, match="pickle"):
        unpack_targz(archive, LIMIT)


def test_formats_are_told_by_their_bytes(booster, tmp_path):
    assert detect_format(bytes(booster.save_raw("json"))) == "xgboost_json"
    assert detect_format(bytes(booster.save_raw("ubj"))) == "xgboost_ubjson"
    X, y = _data()
    text = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), num_boost_round=3).model_to_string()
    assert detect_format(text.encode()) == "lightgbm"
    assert detect_format(_tar([(tarfile.TarInfo("x"), b"1")])) == "targz"
    for other in (b"", b"\x89PNG\r\n", b"PK\x03\x04zip", b"hello"):
        with pytest.raises(ImportRefused) as err:
            detect_format(other)
        assert err.value.sqlstate == "22023"
    with pytest.raises(ImportRefused, match="JSON but not an XGBoost model"):
        import_model(b'{"a": 1}', Declaration(("real",), "integer"), max_bytes=LIMIT)


def test_model_tar_gz_is_read_in_memory_and_bounded(booster):
    model = bytes(booster.save_raw("ubj"))
    link = tarfile.TarInfo("../../../tmp/xgboost-model")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    archive = _tar([(tarfile.TarInfo("code/train.py"), b"print(1)"), (link, b""),
                    (tarfile.TarInfo("../xgboost-model"), model)])
    assert unpack_targz(archive, LIMIT) == model  # the one model; names are never paths here
    with pytest.raises(ImportRefused) as err:
        unpack_targz(gzip.compress(b"\0" * (LIMIT + 10)), LIMIT)
    assert err.value.sqlstate == "54000"
    with pytest.raises(ImportRefused) as err:
        unpack_targz(archive[: len(archive) // 2], LIMIT)
    assert err.value.sqlstate == "XX001"
    two = _tar([(tarfile.TarInfo("a.json"), bytes(booster.save_raw("json"))), (tarfile.TarInfo("b"), model)])
    with pytest.raises(ImportRefused, match="holds 2 XGBoost models"):
        unpack_targz(two, LIMIT)


def test_imported_models_predict_what_their_library_predicts(booster):
    X, y = _data(300, seed=5)
    cases = [
        (bytes(booster.save_raw("json")), "integer", lambda p: (booster.predict(xgb.DMatrix(X)) >= 0.5).astype(int)),
        (bytes(booster.save_raw("ubj")), "double precision", lambda p: booster.predict(xgb.DMatrix(X))),
    ]
    reg = lgb.train({"objective": "regression", "verbose": -1}, lgb.Dataset(X, X[:, 0] * 2), num_boost_round=20)
    cases.append((reg.model_to_string().encode(), "real", lambda p: reg.predict(X)))
    for data, returns, expected in cases:
        imported = import_model(data, Declaration(("real", "double precision", "numeric"), returns), max_bytes=LIMIT)
        artifact = load(dump(imported).data)
        predictor = load_predictor(artifact, build=False)  # Treelite's interpreter; the library: tests/ml
        got = predictor.predict({name: X[:, j] for j, name in enumerate(predictor.preprocessor.input_names)})
        np.testing.assert_allclose(np.asarray(got, dtype=float), expected(None), rtol=0, atol=2e-6)


def test_the_model_names_the_arguments_when_it_has_feature_names():
    X, y = _data()
    named = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(X, y, feature_names=["age", "plan", "usage"]), 3)
    imported = import_model(bytes(named.save_raw("json")), Declaration(("real",) * 3, "boolean"), max_bytes=LIMIT)
    assert [i["name"] for i in imported.preprocessing["inputs"]] == ["age", "plan", "usage"]
    assert imported.classes == [False, True] and imported.summary["objective"] == "binary:logistic"
    with pytest.raises(ImportRefused) as err:
        import_model(bytes(named.save_raw("json")), Declaration(("real",) * 4, "boolean"), max_bytes=LIMIT)
    assert (err.value.sqlstate, err.value.clause) == ("22023", "function")
