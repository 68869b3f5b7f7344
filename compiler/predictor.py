"""The batch predictor the proxy calls: columns in, predictions out.

`load_predictor` turns an artifact into a `Predictor`: tree ensembles run in the
compiled library (built or found in the cache) or, when there is no compiler or the
build failed, in treelite.gtil, which is slower but gives the same answers; `info`
says which and why. Linear, MLP and k-means models are numpy matrix products.

A call validates the batch (names, dtypes, lengths, finiteness) before any native
code runs, preprocesses it with whole-array numpy, then makes one native call for
all rows. Predictors hold no per-call state: any number of threads may share one.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import treelite

from . import build as build_mod
from . import cache, dense, native, trees
from .artifact import Artifact, load
from .errors import BuildError, CompilerError, NotAClassifier, ValueOutOfRange
from .preprocess import Preprocessor


class TreeScorer:
    """Tree ensemble outputs from the native library or, as a fallback, from GTIL."""

    kind = "tree"

    def __init__(self, model: treelite.Model, layout: trees.TreeLayout, problem_type: str, precision: str,
                 library: native.NativeLibrary | None) -> None:
        self.model = model
        self.layout = layout
        self.problem_type = problem_type
        self.precision = precision
        self.library = library
        self.round32 = precision == "float32"
        self.n_features = layout.n_features
        # Treelite does not document concurrent GTIL calls on one model, so the
        # fallback serializes them; the native driver needs no lock (it writes
        # nothing but its own buffers)
        self._gtil_lock = threading.Lock()

    @property
    def can_overflow(self) -> bool:
        return self.layout.can_overflow

    @property
    def backend(self) -> str:
        return "native" if self.library is not None else "gtil"

    def outputs(self, X: np.ndarray, nthread: int = 1) -> np.ndarray:
        if self.library is not None:
            margins = self.library.margins(X, round32=self.round32, nthread=nthread)
        else:
            with self._gtil_lock:
                margins = trees.gtil_margins(self.model, X, self.precision, nthread)
        return self.layout.outputs(margins, self.problem_type)


class Predictor:
    """Predictions for one model; see the module docstring."""

    def __init__(self, artifact: Artifact, scorer: Any, info: dict[str, Any], *, nthread: int = 1) -> None:
        m = artifact.manifest
        self.artifact = artifact
        self.problem_type: str = m["problem_type"]
        self.classes: list[Any] | None = m.get("classes")
        self.threshold: float = 0.5 if m.get("threshold") is None else float(m["threshold"])
        self.preprocessor = Preprocessor(m["preprocessing"])
        self.scorer = scorer
        self.nthread = max(1, int(nthread))
        self._labels = np.asarray(self.classes) if self.classes is not None else None
        self.info: dict[str, Any] = {
            "sha256": artifact.sha256,
            "kind": artifact.kind,
            "problem_type": self.problem_type,
            "model_type": m.get("model_type"),
            "inputs": [{"name": i.name, "type": i.pg_type} for i in self.preprocessor.inputs],
            "n_features": self.preprocessor.n_features,
            "classes": self.classes,
            "threshold": self.threshold if self.is_classifier else None,
            "nthread": self.nthread,
            **info,
        }

    @property
    def is_classifier(self) -> bool:
        return self.problem_type.endswith("CLASSIFICATION")

    def predict(self, columns: Mapping[str, np.ndarray], *, nthread: int | None = None) -> np.ndarray:
        """Labels (in the target's own type) for classifiers, float64 values for
        regression, int64 cluster ids for k-means; one entry per row."""
        return self._predictions(self._outputs(columns, nthread))

    def predict_matrix(self, X: np.ndarray) -> np.ndarray:
        """`predict` for a feature matrix the caller made itself, as
        `preprocessor.feature_ops()` describes (float64, either order), on one thread."""
        return self._predictions(self._scores(X, 1))

    def library_entry(self) -> tuple[int, int, bool] | None:
        """For a caller that makes the feature matrix in C and calls the compiled
        library itself (a few rows: proxy/inference/features.py): the address of the
        library's `mlpx_predict_margins`, its outputs, and its round32 argument; then
        `predictions_from_margins` of the margins it wrote is what `predict_matrix`
        gives for a matrix of finite values. None when predictions need more (no
        compiled library, or outputs that can overflow)."""
        scorer = self.scorer
        library = getattr(scorer, "library", None)
        if library is None or scorer.can_overflow:
            return None
        return library.function_address, library.n_outputs, scorer.round32

    def predictions_from_margins(self, margins: np.ndarray) -> np.ndarray:
        """`predict_matrix`'s result from the library's margins (see library_entry)."""
        return self._predictions(self.scorer.layout.outputs(margins, self.problem_type))

    def predict_proba_matrix(self, X: np.ndarray) -> np.ndarray:
        """`predict_proba` for a feature matrix (see predict_matrix)."""
        if not self.is_classifier:
            raise NotAClassifier(f"a {self.problem_type.lower()} model has no class probabilities")
        return self._scores(X, 1)

    def _predictions(self, out: np.ndarray) -> np.ndarray:
        if self.is_classifier:
            assert self._labels is not None
            if self.problem_type == "BINARY_CLASSIFICATION":
                idx = (out[:, 1] >= self.threshold).view(np.uint8)
            else:
                idx = out.argmax(axis=1)
            return self._labels.take(idx)
        if self.problem_type == "CLUSTERING":
            return out.astype(np.int64, copy=False)
        return out

    def predict_proba(self, columns: Mapping[str, np.ndarray], *, nthread: int | None = None) -> np.ndarray:
        """Class probabilities, shape (rows, len(classes)), columns in `classes` order."""
        if not self.is_classifier:
            raise NotAClassifier(f"a {self.problem_type.lower()} model has no class probabilities")
        return self._outputs(columns, nthread)

    def _outputs(self, columns: Mapping[str, np.ndarray], nthread: int | None) -> np.ndarray:
        threads = self.nthread if nthread is None else max(1, int(nthread))
        if threads > 1:  # (the row count costs ~3 us, a tenth of a one-row call)
            rows = _rows(columns)
            if rows >= _PARALLEL_MIN_ROWS:
                return self._outputs_parallel(columns, rows, threads)
        return self._outputs_serial(columns, threads)

    def _outputs_parallel(self, columns: Mapping[str, np.ndarray], rows: int,
                          threads: int) -> np.ndarray:
        """Preprocessing is whole-array numpy on one thread; with several threads,
        each takes a slice of the rows through preprocessing *and* the native call
        (numpy and the library release the GIL), instead of preprocessing the whole
        batch on one thread first. Any error is raised by the serial path, so its
        row numbers count from the batch's start."""
        bounds = np.linspace(0, rows, threads + 1).astype(int)
        parts = [{name: values[lo:hi] for name, values in columns.items()}
                 for lo, hi in zip(bounds[:-1], bounds[1:])]
        try:
            outs = list(_pool(threads).map(lambda part: self._outputs_serial(part, 1), parts))
        except CompilerError:
            return self._outputs_serial(columns, threads)
        return np.concatenate(outs)

    def _outputs_serial(self, columns: Mapping[str, np.ndarray], threads: int) -> np.ndarray:
        return self._scores(self.preprocessor.transform(columns), threads)

    def _scores(self, X: np.ndarray, threads: int) -> np.ndarray:
        """The scorer's outputs for a preprocessed matrix, after the checks on it."""
        if X.shape[0] == 0:
            return self._empty()
        self.preprocessor.check_finite(X)
        if not self.scorer.can_overflow:
            return self.scorer.outputs(X, threads)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
            out = self.scorer.outputs(X, threads)
        if out.dtype.kind == "f" and not np.isfinite(out).all():
            row = int(np.argwhere(~np.isfinite(out.reshape(len(out), -1)))[0][0])
            raise ValueOutOfRange(f"the model's output overflows at row {row + 1}; its inputs are too large")
        return out

    def _empty(self) -> np.ndarray:
        if self.is_classifier:
            return np.empty((0, len(self.classes or ())), dtype=np.float64)
        return np.empty(0, dtype=np.int64 if self.problem_type == "CLUSTERING" else np.float64)

    def __repr__(self) -> str:
        return (f"<Predictor {self.info.get('model_type')} {self.problem_type} "
                f"backend={self.info.get('backend')} sha256={self.artifact.sha256[:12]}>")


# Below this many rows a multi-threaded call preprocesses the whole batch on one
# thread and splits only the native call (thread start-up would cost more).
_PARALLEL_MIN_ROWS = 65536


def _rows(columns: Mapping[str, np.ndarray]) -> int:
    """The batch's row count if every column is a 1-D array of one length, else 0
    (then the serial path reports what is wrong)."""
    lengths = {len(v) if getattr(v, "ndim", 0) == 1 else -1 for v in columns.values()}
    return lengths.pop() if len(lengths) == 1 and -1 not in lengths else 0


@functools.lru_cache(maxsize=None)
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="mlproxy-predict")


