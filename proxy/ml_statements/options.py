"""CREATE MODEL options: from what the grammar read to the canonical options dict.

The grammar only checks shape (a word here, a quoted string there); this module
decides what the words mean, so that vocabulary (model types, objectives, settings)
lives in one place.  Unknown names and bad values are 22023 errors that name the
allowed values; repeated keys are 42601, as Postgres' "conflicting or redundant
options".

Canonical form (every key always present):

- `iam_role`: 'default', the role ARN string, or None.  Accepted and ignored.
- `auto`: bool, True unless AUTO OFF.
- `model_type`: one of MODEL_TYPES or None (AutoML picks).  FORECAST models follow
  forecast_options.py and carry one more key, `forecast`.
- `problem_type`: one of PROBLEM_TYPES or None (inferred from the target), also
  filled in when an XGBoost objective implies it ('multi:softmax' -> multiclass).
- `objective`: one of OBJECTIVES or None.  Redshift also spells these 'F1_Macro',
  'Binary_Accuracy', 'RMSE' (same ranking as MSE) or as XGBoost objectives
  ('reg:squarederror', 'binary:logistic', 'multi:softmax', ...); see
  OBJECTIVE_ALIASES.  Objectives that select differently (MAPE, WAPE, forecast
  losses) are rejected rather than silently approximated, except for MODEL_TYPE
  FORECAST, which has objectives of its own (forecast_options.py).
- `preprocessors`: the parsed PREPROCESSORS JSON (a list of {"ColumnSet": [...],
  "Transformers": [...]}), the string 'none' (Redshift's "no preprocessing"), or
  None (automatic).
- `hyperparameters`: {lowercase key: int | float | str}; {} for DEFAULT or absent.
  Every key and value is checked against the MODEL_TYPE's table in
  hyperparameters.py (22023 naming the allowed keys, "did you mean" for a close
  misspelling, the range for a value out of it); HYPERPARAMETERS needs a MODEL_TYPE.
- `given`: {"objective", "preprocessors", "hyperparameters"} as the statement wrote
  them (the hyperparameters as [key, value] pairs in order), for SHOW MODEL.
- `settings`: {lowercase key: value} for the keys given; `max_cells` and
  `max_runtime` are positive ints; so is `max_features` (mlproxy's own: how many
  feature columns CREATE MODEL takes, 256 unless raised).  Absent keys stay absent: defaults belong to the
  training engine.  S3_BUCKET (the bucket of the model's snapshot when the proxy's
  --snapshot-store is s3://) and S3_GARBAGE_COLLECT (OFF keeps the snapshot after
  training) go to the job runner; KMS_KEY_ID, TAGS, MAX_BATCH_ROWS are accepted and
  recorded but have no effect here; HORIZON, FREQUENCY and
  PERCENTILES are MODEL_TYPE FORECAST's (forecast_options.py) and ignored by others.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from proxy.errors import INVALID_PARAMETER_VALUE, SYNTAX_ERROR, PgError

from . import hyperparameters as hp
from .forecast_options import forecast_options

MODEL_TYPES = ("XGBOOST", "MLP", "LINEAR_LEARNER", "KMEANS", "FORECAST")
PROBLEM_TYPES = ("REGRESSION", "BINARY_CLASSIFICATION", "MULTICLASS_CLASSIFICATION")
OBJECTIVES = ("MSE", "MAE", "Accuracy", "F1", "F1Macro", "AUC")

_REGRESSION, _BINARY, _MULTICLASS = PROBLEM_TYPES
# Which problem types an objective can rank models for.
_OBJECTIVE_PROBLEMS = {
    "MSE": (_REGRESSION,),
    "MAE": (_REGRESSION,),
    "Accuracy": (_BINARY, _MULTICLASS),
    "F1": (_BINARY,),
    "F1Macro": (_BINARY, _MULTICLASS),
    "AUC": (_BINARY,),
}
# Spelling (lowercase, without '_', '-' and spaces) -> (objective, implied problem type).
OBJECTIVE_ALIASES: dict[str, tuple[str, str | None]] = {
    "mse": ("MSE", None),
    "rmse": ("MSE", None),
    "reg:squarederror": ("MSE", _REGRESSION),
    "reg:squaredlogerror": ("MSE", _REGRESSION),
    "reg:logistic": ("MSE", _REGRESSION),
    "reg:pseudohubererror": ("MSE", _REGRESSION),
    "reg:tweedie": ("MSE", _REGRESSION),
    "mae": ("MAE", None),
    "reg:absoluteerror": ("MAE", _REGRESSION),
    "accuracy": ("Accuracy", None),
    "binaryaccuracy": ("Accuracy", _BINARY),
    "multiclassaccuracy": ("Accuracy", _MULTICLASS),
    "binary:hinge": ("Accuracy", _BINARY),
    "multi:softmax": ("Accuracy", _MULTICLASS),
    "multi:softprob": ("Accuracy", _MULTICLASS),
    "f1": ("F1", None),
    "binaryf1": ("F1", _BINARY),
    "f1macro": ("F1Macro", None),
    "macrof1": ("F1Macro", None),
    "auc": ("AUC", None),
    "rocauc": ("AUC", None),
    "binary:logistic": ("AUC", _BINARY),
}
_OBJECTIVE_SPELLING_NOISE = re.compile(r"[\s_\-]")
_INTEGER = re.compile(r"[+-]?[0-9](?:_?[0-9])*")
_PREFIXED_INTEGER = re.compile(r"[+-]?0[xXoObB][0-9A-Fa-f_]+")


class RawValue(NamedTuple):
    """A value as the grammar read it.

    kind: "word" (unquoted, `value` lowercase), "string" (`value` decoded) or
    "number" (`value` is the literal with its sign).  `text` is as written, for
    messages; `position` is the client cursor of its first character.
    """

    kind: str
    value: str
    text: str
    position: int


@dataclass
class RawOptions:
    """The option clauses of one CREATE MODEL, unvalidated."""

    iam_role: RawValue | None = None
    auto: RawValue | None = None
    model_type: RawValue | None = None
    problem_type: RawValue | None = None
    objective: RawValue | None = None
    preprocessors: RawValue | None = None
    hyperparameters: list[tuple[RawValue, RawValue]] = field(default_factory=list)
    settings: list[tuple[RawValue, RawValue]] = field(default_factory=list)


class _BadValue(Exception):
    """A value validator's complaint: what the value should have been."""


