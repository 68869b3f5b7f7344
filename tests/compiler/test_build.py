"""Native builds: the cache (hit, miss, damaged entry), concurrent builds of one hash,
the GTIL fallback when there is no working compiler, timeouts, and the self-test
that keeps a wrong library out of the cache."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import compiler
from compiler import cache, worker
from compiler.errors import BuildError

from .cases import CASES
from .conftest import assert_equivalent

ROOT = Path(__file__).resolve().parents[2]
#: small and quick to compile (15 depth-3 trees)
SMALL = "sk_gradient_boosting_regression"


@pytest.fixture(scope="module")
def small(registry):
    return registry.artifact(SMALL)


def _fake_compiler(tmp_path: Path, body: str) -> str:
    """An executable that answers --version like a compiler and runs `body` otherwise."""
    path = tmp_path / "fakecc"
    path.write_text(f"#!/bin/sh\nif [ \"$1\" = \"--version\" ]; then echo fakecc 1.0; exit 0; fi\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_miss_then_hit(small, tmp_path):
    first = compiler.load_predictor(small, tmp_path)
    assert first.info["cache"] == "miss" and first.info["backend"] == "native"
    assert first.info["build_seconds"] > 0 and first.info["translation_units"] >= 1
    library = Path(first.info["library"])
    assert library.parent == cache.entry_dir(tmp_path, small.sha256)
    built_at = json.loads((library.parent / cache.BUILD_INFO).read_text())["built_at"]

    started = time.perf_counter()
    assert compiler.build_library(small, tmp_path) == library  # answered from the cache
    assert time.perf_counter() - started < 1.0
    second = compiler.load_predictor(small, tmp_path)
    assert second.info["cache"] == "hit" and second.info["library"] == str(library)
    assert json.loads((library.parent / cache.BUILD_INFO).read_text())["built_at"] == built_at
    cols = CASES[SMALL].test_columns()
    np.testing.assert_array_equal(first.predict(cols), second.predict(cols))
    assert not list(library.parent.parent.glob(".tmp-*"))


def test_damaged_cache_entry_is_rebuilt(small, tmp_path):
    library = compiler.build_library(small, tmp_path)
    library.write_bytes(library.read_bytes()[:1000])  # a truncated .so must never be dlopen'ed
    assert cache.lookup(tmp_path, small.sha256) is None
    pred = compiler.load_predictor(small, tmp_path)
    assert pred.info["cache"] == "miss" and pred.info["backend"] == "native"
    assert cache.file_sha256(Path(pred.info["library"])) == cache.lookup(tmp_path, small.sha256).info["library_sha256"]


def test_two_processes_building_one_hash(small, tmp_path):
    """Both finish with the same library; exactly one compiled it (the other waited on
    the lock and found it cached); nothing half-written is left behind."""
    cmd = [sys.executable, "-m", "compiler.worker", "--cache-dir", str(tmp_path),
           "--toolchain", compiler.find_toolchain(), "--jobs", "1"]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
             for _ in range(2)]
    outs = [p.communicate(small.data, timeout=180) for p in procs]
    results = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outs]
    assert all(p.returncode == 0 for p in procs), [err.decode()[-500:] for _, err in outs]
    assert results[0]["library"] == results[1]["library"]
    assert sorted(r["cached"] for r in results) == [False, True]
    entries = [p for p in (tmp_path / small.sha256).iterdir() if not p.name.startswith(".")]
    assert entries == [cache.entry_dir(tmp_path, small.sha256)]
    assert not list((tmp_path / small.sha256).glob(".tmp-*"))
    assert cache.lookup(tmp_path, small.sha256) is not None


def test_publish_race_keeps_the_first_entry(tmp_path):
    """The atomic rename alone (no lock) already makes a lost race harmless."""
    sha = "ab" * 32
    winners = []
    for label in ("first", "second"):
        tmp = cache.temp_dir(tmp_path, sha)
        (tmp / cache.BUILD_INFO).write_text(json.dumps({"by": label}))
        winners.append(cache.publish(tmp, tmp_path, sha))
    assert winners[0] == winners[1]
    assert json.loads((winners[0] / cache.BUILD_INFO).read_text()) == {"by": "first"}
    assert not list((tmp_path / sha).glob(".tmp-*"))


def test_no_compiler_falls_back_to_gtil(small, registry, tmp_path, monkeypatch):
    native = registry.predictor(SMALL)
    gtil = compiler.load_predictor(small, tmp_path, toolchain="no-such-cc-anywhere")
    assert gtil.info["backend"] == "gtil"
    assert "no C compiler" in gtil.info["fallback_reason"]
    cols = CASES[SMALL].test_columns()
    assert_equivalent(gtil.predict(cols), native.predict(cols), what="gtil vs native")
    assert_equivalent(gtil.predict(cols), registry.trained(SMALL).reference_predict(cols), what="gtil vs reference")

    monkeypatch.setenv("MLPROXY_CC", "no-such-cc-anywhere")
    assert compiler.find_toolchain() is None
    assert compiler.load_predictor(small, tmp_path).info["backend"] == "gtil"


def test_gtil_fallback_for_classifiers_matches_reference(registry, tmp_path):
    for name in ("xgboost_multiclass", "random_forest_binary"):
        pred = compiler.load_predictor(registry.artifact(name), tmp_path, build=False)
        assert pred.info["backend"] == "gtil" and "not built" in pred.info["fallback_reason"]
        cols = CASES[name].test_columns()
        trained = registry.trained(name)
        assert_equivalent(pred.predict_proba(cols), trained.reference_predict_proba(cols), what=name)
        assert_equivalent(pred.predict(cols), trained.reference_predict(cols), what=name)


def test_failing_compiler_falls_back_with_its_message(small, tmp_path):
    cc = _fake_compiler(tmp_path, 'echo "fakecc: internal compiler error: out of cheese" >&2; exit 1')
    with pytest.raises(BuildError, match="out of cheese") as info:
        compiler.build_library(small, tmp_path / "cache", toolchain=cc)
    assert info.value.sqlstate == "XX000"
    pred = compiler.load_predictor(small, tmp_path / "cache", toolchain=cc)
    assert pred.info["backend"] == "gtil" and "out of cheese" in pred.info["fallback_reason"]
    assert cache.lookup(tmp_path / "cache", small.sha256) is None
    assert not list((tmp_path / "cache" / small.sha256).glob(".tmp-*"))


def test_build_that_overruns_its_timeout_is_stopped(small, tmp_path):
    cc = _fake_compiler(tmp_path, "sleep 60")
    started = time.perf_counter()
    with pytest.raises(BuildError, match="longer than"):
        compiler.build_library(small, tmp_path / "cache", toolchain=cc, timeout=3)
    assert time.perf_counter() - started < 30


def test_submit_build_does_not_block(small, tmp_path):
    started = time.perf_counter()
    future = compiler.submit_build(small, tmp_path)
    assert time.perf_counter() - started < 0.5
    assert future.result(timeout=180).exists()
    done = compiler.submit_build(small, tmp_path)
    assert done.done() and done.result() == future.result()


def test_non_tree_artifact_is_not_built(registry, tmp_path):
    with pytest.raises(BuildError, match="only tree models"):
        compiler.build_library(registry.artifact("linear_binary"), tmp_path)


#: per evaluator: the renderer, and a one-character bug that sends values equal to a
#: threshold the wrong way
_BREAKAGE = {
    "tl2cgen": ("render_driver", [("(base[half] < v)", "(base[half] <= v)"), ("&& *base < v", "&& *base <= v")]),
    # every input key one higher: "x <= t" becomes "x < t" (float32 images, ranks)
    "node_arrays": ("render_node_driver", [("| UINT32_C(0x80000000));", "| UINT32_C(0x80000000)) + 1;"),
                                           ("(uint32_t)b[k] + 1;", "(uint32_t)b[k] + 2;"), ("(uint32_t)b + 1;", "(uint32_t)b + 2;")]),
    # the failed test's compare: key <= row key instead of key < row key
    "quick_scorer": ("render_node_driver", [("v[k] &= key < x[k] ?", "v[k] &= key <= x[k] ?")]),
}


@pytest.mark.parametrize("evaluator", sorted(_BREAKAGE))
def test_self_test_rejects_a_library_that_disagrees_with_gtil(small, tmp_path, monkeypatch, evaluator):
    """A driver whose comparison is off by one (values equal to a threshold go the
    wrong way) must never reach the cache, whichever evaluator the model gets."""
    renderer, edits = _BREAKAGE[evaluator]
    render = getattr(worker.native, renderer)

    def broken(*args, **kwargs):
        source = render(*args, **kwargs)
        applied = [old for old, _ in edits if old in source]
        assert applied
        for old, new in edits:
            source = source.replace(old, new)
        return source

    monkeypatch.setattr(worker.native, renderer, broken)
    if evaluator != "quick_scorer":
        monkeypatch.setattr(worker.native, "QUICK_SCORER_MAX_TESTS_PER_STEP", 0.0)
    if evaluator == "tl2cgen":
        monkeypatch.setattr(worker.native, "NODE_ARRAYS_MAX_WASTE", 0.0)
    assert worker.native.EVALUATOR_NAMES[worker.choose_evaluator(small.treelite_model())[0]] == evaluator
    with pytest.raises(BuildError, match="disagrees with treelite.gtil"):
        worker.build(small, tmp_path, toolchain=compiler.find_toolchain(), jobs=1)
    assert cache.lookup(tmp_path, small.sha256) is None
    assert not list((tmp_path / small.sha256).glob(".tmp-*"))


def test_default_cache_dir_is_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv("MLPROXY_CACHE_DIR", str(tmp_path / "x"))
    assert compiler.default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("MLPROXY_CACHE_DIR")
    assert compiler.default_cache_dir().parts[-2:] == ("mlproxy", "models") or \
        compiler.default_cache_dir().name == "models"
    assert os.path.isabs(compiler.default_cache_dir())