def load_predictor(artifact: Artifact | bytes, cache_dir: Path | str | None = None, *,
                   expected_sha256: str | None = None, build: bool = True, nthread: int = 1,
                   toolchain: str | None = None, timeout: float = build_mod.DEFAULT_TIMEOUT) -> Predictor:
    """A ready predictor. For tree models the cached library is used; on a miss it is
    built first when `build` is true (blocking: call from a worker thread, or use
    `build=False` to get a GTIL predictor now and `submit_build` in the background).
    Raises CorruptArtifact/UnsupportedArtifact for bad bytes; build problems never
    raise, they select the GTIL backend and are reported in `info`."""
    if not isinstance(artifact, Artifact):
        artifact = load(artifact, expected_sha256)
    elif expected_sha256 is not None and artifact.sha256 != expected_sha256.lower():
        artifact = load(artifact.data, expected_sha256)  # raises the hash-mismatch error
    m = artifact.manifest
    if artifact.kind != "tree":
        scorer = dense.dense_model(m["estimator"])
        return Predictor(artifact, scorer, {"backend": "numpy"}, nthread=nthread)

    model = artifact.treelite_model()
    layout = trees.TreeLayout.of(model)
    precision = m["estimator"]["input_precision"]
    cache_dir = Path(cache_dir) if cache_dir is not None else cache.default_cache_dir()
    info: dict[str, Any] = {"n_trees": layout.n_trees, "input_precision": precision, "cache_dir": str(cache_dir)}
    library, reason = None, None
    hit = cache.lookup(cache_dir, artifact.sha256)
    info["cache"] = "hit" if hit is not None else "miss"
    if hit is None and build:
        try:
            build_mod.build_library(artifact, cache_dir, toolchain=toolchain, timeout=timeout)
            hit = cache.lookup(cache_dir, artifact.sha256)
        except BuildError as exc:
            reason = str(exc)
    elif hit is None:
        reason = "not built yet (build=False)"
    if hit is not None:
        try:
            library = native.NativeLibrary(hit.library, n_features=layout.n_features, n_outputs=layout.n_outputs)
            info.update(library=str(hit.library), build_seconds=hit.info.get("build_seconds"),
                        translation_units=hit.info.get("translation_units"), toolchain=hit.info.get("toolchain"),
                        evaluator=hit.info.get("evaluator"), evaluator_reason=hit.info.get("evaluator_reason"))
        except native.NativeLoadError as exc:
            reason = str(exc)
    info["backend"] = "native" if library is not None else "gtil"
    if library is None:
        info["fallback_reason"] = reason or "library missing after build"
    scorer = TreeScorer(model, layout, m["problem_type"], precision, library)
    return Predictor(artifact, scorer, info, nthread=nthread)
