"""Models trained elsewhere (bring your own model): bytes -> the same artifact.

`import_model` takes the bytes of a model file and the model function's declared
signature, recognises the format by its first bytes (never by a name a client
chose), reads it with Treelite's frontends, checks it against the signature, and
returns an Artifact exactly like a trained tree model's: a Treelite checkpoint plus
a manifest whose preprocessing passes every argument through as a number (NULL is
the model's own "missing", as in the library that trained it).

Formats: XGBoost JSON and UBJSON (what `Booster.save_model` writes), a SageMaker
XGBoost `model.tar.gz` holding one, and LightGBM text models. Pickles (and joblib
files, which are pickles) are refused: loading one runs whatever code it names.

Everything here runs in a worker process (`python -m compiler.importer`): Treelite
parses untrusted bytes, and a parser that crashes or spins must not reach the proxy.
Archives are read in memory with every size bounded, so nothing is written where a
member's name points.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from typing import Any

import treelite

from .errors import CompilerError, FEATURE_NOT_SUPPORTED, INVALID_PARAMETER_VALUE
from .trees import TreeLayout

DATA_CORRUPTED = "XX001"
#: the file members of a model.tar.gz looked at, at most
MAX_ARCHIVE_MEMBERS = 64
#: Postgres types an imported model's arguments may have (all become float64)
NUMERIC_ARGUMENTS = ("smallint", "integer", "bigint", "real", "double precision", "numeric", "boolean")
FLOAT_RETURNS = ("real", "double precision", "numeric")
INTEGER_RETURNS = ("smallint", "integer", "bigint")
TEXT_RETURNS = ("text", "character varying", "character", "varchar", "char", "bpchar")
#: how the formats are named in messages and SHOW MODEL
FORMAT_NAMES = {"xgboost_json": "XGBoost JSON", "xgboost_ubjson": "XGBoost UBJSON",
                "lightgbm": "LightGBM text model"}


class ImportRefused(CompilerError):
    """The bytes are not a model mlproxy imports, or do not fit the declaration."""

    def __init__(self, sqlstate: str, message: str, *, hint: str | None = None, clause: str = "source") -> None:
        super().__init__(message, hint=hint)
        self.sqlstate = sqlstate
        self.clause = clause  # what the statement got wrong: "source" (the file) or "function"


@dataclass(frozen=True)
class Declaration:
    """The model function as CREATE MODEL declares it."""

    arg_types: tuple[str, ...]
    return_type: str


@dataclass
class ImportedModel:
    """What `compiler.artifact.dump` reads (docs/model-contract.md), for a model
    that was trained elsewhere: the estimator is a Treelite model already."""

    problem_type: str
    model_type: str
    objective: str
    classes: list[Any] | None
    label_type: str
    preprocessing: dict[str, Any]
    estimator: Any
    threshold: float | None = None
    target: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


class TreeliteEstimator:
    """An already imported Treelite model (the artifact's `treelite_model` branch)."""

    def __init__(self, model: treelite.Model, precision: str, family: str) -> None:
        self.model = model
        self.precision = precision
        self.family = family

    def treelite_model(self) -> tuple[treelite.Model, str, str]:
        return self.model, self.precision, self.family


# -- formats -----------------------------------------------------------------------------

_PICKLE_HINT = ("Save the model in its library's own format: XGBoost booster.save_model('model.json') "
                "(or .ubj), LightGBM booster.save_model('model.txt').")
_JSON_START = re.compile(rb"\A\s*\{\s*[\"}]")


def detect_format(data: bytes) -> str:
    """'xgboost_json', 'xgboost_ubjson', 'lightgbm' or 'targz'; ImportRefused for
    anything else (with the reason for pickles and for formats mlproxy knows)."""
    head = data[:64]
    if not data:
        raise ImportRefused(INVALID_PARAMETER_VALUE, "the model file is empty")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise ImportRefused(FEATURE_NOT_SUPPORTED,
                            "the model file is a Python pickle (or joblib file); mlproxy never loads pickles, "
                            "because loading one runs whatever code it names", hint=_PICKLE_HINT)
    zlib_header = len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0
    if (zlib_header or head[:2] == b"ZF" or head[:6] == b"\xfd7zXZ\x00" or head[:3] == b"BZh"
            or head[:3] == b"]\x00\x00" or head[:4] == b"\x04\x22\x4d\x18"):
        raise ImportRefused(FEATURE_NOT_SUPPORTED,
                            "the model file looks like a compressed joblib file (a pickle); mlproxy never "
                            "loads pickles, because loading one runs whatever code it names", hint=_PICKLE_HINT)
    if head[:2] == b"\x1f\x8b":
        return "targz"
    if head.startswith(b"tree\n") or head.startswith(b"tree\r\n"):
        return "lightgbm"
    if _JSON_START.match(head):
        return "xgboost_json"
    if head[:1] == b"{" and head[1:2] in b"LlIiUH$#":
        return "xgboost_ubjson"
    if head[:4] == b"binf" or head[:4] == b"bs64":
        raise ImportRefused(FEATURE_NOT_SUPPORTED, "XGBoost's legacy binary model format is not supported",
                            hint="Load it with xgboost and save it again as JSON or UBJSON "
                                 "(booster.save_model('model.json')).")
    if head[:4] == b"PK\x03\x04":
        what = "a zip archive"
    elif head[:1] == b"\x08":
        what = "a protobuf (ONNX?) file"
    else:
        what = "not a model format mlproxy reads"
    raise ImportRefused(INVALID_PARAMETER_VALUE, f"the model file is {what}",
                        hint="mlproxy imports XGBoost JSON/UBJSON models, a SageMaker XGBoost model.tar.gz "
                             "holding one, and LightGBM text models.")


def unpack_targz(data: bytes, max_bytes: int) -> bytes:
    """The one XGBoost model in a SageMaker-style model.tar.gz, read in memory: the
    archive is decompressed with its size bounded by `max_bytes` (no zip bomb), only
    regular file members are looked at (no links, devices or names written anywhere)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        raw = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise ImportRefused(DATA_CORRUPTED, f"the model archive is not a valid gzip file ({exc})") from None
    if len(raw) > max_bytes or inflater.unconsumed_tail:
        raise ImportRefused("54000", f"the model archive holds more than {max_bytes} bytes once decompressed",
                            hint="Raise --import-max-bytes, or import the model file itself.")
    if raw[:1] == b"\x80" and raw[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        detect_format(raw)  # a gzipped pickle (joblib's gzip compression): refused as one
    candidates: list[tuple[str, bytes]] = []
    pickled: ImportRefused | None = None
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
            for count, member in enumerate(archive):
                if count >= MAX_ARCHIVE_MEMBERS:
                    break
                if not member.isreg():
                    continue
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                content = handle.read(max_bytes + 1)
                try:
                    kind = detect_format(content)
                except ImportRefused as refused:
                    if refused.sqlstate == FEATURE_NOT_SUPPORTED:  # a pickle: said so if nothing else fits
                        pickled = pickled or refused
                    continue  # other files of the archive (code, metadata)
                if kind.startswith("xgboost"):
                    candidates.append((member.name, content))
    except (tarfile.TarError, EOFError) as exc:
        raise ImportRefused(DATA_CORRUPTED, f"the model archive is damaged or truncated ({exc})") from None
    if not candidates and pickled is not None:
        raise pickled
    if len(candidates) != 1:
        found = "no" if not candidates else f"{len(candidates)}"
        raise ImportRefused(INVALID_PARAMETER_VALUE,
                            f"the model archive holds {found} XGBoost models (JSON or UBJSON); it must hold one",
                            hint="SageMaker's XGBoost container saves it as `xgboost-model`; a pickled "
                                 "`xgboost-model` (older containers) is refused.")
    return candidates[0][1]


def _read(data: bytes, kind: str) -> treelite.Model:
    if kind == "xgboost_json" and b'"learner"' not in data:
        raise ImportRefused(INVALID_PARAMETER_VALUE, "the model file is JSON but not an XGBoost model",
                            hint="XGBoost models are saved with booster.save_model('model.json').")
    try:
        if kind == "xgboost_json":
            return treelite.frontend.from_xgboost_json(bytearray(data))
        if kind == "xgboost_ubjson":
            return treelite.frontend.from_xgboost_ubjson(bytearray(data))
        # LightGBM: through the public file frontend, from a private temporary file
        with tempfile.TemporaryDirectory(prefix="mlproxy-import-") as tmp:
            path = os.path.join(tmp, "model.txt")
            with open(path, "wb") as out:
                out.write(data)
            return treelite.frontend.load_lightgbm_model(path)
    except (treelite.TreeliteError, ValueError, UnicodeDecodeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
        raise ImportRefused(DATA_CORRUPTED, f"the {FORMAT_NAMES[kind]} cannot be read: it is damaged, "
                            f"truncated or not a model ({first})") from None


def _json_learner(data: bytes, kind: str) -> dict[str, Any]:
    """An XGBoost JSON model's "learner" object (what SHOW MODEL tells of it), or {}."""
    if kind != "xgboost_json":
        return {}
    try:
        learner = json.loads(data).get("learner")
    except (ValueError, AttributeError):
        return {}
    return learner if isinstance(learner, dict) else {}


def _objective(data: bytes, kind: str, learner: dict[str, Any]) -> str:
    """The training objective as the file names it (for SHOW MODEL), or ''."""
    if kind == "xgboost_json":
        try:
            return str(learner["objective"]["name"])
        except (KeyError, TypeError):
            return ""
    if kind == "lightgbm":
        match = re.search(rb"^objective=([^\r\n]{0,80})", data[:1 << 16], re.MULTILINE)
        return match.group(1).decode("utf-8", "replace").split()[0] if match else ""
    match = re.search(rb"name[SUiL].{0,9}?((?:reg|binary|multi|rank|count|survival):[a-z_]+)", data[:1 << 16])
    return match.group(1).decode() if match else ""


def _feature_names(data: bytes, kind: str, n: int, learner: dict[str, Any]) -> list[str] | None:
    names: Any = None
    if kind == "xgboost_json":
        names = learner.get("feature_names")
    elif kind == "lightgbm":
        match = re.search(rb"^feature_names=([^\r\n]*)", data[:1 << 20], re.MULTILINE)
        names = match.group(1).decode("utf-8", "replace").split(" ") if match else None
    if (isinstance(names, list) and len(names) == n and all(isinstance(x, str) and x for x in names)
            and len(set(names)) == n and all(len(x.encode()) < 64 for x in names)):
        return names
    return None


# -- the declaration against the model ---------------------------------------------------

def base_type(pg_type: str) -> str:
    return pg_type.split("(")[0].strip().lower()


def _check_arguments(declared: Declaration, n_features: int) -> None:
    bad = [t for t in declared.arg_types if base_type(t) not in NUMERIC_ARGUMENTS]
    if bad:
        raise ImportRefused(INVALID_PARAMETER_VALUE,
                            f"an imported model takes numbers: argument type {bad[0]} is not one",
                            clause="function", hint="Declare the FUNCTION's arguments as " + ", ".join(NUMERIC_ARGUMENTS) + ".")
    given = len(declared.arg_types)
    if given != n_features:
        more = "more" if n_features > given else "fewer"
        raise ImportRefused(INVALID_PARAMETER_VALUE,
                            f"the model takes {n_features} features, {more} than the {given} argument types "
                            "the FUNCTION declares",
                            clause="function", hint=f"Declare exactly {n_features} argument types, one per feature, in the "
                                 "model's feature order.")


def _problem(layout: TreeLayout, declared: Declaration, kind: str) -> tuple[str, list[Any] | None, str]:
    """(problem type, classes, label type) from the model's outputs and RETURNS."""
    returns = base_type(declared.return_type)
    post, n_out = layout.postprocessor, layout.n_outputs
    if returns in FLOAT_RETURNS:
        if n_out == 1 and post in ("identity", "exponential", "sigmoid"):
            # a value, or (sigmoid) the probability of class 1, as the library's predict gives
            return "REGRESSION", None, declared.return_type
        raise ImportRefused(INVALID_PARAMETER_VALUE,
                            f"the model is a classifier with {max(n_out, 2)} classes; RETURNS "
                            f"{declared.return_type} does not fit it",
                            clause="function", hint="A classifier RETURNS its class: an integer type or text "
                                 "(boolean for two classes); its probabilities come from <function>_probabilities.")
    if n_out == 1 and post in ("identity", "exponential"):
        raise ImportRefused(INVALID_PARAMETER_VALUE,
                            f"the model predicts numbers (a regression); RETURNS {declared.return_type} does not fit it",
                            clause="function", hint="Declare RETURNS double precision (or real, numeric).")
    if post not in ("sigmoid", "hinge", "softmax", "identity_multiclass"):
        raise ImportRefused(FEATURE_NOT_SUPPORTED, f"the model's output transformation {post!r} is not supported")
    n_classes = 2 if n_out == 1 else n_out
    problem = "BINARY_CLASSIFICATION" if n_classes == 2 else "MULTICLASS_CLASSIFICATION"
    if returns == "boolean":
        if n_classes != 2:
            raise ImportRefused(INVALID_PARAMETER_VALUE,
                                f"the model has {n_classes} classes; RETURNS boolean fits two",
                                clause="function", hint="Declare RETURNS integer (the class index) or text.")
        return problem, [False, True], "boolean"
    if returns in INTEGER_RETURNS:
        return problem, list(range(n_classes)), declared.return_type
    if returns in TEXT_RETURNS:
        return problem, [str(k) for k in range(n_classes)], declared.return_type
    raise ImportRefused(INVALID_PARAMETER_VALUE,
                        f"RETURNS {declared.return_type} does not fit a classifier with {n_classes} classes",
                        clause="function", hint="Declare an integer type or text (boolean for two classes), or double "
                             "precision for a binary model's probability.")


def import_model(data: bytes, declared: Declaration, *, max_bytes: int) -> ImportedModel:
    """Read, check and describe a model file (runs in the import worker)."""
    kind = detect_format(data)
    archive = kind == "targz"
    if archive:
        data = unpack_targz(data, max_bytes)
        kind = detect_format(data)
    model = _read(data, kind)
    try:
        layout = TreeLayout.of(model)
    except ValueError as exc:
        raise ImportRefused(FEATURE_NOT_SUPPORTED, f"the model cannot be served: {exc}") from None
    _check_arguments(declared, layout.n_features)
    problem, classes, label_type = _problem(layout, declared, kind)
    try:
        layout.check_problem(problem, len(classes or ()))
    except ValueError as exc:
        raise ImportRefused(FEATURE_NOT_SUPPORTED, f"the model cannot be served: {exc}") from None
    learner = _json_learner(data, kind)
    names = _feature_names(data, kind, layout.n_features, learner) or [f"f{j}" for j in range(layout.n_features)]
    preprocessing = {
        "version": 1,
        "inputs": [{"name": n, "type": t} for n, t in zip(names, declared.arg_types)],
        "features": [{"input": n, "op": "numeric", "missing": True} for n in names],
    }
    family = "XGBoost" if kind.startswith("xgboost") else "LightGBM"
    # XGBoost compares float32 inputs with float32 thresholds; LightGBM compares doubles
    precision = "float32" if family == "XGBoost" else "float64"
    objective = _objective(data, kind, learner)
    fmt = FORMAT_NAMES[kind] + (" in a model.tar.gz" if archive else "")
    return ImportedModel(
        problem_type=problem, model_type=family.upper(), objective=objective, classes=classes,
        label_type=label_type, preprocessing=preprocessing,
        estimator=TreeliteEstimator(model, precision, family),
        summary={"format": fmt, "family": family, "objective": objective, "trees": layout.n_trees,
                 "features": layout.n_features, "feature_names": names, "outputs": layout.n_outputs,
                 "classes": len(classes) if classes else None, "bytes": len(data)},
    )
