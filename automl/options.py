"""CREATE MODEL options as a small, validated dataclass.

The proxy hands over the statement's clauses as a mapping with the SQL names
(TARGET, PROBLEM_TYPE, OBJECTIVE, MODEL_TYPE, AUTO, HYPERPARAMETERS, PREPROCESSORS,
MAX_RUNTIME, MAX_CELLS, SEED, K); keys are case-insensitive, values may be the
strings the SQL parser produced. Everything is checked here, before any data is
touched, so a bad option fails fast with InvalidOption (SQLSTATE 22023).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import InvalidOption

#: Default MAX_RUNTIME in seconds. Redshift's default is 5400 s; the search here stops
#: by itself once scores stop improving, so the budget is a ceiling, and 900 s keeps
#: a forgotten setting from tying up a worker for an hour and a half.
DEFAULT_MAX_RUNTIME = 900.0
#: Redshift's default MAX_CELLS (rows x columns exported for training).
DEFAULT_MAX_CELLS = 1_000_000

PROBLEM_TYPES = ("REGRESSION", "BINARY_CLASSIFICATION", "MULTICLASS_CLASSIFICATION")
MODEL_TYPES = ("XGBOOST", "LINEAR_LEARNER", "MLP", "KMEANS", "RANDOM_FOREST", "EXTRA_TREES", "LIGHTGBM",
               "CONSTANT")

# Redshift settings that only make sense on AWS: accepted and ignored.
_IGNORED = ("s3_bucket", "s3_garbage_collect", "kms_key_id", "iam_role", "function", "settings")
_KNOWN = (
    "target", "problem_type", "objective", "model_type", "auto", "hyperparameters",
    "preprocessors", "max_runtime", "max_cells", "seed", "k", "hyperparameter_table",
)


@dataclass(frozen=True)
class TrainOptions:
    """What CREATE MODEL asked for; None means "choose automatically"."""

    target: str | None = None
    problem_type: str | None = None
    objective: str | None = None
    model_type: str | None = None  # None or "AUTO": search several families
    auto: bool = True
    hyperparameters: dict[str, str] = field(default_factory=dict)
    preprocessors: list[dict[str, Any]] | None = None
    max_runtime: float = DEFAULT_MAX_RUNTIME
    max_cells: int = DEFAULT_MAX_CELLS
    seed: int = 0
    k: int | None = None
    #: the MODEL_TYPE's HYPERPARAMETERS table as plain data ({KEY: {"kind", "default",
    #: "low", "high", ...}}), as the proxy checked the statement against; AUTO ON
    #: searches inside its ranges. None: automl's own copy of Redshift's ranges.
    hyperparameter_table: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "problem_type", _upper(self.problem_type))
        object.__setattr__(self, "model_type", _upper(self.model_type))
        if self.model_type == "AUTO":
            object.__setattr__(self, "model_type", None)
        object.__setattr__(self, "hyperparameters", {str(k).upper(): v for k, v in dict(self.hyperparameters).items()})
        if isinstance(self.preprocessors, str):
            object.__setattr__(self, "preprocessors", _parse_preprocessors(self.preprocessors))
        self._validate()

    def _validate(self) -> None:
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise InvalidOption(
                f"invalid PROBLEM_TYPE {self.problem_type!r}; allowed: {', '.join(PROBLEM_TYPES)}")
        if self.model_type is not None and self.model_type not in MODEL_TYPES:
            raise InvalidOption(
                f"invalid MODEL_TYPE {self.model_type!r}; allowed: AUTO, {', '.join(MODEL_TYPES)}")
        if not (self.max_runtime > 0):
            raise InvalidOption(f"MAX_RUNTIME must be a positive number of seconds, not {self.max_runtime!r}")
        if int(self.max_cells) < 1:
            raise InvalidOption(f"MAX_CELLS must be a positive integer, not {self.max_cells!r}")
        if self.k is not None and int(self.k) < 2:
            raise InvalidOption(f"K must be an integer >= 2, not {self.k!r}")
        if self.model_type == "KMEANS":
            if self.problem_type is not None:
                raise InvalidOption("PROBLEM_TYPE does not apply to MODEL_TYPE KMEANS (clustering has no target)")
            if self.target is not None:
                raise InvalidOption("MODEL_TYPE KMEANS takes no TARGET: clustering is unsupervised")
        elif self.target is None:
            raise InvalidOption("TARGET is required (only MODEL_TYPE KMEANS trains without one)")
        if self.hyperparameters and self.model_type is None:
            raise InvalidOption(
                "HYPERPARAMETERS needs a MODEL_TYPE (XGBOOST, LINEAR_LEARNER, MLP, KMEANS, ...)",
                hint="add MODEL_TYPE XGBOOST, or drop the HYPERPARAMETERS clause")
        if not self.auto and self.model_type is None:
            raise InvalidOption("AUTO OFF needs a MODEL_TYPE (e.g. MODEL_TYPE XGBOOST)")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | TrainOptions) -> TrainOptions:
        """Build from CREATE MODEL names (case-insensitive keys, string values allowed)."""
        if isinstance(options, TrainOptions):
            return options
        if not isinstance(options, Mapping):
            raise InvalidOption(f"training options must be a mapping, not {type(options).__name__}")
        kw: dict[str, Any] = {}
        for key, value in options.items():
            name = str(key).strip().lower()
            if name in _IGNORED:
                continue
            if name not in _KNOWN:
                raise InvalidOption(
                    f"unknown training option {key!r}; allowed: {', '.join(k.upper() for k in _KNOWN)}")
            if value is None:
                continue
            kw[name] = _convert(name, value)
        return cls(**kw)

    def with_(self, **changes: Any) -> TrainOptions:
        return replace(self, **changes)


def _upper(value: Any) -> str | None:
    return None if value is None else str(value).strip().upper()


def _convert(name: str, value: Any) -> Any:
    if name == "auto":
        return _boolean(value)
    if name == "max_runtime":
        return _number(name, value, float)
    if name in ("max_cells", "seed", "k"):
        return _number(name, value, int)
    if name == "hyperparameters":
        if isinstance(value, str) and value.strip().upper() == "DEFAULT":
            return {}
        if not isinstance(value, Mapping):
            raise InvalidOption("HYPERPARAMETERS must be a mapping of names to values")
        return dict(value)
    if name == "preprocessors":
        return _parse_preprocessors(value) if isinstance(value, str) else value
    if name == "target":
        return str(value)
    return value


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().upper()
    if text in ("ON", "TRUE", "1", "YES"):
        return True
    if text in ("OFF", "FALSE", "0", "NO"):
        return False
    raise InvalidOption(f"AUTO must be ON or OFF, not {value!r}")


def _number(name: str, value: Any, kind: type) -> Any:
    try:
        number = float(value)
        if kind is int:
            if number != int(number):
                raise ValueError
            return int(number)
        return number
    except (TypeError, ValueError):
        wanted = "an integer" if kind is int else "a number"
        raise InvalidOption(f"{name.upper()} must be {wanted}, not {value!r}") from None


def _parse_preprocessors(text: str) -> list[dict[str, Any]]:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidOption(f"PREPROCESSORS is not valid JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(parsed, list):
        raise InvalidOption("PREPROCESSORS must be a JSON array of {\"ColumnSet\": [...], \"Transformers\": [...]}")
    return parsed