def build_options(raw: RawOptions, *, target: RawValue | None, function_position: int,
                  settings_position: int | None = None) -> dict[str, Any]:
    """Validate `raw` and return the canonical options dict (module docstring).

    `target` and `function_position` are needed for the rules that tie clauses
    together: KMEANS takes no TARGET, every other model needs one.  FORECAST has
    rules of its own (forecast_options.py; `settings_position` points at a missing
    required setting).
    """
    model_type = _enum(raw.model_type, "MODEL_TYPE", MODEL_TYPES)
    if model_type == "FORECAST":
        return _forecast(raw, target, function_position, settings_position)
    problem_type = _enum(raw.problem_type, "PROBLEM_TYPE", PROBLEM_TYPES)
    objective, implied_problem = _objective(raw.objective)
    if objective is not None and raw.objective is not None:
        allowed = _OBJECTIVE_PROBLEMS[objective]
        if implied_problem is not None and problem_type not in (None, implied_problem):
            allowed = (implied_problem,)
        wanted = problem_type or implied_problem
        if wanted is not None and wanted not in allowed:
            raise _invalid(
                f"OBJECTIVE {raw.objective.text} does not apply to {wanted}",
                raw.objective.position,
                f"For {wanted}, OBJECTIVE must be one of "
                + ", ".join(f"'{o}'" for o, p in _OBJECTIVE_PROBLEMS.items() if wanted in p) + ".",
            )
        problem_type = wanted
    options: dict[str, Any] = {
        "iam_role": None if raw.iam_role is None else raw.iam_role.value,
        "auto": raw.auto is None or raw.auto.value == "on",
        "model_type": model_type,
        "problem_type": problem_type,
        "objective": objective,
        "preprocessors": _preprocessors(raw.preprocessors),
        "hyperparameters": _hyperparameters(raw.hyperparameters, model_type),
        "settings": _settings(raw.settings),
        "given": _given(raw),
    }
    _check_model_shape(raw, options, target, function_position)
    return options


def imported_options(raw: RawOptions) -> dict[str, Any]:
    """The canonical options of a model imported rather than trained (bring your own
    model): only IAM_ROLE and SETTINGS apply, and the grammar admits only those."""
    return {
        "iam_role": None if raw.iam_role is None else raw.iam_role.value,
        "auto": False, "model_type": None, "problem_type": None, "objective": None,
        "preprocessors": None, "hyperparameters": {}, "settings": _settings(raw.settings),
        "given": _given(raw),
    }


