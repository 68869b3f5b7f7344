"""The portable model artifact: what the catalog stores and every proxy compiles.

Layout (all integers little-endian)::

    b"MLPXMDL\\0"            8-byte magic
    u32 format               FORMAT_VERSION
    u32 manifest length      then the manifest: canonical JSON (sorted keys), UTF-8
    u64 payload length       then the payload: a Treelite checkpoint, or nothing
    32 bytes                 sha256 of everything above

The artifact's identity is the sha256 of all of its bytes (the trailer lets a damaged
copy be detected even when the caller has no expected hash). It holds only data —
JSON and a Treelite checkpoint, never pickles or machine code (DESIGN.md principle 5)
— and is deterministic: the same trained model always gives the same bytes.
Everything is verified before a byte of it reaches Treelite's parser.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import treelite

from . import dense, trees
from .errors import CorruptArtifact, UnsupportedArtifact, UnsupportedModel
from .preprocess import Preprocessor, SpecError

MAGIC = b"MLPXMDL\0"
FORMAT_VERSION = 1
_HEAD = struct.Struct("<8sII")
_PAYLOAD_LEN = struct.Struct("<Q")
_DIGEST_LEN = 32
PROBLEM_TYPES = ("REGRESSION", "BINARY_CLASSIFICATION", "MULTICLASS_CLASSIFICATION", "CLUSTERING")
MODEL_KINDS = ("tree", "linear", "mlp", "kmeans")


@dataclass(frozen=True)
class Artifact:
    """Serialized model bytes plus their sha256; `manifest` is the decoded JSON part."""

    data: bytes = field(repr=False)
    sha256: str
    manifest: dict[str, Any] = field(repr=False, compare=False)

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def payload(self) -> bytes:
        """The Treelite checkpoint (empty for non-tree models)."""
        start, end = _payload_span(self.data)
        return self.data[start:end]

    def treelite_model(self) -> treelite.Model:
        """Deserialize the checkpoint (the bytes were verified when the artifact loaded)."""
        try:
            return treelite.Model.deserialize_bytes(self.payload)
        except treelite.TreeliteError as exc:
            raise CorruptArtifact(f"artifact {self.sha256[:12]}: Treelite cannot read its checkpoint: "
                                  f"{_first_line(exc)}") from exc


def dump(trained: Any) -> Artifact:
    """Serialize a TrainedModel (read by attribute, per docs/model-contract.md).

    Raises UnsupportedModel when the estimator is neither a Treelite-importable tree
    ensemble nor a valid JSON model, or does not fit the preprocessing spec."""
    problem_type = str(getattr(trained, "problem_type"))
    classes = _plain(getattr(trained, "classes", None))
    estimator = getattr(trained, "estimator")
    manifest: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "problem_type": problem_type,
        "model_type": str(getattr(trained, "model_type", "")),
        "objective": _plain(getattr(trained, "objective", None)),
        "target": _plain(getattr(trained, "target", None)),
        "label_type": _plain(getattr(trained, "label_type", None)),
        "classes": classes,
        "threshold": _plain(getattr(trained, "threshold", None)),
        "preprocessing": _plain(getattr(trained, "preprocessing")),
    }
    payload = b""
    if isinstance(estimator, dict):
        manifest["kind"] = estimator.get("kind")
        manifest["estimator"] = _plain(estimator)
    elif callable(getattr(estimator, "model_json", None)):
        # an XGBoost model (docs/model-contract.md): its Booster's JSON, through
        # Treelite's XGBoost frontend
        try:
            model, precision = trees.import_xgboost(estimator.model_json())
        except Exception as exc:
            raise UnsupportedModel(f"cannot compile this XGBoost model: Treelite cannot import it "
                                   f"({_first_line(exc)})") from exc
        manifest["kind"] = "tree"
        manifest["estimator"] = {"family": "XGBoost", "input_precision": precision}
        payload = model.serialize_bytes()
    elif callable(getattr(estimator, "treelite_model", None)):
        # a model trained elsewhere, already read by Treelite (compiler/imported.py)
        model, precision, family = estimator.treelite_model()
        manifest["kind"] = "tree"
        manifest["estimator"] = {"family": family, "input_precision": precision}
        payload = model.serialize_bytes()
    else:
        try:
            model, precision = trees.import_sklearn(estimator)
        except Exception as exc:  # Treelite raises several types for objects it cannot read
            raise UnsupportedModel(
                f"cannot compile a {type(estimator).__name__}: Treelite cannot import it ({_first_line(exc)})",
                hint="tree models must be scikit-learn random forests, extra trees or (hist) gradient boosting",
            ) from exc
        manifest["kind"] = "tree"
        manifest["estimator"] = {"family": type(estimator).__name__, "input_precision": precision}
        payload = model.serialize_bytes()
    try:
        _check_manifest(manifest, payload)
    except ValueError as exc:
        raise UnsupportedModel(f"cannot serialize this model: {exc}") from exc
    data = _pack(manifest, payload)
    return Artifact(data=data, sha256=hashlib.sha256(data).hexdigest(), manifest=manifest)


def load(data: bytes | bytearray | memoryview, expected_sha256: str | None = None) -> Artifact:
    """Verify and decode artifact bytes. Raises CorruptArtifact (SQLSTATE XX001) for
    bad bytes or a hash mismatch, UnsupportedArtifact for a newer format."""
    data = bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    label = (expected_sha256 or sha)[:12]
    if expected_sha256 is not None and sha != expected_sha256.lower():
        raise CorruptArtifact(f"artifact {label}: content hash is {sha[:12]}..., "
                              f"not the expected {expected_sha256[:12]}... (damaged or wrong artifact)")
    try:
        manifest_bytes, start, end = _layout(data)
    except ValueError as exc:
        raise CorruptArtifact(f"artifact {label}: {exc}") from exc
    version = _HEAD.unpack_from(data)[1]
    if version != FORMAT_VERSION:
        raise UnsupportedArtifact(f"artifact {label} has format {version}; this mlproxy reads format {FORMAT_VERSION}",
                                  hint="upgrade the proxy that reads this model")
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
        _check_manifest(manifest, data[start:end])
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, TypeError) as exc:
        raise CorruptArtifact(f"artifact {label}: invalid manifest: {exc}") from exc
    return Artifact(data=data, sha256=sha, manifest=manifest)


def _pack(manifest: dict[str, Any], payload: bytes) -> bytes:
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
    head = _HEAD.pack(MAGIC, FORMAT_VERSION, len(body)) + body + _PAYLOAD_LEN.pack(len(payload)) + payload
    return head + hashlib.sha256(head).digest()


def _layout(data: bytes) -> tuple[bytes, int, int]:
    """(manifest bytes, payload start, payload end) after checking framing and trailer."""
    if len(data) < _HEAD.size + _PAYLOAD_LEN.size + _DIGEST_LEN:
        raise ValueError(f"only {len(data)} bytes, too short to be an artifact")
    magic, _, manifest_len = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("not an mlproxy model artifact (bad magic bytes)")
    if _HEAD.size + manifest_len + _PAYLOAD_LEN.size + _DIGEST_LEN > len(data):
        raise ValueError("truncated (manifest runs past the end)")
    start, end = _payload_span(data)
    if end + _DIGEST_LEN != len(data):
        raise ValueError("truncated or padded (section lengths do not add up)")
    if hashlib.sha256(data[:end]).digest() != data[end:]:
        raise ValueError("checksum mismatch (the bytes were altered)")
    return data[_HEAD.size:_HEAD.size + manifest_len], start, end


def _payload_span(data: bytes) -> tuple[int, int]:
    """Where the payload lies, from the length fields alone (no verification)."""
    body_end = _HEAD.size + _HEAD.unpack_from(data)[2]
    (payload_len,) = _PAYLOAD_LEN.unpack_from(data, body_end)
    start = body_end + _PAYLOAD_LEN.size
    return start, start + payload_len


def _check_manifest(m: Any, payload: bytes) -> None:
    """Semantic checks shared by dump (our own output) and load (untrusted bytes):
    a model that passes can be evaluated without further validation."""
    if not isinstance(m, dict):
        raise ValueError("manifest must be a JSON object")
    problem = m.get("problem_type")
    if problem not in PROBLEM_TYPES:
        raise ValueError(f"unknown problem_type {problem!r}")
    kind = m.get("kind")
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown estimator kind {kind!r}; expected one of {MODEL_KINDS}")
    classes = m.get("classes")
    classifier = problem.endswith("CLASSIFICATION")
    if classifier:
        if not isinstance(classes, list) or len(classes) < 2 or any(isinstance(c, (list, dict)) for c in classes):
            raise ValueError("a classifier needs a list of at least two scalar classes")
        if problem == "BINARY_CLASSIFICATION" and len(classes) != 2:
            raise ValueError(f"binary classification needs exactly 2 classes, got {len(classes)}")
    threshold = m.get("threshold")
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must be a probability or null, got {threshold!r}")
    try:
        pre = Preprocessor(m.get("preprocessing"))
    except SpecError as exc:
        raise ValueError(f"preprocessing: {exc}") from exc
    n_classes = len(classes) if classifier else 0
    if kind == "tree":
        if (problem == "CLUSTERING") or not payload:
            raise ValueError("a tree model needs a Treelite checkpoint and a supervised problem type")
        est = m.get("estimator")
        if not isinstance(est, dict) or est.get("input_precision") not in ("float32", "float64"):
            raise ValueError("tree estimator entry needs input_precision float32 or float64")
        layout = _tree_layout(payload)
        n_features = layout.n_features
        layout.check_problem(problem, n_classes)
    else:
        if payload:
            raise ValueError(f"a {kind} model carries no checkpoint")
        try:
            model = dense.dense_model(m.get("estimator"))
        except dense.ModelFormatError as exc:
            raise ValueError(str(exc)) from exc
        if model.kind != kind:
            raise ValueError(f"manifest kind {kind!r} does not match estimator kind {model.kind!r}")
        n_features = model.n_features
        _check_dense_outputs(model, problem, n_classes)
    if n_features != pre.n_features:
        raise ValueError(f"estimator takes {n_features} features but the preprocessing spec makes {pre.n_features}")


def _tree_layout(payload: bytes) -> trees.TreeLayout:
    # Only reached after the trailer checksum matched, so these bytes are the ones
    # dump() wrote; Treelite is never handed arbitrary input.
    try:
        return trees.TreeLayout.of(treelite.Model.deserialize_bytes(payload))
    except treelite.TreeliteError as exc:
        raise ValueError(f"Treelite cannot read the checkpoint: {_first_line(exc)}") from exc


def _check_dense_outputs(model: Any, problem: str, n_classes: int) -> None:
    if problem == "CLUSTERING":
        ok = model.kind == "kmeans"
    elif model.kind == "kmeans":
        ok = False
    elif problem == "REGRESSION":
        ok = model.link == "identity" and model.n_outputs == 1
    elif problem == "BINARY_CLASSIFICATION":
        ok = (model.link == "logistic" and model.n_outputs == 1) or (model.link == "softmax" and model.n_outputs == 2)
    else:
        ok = model.link == "softmax" and model.n_outputs == n_classes
    if not ok:
        raise ValueError(f"a {model.kind} model with link {getattr(model, 'link', None)!r} and "
                         f"{model.n_outputs} output(s) cannot serve {problem}")


def _plain(value: Any) -> Any:
    """numpy scalars/arrays and tuples -> JSON-able Python values (dicts keep their keys)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        raise UnsupportedModel(f"cannot serialize the non-finite number {value!r}")
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
