"""PREPROCESSORS (AUTO OFF): Redshift's JSON column sets with transformers.

    [{"ColumnSet": ["plan", "region"], "Transformers": ["OneHotEncoder"]},
     {"ColumnSet": ["age", "income"], "Transformers": ["NumericImputer", "StandardScaler"]}]

Transformers (applied in the order given, one encoder per column set at most):
  encoders: OneHotEncoder, OrdinalEncoder (text/boolean columns), NumericPassthrough
            (numbers as they are), DateTimeVectorizer (date/timestamp -> calendar parts);
  imputers: NumericImputer / Imputer (median), MeanImputer (mean);
  scalers:  StandardScaler, MinMaxScaler, MaxAbsScaler.
Columns in no set are encoded automatically, as with AUTO ON. The result is the
same JSON spec as automatic preprocessing (docs/model-contract.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .columns import ColumnInfo
from .errors import InvalidOption, MissingColumn
from .preprocess import (
    datetime_series,
    fit_column,
    make_spec,
    numeric_feature,
    one_hot_features,
    ordinal_feature,
)
from .spec import as_float, as_keys

ENCODERS = ("OneHotEncoder", "OrdinalEncoder", "NumericPassthrough", "DateTimeVectorizer")
IMPUTERS = ("NumericImputer", "Imputer", "MeanImputer")
SCALERS = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler")
_ALL = {name.lower(): name for name in ENCODERS + IMPUTERS + SCALERS}


def parse(preprocessors: Sequence[Mapping[str, Any]], infos: Sequence[ColumnInfo]) -> dict[str, list[str]]:
    """Validate the JSON and return column name -> transformer list. A ColumnSet
    entry "*" (Redshift's K-means example) stands for every input column no other
    set names."""
    by_name = {i.name: i for i in infos}
    by_lower = {i.name.lower(): i.name for i in infos}
    plan: dict[str, list[str]] = {}
    rest: list[str] | None = None  # the transformers of the "*" set
    for n, entry in enumerate(preprocessors):
        if not isinstance(entry, Mapping):
            raise InvalidOption(f"PREPROCESSORS entry {n + 1} must be an object with ColumnSet and Transformers")
        keys = {str(k).lower(): v for k, v in entry.items()}
        cols, steps = keys.get("columnset"), keys.get("transformers")
        if not isinstance(cols, list) or not isinstance(steps, list) or not cols or not steps:
            raise InvalidOption(f"PREPROCESSORS entry {n + 1} needs non-empty ColumnSet and Transformers arrays")
        names = []
        for s in steps:
            canon = _ALL.get(str(s).lower())
            if canon is None:
                raise InvalidOption(f"unknown transformer {s!r} in PREPROCESSORS; allowed: {', '.join(_ALL.values())}")
            names.append(canon)
        if sum(s in ENCODERS for s in names) > 1:
            raise InvalidOption(f"PREPROCESSORS entry {n + 1} has more than one encoder: {', '.join(names)}")
        for col in cols:
            if str(col) == "*":
                if rest is not None:
                    raise InvalidOption('"*" appears in more than one PREPROCESSORS column set')
                rest = names
                continue
            name = by_name.get(str(col)) and str(col) or by_lower.get(str(col).lower())
            if name is None:
                raise MissingColumn(f"PREPROCESSORS names column {col!r}, which is not an input column")
            if name in plan:
                raise InvalidOption(f"column {name!r} appears in more than one PREPROCESSORS column set")
            _check_applicable(by_name[name], names)
            plan[name] = names
    if rest is not None:
        for info in infos:
            if info.name not in plan:
                _check_applicable(info, rest)
                plan[info.name] = rest
    return plan


def _check_applicable(info: ColumnInfo, steps: list[str]) -> None:
    for s in steps:
        if s in ("OneHotEncoder", "OrdinalEncoder") and info.kind not in ("text", "boolean"):
            raise InvalidOption(
                f"{s} applies to text or boolean columns; {info.name!r} is {info.pg_type}",
                hint=f"cast {info.name} to varchar in the FROM query to treat it as a category")
        if s == "DateTimeVectorizer" and info.kind != "datetime":
            raise InvalidOption(
                f"DateTimeVectorizer applies to date/timestamp columns; {info.name!r} is {info.pg_type}")
        if (s in IMPUTERS or s in SCALERS or s == "NumericPassthrough") and info.kind not in (
                "numeric", "boolean", "datetime"):
            raise InvalidOption(f"{s} applies to numeric columns; {info.name!r} is {info.pg_type}")


def fit_custom_spec(plan: Mapping[str, list[str]], infos: Sequence[ColumnInfo], raw: Mapping[str, np.ndarray],
                    y: np.ndarray | None, encoding: str, target_kind: str) -> dict[str, Any]:
    features: list[dict[str, Any]] = []
    for info in infos:
        steps = plan.get(info.name)
        if steps is None:
            if info.used:
                features.extend(fit_column(info, raw[info.name], y, encoding, target_kind))
            continue
        features.extend(_fit_planned(info, raw[info.name], steps))
    return make_spec(infos, features)


def _fit_planned(info: ColumnInfo, values: np.ndarray, steps: list[str]) -> list[dict[str, Any]]:
    if "OneHotEncoder" in steps:
        return one_hot_features(info.name, as_keys(values), limit=None)
    if "OrdinalEncoder" in steps:
        return [ordinal_feature(info.name, as_keys(values), None, "none", order="lexical")]
    fill = "mean" if "MeanImputer" in steps else "median"
    if info.kind == "datetime":
        out = []
        for part, x in datetime_series(info, values):
            feat = _numeric(info.name, "datetime_part", x, steps, fill)
            feat["part"] = part
            out.append(feat)
        return out
    return [_numeric(info.name, "numeric", as_float(values), steps, fill)]


def _numeric(name: str, op: str, x: np.ndarray, steps: list[str], fill: str) -> dict[str, Any]:
    feat = numeric_feature(name, op, x, "dense", scale="StandardScaler" in steps, fill=fill)
    filled = np.where(np.isnan(x), feat["fill"], x)
    if "MinMaxScaler" in steps and len(filled):
        lo, hi = float(filled.min()), float(filled.max())
        feat["center"], feat["scale"] = lo, (hi - lo) or 1.0
    elif "MaxAbsScaler" in steps and len(filled):
        feat["center"], feat["scale"] = 0.0, float(np.abs(filled).max()) or 1.0
    return feat