def _forecast(raw: RawOptions, target: RawValue | None, position: int,
              settings_position: int | None) -> dict[str, Any]:
    assert raw.model_type is not None
    if target is None:
        raise PgError(SYNTAX_ERROR, "CREATE MODEL requires TARGET", position=position,
                      hint="Add TARGET <column>: the series' values to forecast.")
    options: dict[str, Any] = {
        "iam_role": None if raw.iam_role is None else raw.iam_role.value,
        "auto": True, "model_type": "FORECAST", "problem_type": None, "objective": None,
        "preprocessors": None, "hyperparameters": {}, "settings": _settings(raw.settings),
        "given": _given(raw),
    }
    forecast_options(raw, options, settings_position, raw.model_type.position)
    return options


def _check_model_shape(
    raw: RawOptions, options: dict[str, Any], target: RawValue | None, function_position: int
) -> None:
    """Rules across clauses: AUTO OFF names a model type; KMEANS is unsupervised."""
    if not options["auto"] and options["model_type"] is None:
        assert raw.auto is not None
        raise _invalid("AUTO OFF requires MODEL_TYPE", raw.auto.position,
                       "Add MODEL_TYPE " + " | ".join(MODEL_TYPES) + ", or use AUTO ON.")

    if options["model_type"] != "KMEANS":
        if target is None:
            raise PgError(SYNTAX_ERROR, "CREATE MODEL requires TARGET unless MODEL_TYPE is KMEANS",
                          position=function_position, hint="Add TARGET <column> after FROM.")
        return
    assert raw.model_type is not None
    if target is not None:
        raise _invalid("MODEL_TYPE KMEANS does not take a TARGET", target.position,
                       "K-means clustering is unsupervised; remove the TARGET clause.")
    for name, clause in (("PROBLEM_TYPE", raw.problem_type), ("OBJECTIVE", raw.objective)):
        if clause is not None:
            raise _invalid(f"MODEL_TYPE KMEANS does not take {name}", clause.position,
                           "Remove it; K-means has no target to predict.")
    if "k" not in options["hyperparameters"]:
        raise _invalid("MODEL_TYPE KMEANS requires the hyperparameter K", raw.model_type.position,
                       "Add HYPERPARAMETERS DEFAULT EXCEPT (K 'n') with the number of clusters.")


def _invalid(message: str, position: int, hint: str | None = None) -> PgError:
    return PgError(INVALID_PARAMETER_VALUE, message, position=position, hint=hint)


def _redundant(key: RawValue) -> PgError:
    return PgError(SYNTAX_ERROR, f'conflicting or redundant options at or near "{key.text}"',
                   position=key.position, detail=f"{key.value.upper()} is given more than once.")


def _enum(raw: RawValue | None, clause: str, allowed: tuple[str, ...]) -> str | None:
    if raw is None:
        return None
    value = raw.value.upper()
    if value not in allowed:
        raise _invalid(f'invalid {clause} "{raw.text}"', raw.position,
                       f"{clause} must be one of {', '.join(allowed)}.")
    return value


def _objective(raw: RawValue | None) -> tuple[str | None, str | None]:
    if raw is None:
        return None, None
    found = OBJECTIVE_ALIASES.get(_OBJECTIVE_SPELLING_NOISE.sub("", raw.value.lower()))
    if found is None:
        raise _invalid(
            f"invalid OBJECTIVE {raw.text}", raw.position,
            "OBJECTIVE must be one of " + ", ".join(f"'{o}'" for o in OBJECTIVES)
            + " (Redshift spellings such as 'F1_Macro', 'RMSE', 'reg:squarederror', "
            "'binary:logistic' and 'multi:softmax' are accepted too).",
        )
    return found


def _preprocessors(raw: RawValue | None) -> Any:
    if raw is None:
        return None
    if raw.value.strip().lower() == "none":
        return "none"
    try:
        spec = json.loads(raw.value)
    except json.JSONDecodeError as e:
        # Point into the literal when its text is the JSON verbatim ('...' without '').
        exact = raw.text[:1] == "'" and raw.text[1:-1] == raw.value
        raise _invalid(f"invalid PREPROCESSORS JSON: {e.msg}", raw.position + (1 + e.pos if exact else 0),
                       "PREPROCESSORS takes 'none' or a JSON array of "
                       '{"ColumnSet": [...], "Transformers": [...]} objects.') from None
    if not _is_preprocessor_list(spec):
        raise _invalid("invalid PREPROCESSORS specification", raw.position,
                       'Expected a JSON array of {"ColumnSet": [column, ...], "Transformers": [name, ...]} '
                       "objects, or 'none'.")
    return spec


def _is_preprocessor_list(spec: Any) -> bool:
    def strings(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(s, str) for s in v)

    return isinstance(spec, list) and all(
        isinstance(item, dict) and set(item) == {"ColumnSet", "Transformers"}
        and strings(item["ColumnSet"]) and strings(item["Transformers"])
        for item in spec
    )


