"""Shared, lazily built state for the compiler tests.

Training and native builds dominate the suite's time, so each case is trained once
per session, and the first test that needs a predictor starts every tree build at
once (they run in worker processes in parallel) into one session cache directory.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import compiler

from .cases import CASES


class Registry:
    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._trained: dict[str, Any] = {}
        self._artifacts: dict[str, compiler.Artifact] = {}
        self._predictors: dict[str, compiler.Predictor] = {}
        self._builds: dict[str, concurrent.futures.Future] = {}

    def trained(self, name: str) -> Any:
        if name not in self._trained:
            self._trained[name] = CASES[name].train()
        return self._trained[name]

    def artifact(self, name: str) -> compiler.Artifact:
        if name not in self._artifacts:
            self._artifacts[name] = compiler.dump(self.trained(name))
        return self._artifacts[name]

    def start_builds(self) -> None:
        if self._builds:
            return
        for name in CASES:
            art = self.artifact(name)
            if art.kind == "tree":
                self._builds[name] = compiler.submit_build(art, self.cache_dir)

    def predictor(self, name: str) -> compiler.Predictor:
        if name not in self._predictors:
            self.start_builds()
            if name in self._builds:
                self._builds[name].result()
            self._predictors[name] = compiler.load_predictor(self.artifact(name), self.cache_dir)
        return self._predictors[name]


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Registry:
    return Registry(tmp_path_factory.mktemp("compiled-models"))


@pytest.fixture(scope="session")
def cache_dir(registry) -> Path:
    return registry.cache_dir


#: absolute tolerance for XGBoost's float32 outputs (a probability p near 1 has an
#: error of ~6e-8 in 1 - p)
XGBOOST_ATOL = 1e-6


def tolerance(artifact: compiler.Artifact) -> float:
    return XGBOOST_ATOL if artifact.manifest["estimator"].get("family") == "XGBoost" else 1e-12


def assert_equivalent(got: np.ndarray, want: np.ndarray, *, what: str, atol: float = 1e-12) -> None:
    """The issue's equivalence rule: labels identical (and of the same kind),
    probabilities and values within 1e-5 relative (with a tiny absolute floor for
    values that are zero up to rounding; XGBoost computes in float32, so its models
    are compared with a float32 floor, XGBOOST_ATOL)."""
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if want.dtype.kind in "fc":
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol, err_msg=what)
    else:
        assert got.dtype.kind == want.dtype.kind, f"{what}: dtype {got.dtype} vs {want.dtype}"
        mismatch = np.flatnonzero(got != want)
        assert mismatch.size == 0, f"{what}: {mismatch.size} labels differ, first at row {mismatch[:5]}"
