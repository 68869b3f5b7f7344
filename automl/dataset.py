"""Getting a training table ready: the clock, the target, sampling, column roles.

Everything here runs before any model is fitted and fails fast with an AutoMLError
a SQL user can act on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from . import problem as P
from .columns import ColumnInfo, check_supported, describe, kind_of, pg_type_name, to_raw
from .objectives import SELECTION_METRIC, XGBOOST_OBJECTIVES, check_labels, xgboost_objective
from .errors import InvalidOption, MissingColumn, UnsupportedColumnType, UnusableData
from .options import TrainOptions
from .spec import is_null
from .validation import MIN_ROWS

Progress = Callable[[dict[str, Any]], None]


@dataclass
class Clock:
    """The job's start, its MAX_RUNTIME and the progress callback."""

    start: float
    budget: float
    progress: Progress | None

    @property
    def hard_deadline(self) -> float:
        # a little slack for building the result object after the last check
        return self.start + self.budget - min(0.25, 0.02 * self.budget)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def report(self, **info: Any) -> None:
        if self.progress is not None:
            self.progress({"elapsed": round(self.elapsed(), 3), "max_runtime": self.budget, **info})


def find_column(table: pa.Table, name: str) -> str:
    if name in table.column_names:
        return name
    folded = [c for c in table.column_names if c.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    raise MissingColumn(f"target column {name!r} does not exist in the training data",
                        hint=f"columns are: {', '.join(table.column_names)}")


def sample_cells(table: pa.Table, opts: TrainOptions, report: list[str]) -> pa.Table:
    cells = table.num_rows * max(1, table.num_columns)
    if cells <= opts.max_cells:
        return table
    keep = max(1, opts.max_cells // max(1, table.num_columns))
    rng = np.random.default_rng([opts.seed, 7])
    rows = np.sort(rng.choice(table.num_rows, size=keep, replace=False))
    report.append(f"MAX_CELLS {opts.max_cells}: {table.num_rows} rows x {table.num_columns} columns = {cells} cells; "
                  f"sampled {keep} rows at random (seed {opts.seed})")
    return table.take(pa.array(rows))


def feature_infos(table: pa.Table, names: list[str], rows: np.ndarray,
                   raw: dict[str, np.ndarray], report: list[str]) -> list[ColumnInfo]:
    infos = []
    for name in names:
        info = describe(name, table.schema.field(name).type, raw[name][rows])
        infos.append(info)
        if not info.used:
            report.append(f"column {name!r} dropped: {info.reason}")
    if not any(i.used for i in infos):
        raise UnusableData("no usable input column: every column is constant, all NULL or ID-like",
                           hint="select columns that vary and carry information about the target")
    return infos


def _encode_target(values: np.ndarray, t: pa.DataType, kind: str, problem_type: str
                   ) -> tuple[np.ndarray, list[Any] | None]:
    if problem_type == P.REGRESSION:
        return values.astype(np.float64), None
    keys = values.astype(str) if kind == "text" else values.astype(np.float64)
    uniq, codes = np.unique(keys, return_inverse=True)
    if kind == "text":
        classes: list[Any] = [str(u) for u in uniq]
    elif kind == "boolean":
        classes = [bool(u) for u in uniq]
    elif pa.types.is_integer(t) or (pa.types.is_decimal(t) and np.all(uniq == np.round(uniq))):
        classes = [int(u) for u in uniq]
    else:
        classes = [float(u) for u in uniq]
    return codes.astype(np.int64), classes


@dataclass
class Target:
    """The prepared target: rows kept (non-NULL), encoded values, classes, problem."""

    name: str
    pg_type: str
    rows: np.ndarray
    y: np.ndarray
    classes: list[Any] | None
    problem_type: str
    objective: P.Objective
    #: the XGBoost objective OBJECTIVE named (the XGBOOST family's loss), or None
    loss: str | None = None


def check_columns(table: pa.Table, names: list[str]) -> None:
    for name in names:
        check_supported(name, table.schema.field(name).type)


def find_target(table: pa.Table, opts: TrainOptions) -> str:
    """The target column's name, checked to be a type that can be predicted."""
    name = find_column(table, opts.target or "")
    ttype = table.schema.field(name).type
    try:
        kind = kind_of(ttype)
    except UnsupportedColumnType:
        kind = "unsupported"
    if kind in ("datetime", "unsupported"):
        raise UnsupportedColumnType(f"target column {name!r} has type {ttype}, which cannot be predicted",
                                    hint="use a numeric, boolean or text target")
    return name


def prepare_target(table: pa.Table, name: str, opts: TrainOptions, report: list[str]) -> Target:
    """Drop NULL-target rows, settle problem type and objective, encode the target."""
    ttype = table.schema.field(name).type
    kind = kind_of(ttype)
    y_raw = to_raw(table.column(name))
    present = ~is_null(y_raw)
    if not present.any():
        raise UnusableData(f"target column {name!r} is NULL in every row")
    if not present.all():
        report.append(f"{int((~present).sum())} rows with a NULL target left out")
    rows = np.flatnonzero(present)
    values = y_raw[rows]
    loss = xgboost_objective(opts.objective)
    if loss is not None:
        problem_type = _problem_of_loss(loss, opts, values, kind, name)
        report.append(f"problem type {problem_type} from OBJECTIVE '{loss}'")
        objective = P.resolve_objective(SELECTION_METRIC[loss], problem_type)
    else:
        if opts.problem_type is None:
            problem_type, why = P.infer_problem_type(values, kind)
            report.append(f"problem type {problem_type} inferred: {why}")
        else:
            P.check_problem_type(opts.problem_type, values, kind)
            problem_type = opts.problem_type
        objective = P.resolve_objective(opts.objective, problem_type)
    report.append(f"objective {objective.name}" + (" (default)" if opts.objective is None else "")
                  + (f", XGBoost loss {loss}" if loss else ""))
    y, classes = _encode_target(values, ttype, kind, problem_type)
    if len(y) < MIN_ROWS:
        raise UnusableData(f"only {len(y)} rows with a non-NULL target; at least {MIN_ROWS} are needed to train "
                           "and validate a model")
    if loss is not None:
        check_labels(loss, y)
    return Target(name, pg_type_name(ttype), rows, y, classes, problem_type, objective, loss)


def _problem_of_loss(loss: str, opts: TrainOptions, values: np.ndarray, kind: str, name: str) -> str:
    """The problem type an XGBoost objective serves, checked against PROBLEM_TYPE and
    against the target (InvalidOption, 22023, naming the target's problem type)."""
    implied = XGBOOST_OBJECTIVES[loss]
    if opts.problem_type is not None and opts.problem_type != implied:
        raise InvalidOption(f"OBJECTIVE '{loss}' is for {implied}, not PROBLEM_TYPE {opts.problem_type}")
    inferred, why = P.infer_problem_type(values, kind)
    n = len(np.unique(values))
    fits = {P.REGRESSION: kind == "numeric",
            P.BINARY: n == 2,
            P.MULTICLASS: inferred != P.REGRESSION or (kind == "numeric" and bool(np.all(
                values.astype(np.float64) == np.round(values.astype(np.float64)))))}[implied]
    if not fits:
        raise InvalidOption(
            f"OBJECTIVE '{loss}' is for {implied}, but target {name!r} is a {inferred} target ({why})",
            hint=f"use an objective for {inferred}: "
                 + ", ".join(o for o, p in XGBOOST_OBJECTIVES.items() if p == inferred))
    return implied