def _parse_int(text: str) -> int | None:
    if _INTEGER.fullmatch(text):
        return int(text.replace("_", ""))
    if _PREFIXED_INTEGER.fullmatch(text):
        try:
            return int(text, 0)
        except ValueError:
            return None
    return None


def _int_at_least(minimum: int) -> Callable[[RawValue], int]:
    def check(raw: RawValue) -> int:
        value = _parse_int(raw.value.strip()) if raw.kind != "word" else None
        if value is None or value < minimum:
            raise _BadValue("a positive integer" if minimum == 1 else f"an integer >= {minimum}")
        return value

    return check


def _quoted(raw: RawValue) -> str:
    if raw.kind != "string":
        raise _BadValue("a quoted string")
    return raw.value


def _on_off(raw: RawValue) -> bool:
    if raw.kind != "word" or raw.value not in ("on", "off"):
        raise _BadValue("ON or OFF")
    return raw.value == "on"


def _int_or_quoted(raw: RawValue) -> int | str:
    return _quoted(raw) if raw.kind == "string" else _int_at_least(1)(raw)


_positive_int = _int_at_least(1)

_SETTINGS: dict[str, Callable[[RawValue], Any]] = {
    "s3_bucket": _quoted,
    "kms_key_id": _quoted,
    "tags": _quoted,
    "s3_garbage_collect": _on_off,
    "max_cells": _positive_int,
    "max_runtime": _positive_int,
    "max_features": _positive_int,  # mlproxy's: feature columns allowed (256 by default)
    "max_batch_rows": _positive_int,
    "horizon": _positive_int,
    "frequency": _int_or_quoted,
    "percentiles": _quoted,
}


def _checked(key: RawValue, value: RawValue, check: Callable[[RawValue], Any]) -> Any:
    try:
        return check(value)
    except _BadValue as e:
        name = key.value.upper()
        raise _invalid(f'invalid value for {name}: {value.text}', value.position,
                       f"{name} must be {e}.") from None


def _hyperparameters(pairs: list[tuple[RawValue, RawValue]], model_type: str | None) -> dict[str, Any]:
    """Each key and value checked against the MODEL_TYPE's table (hyperparameters.py)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        name = key.value.lower()
        if name in result:
            raise _redundant(key)
        if name == "objective":
            raise _invalid('OBJECTIVE is not a hyperparameter', key.position,
                           "Use the OBJECTIVE clause, e.g. OBJECTIVE 'reg:squarederror'.")
        if model_type is None:
            raise _invalid("HYPERPARAMETERS requires MODEL_TYPE", key.position,
                           "Add MODEL_TYPE " + " | ".join(MODEL_TYPES) + " (Redshift's HYPERPARAMETERS "
                           "are XGBoost's), or leave the hyperparameters to AutoML.")
        spec = hp.lookup(model_type, name)
        if spec is None:
            allowed = ", ".join(hp.allowed_keys(model_type))
            guess = hp.close_match(model_type, name)
            raise PgError(INVALID_PARAMETER_VALUE,
                          f'unrecognized {model_type} hyperparameter "{key.text}"', position=key.position,
                          detail=None if guess is None else f'Did you mean "{guess}"?',
                          hint=f"{model_type} hyperparameters are {allowed}.")
        try:
            result[name] = spec.check(value.value)
        except hp.BadValue as e:
            default = "" if spec.default is None else f" (default {spec.default})"
            raise _invalid(f"invalid value for {model_type} hyperparameter {name.upper()}: {value.text}",
                           value.position, f"{name.upper()} must be {e}{default}.") from None
    return result


def _given(raw: RawOptions) -> dict[str, Any]:
    """OBJECTIVE, PREPROCESSORS and HYPERPARAMETERS as the statement wrote them (the
    canonical values above are what training uses; SHOW MODEL echoes these)."""
    def text(value: RawValue | None) -> str | None:
        return None if value is None else (value.value if value.kind == "string" else value.text)

    return {
        "objective": text(raw.objective),
        "preprocessors": text(raw.preprocessors),
        # a list of [key, value] pairs: jsonb would reorder an object's keys
        "hyperparameters": [[key.value if key.text.startswith('"') else key.text, text(value)]
                            for key, value in raw.hyperparameters],
    }


def _settings(pairs: list[tuple[RawValue, RawValue]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        name = key.value.lower()
        check = _SETTINGS.get(name)
        if check is None:
            raise _invalid(f'unrecognized setting "{key.text}"', key.position,
                           "Settings are " + ", ".join(s.upper() for s in _SETTINGS) + ".")
        if name in result:
            raise _redundant(key)
        result[name] = _checked(key, value, check)
    return result
