"""What the trainer would refuse, asked before a job starts.

CREATE MODEL converts the exported snapshot to Parquet (snapshot.convert_csv, in a
thread, streamed) and puts it (all of it up to 2M cells, a uniform 2M-cell sample
beyond: automl.partitioned.SAMPLE_CELLS) to the trainer's own rules, so data no model can be trained on
is an error of the statement, not a FAILED model minutes later: the column roles
(automl.columns: constant, all NULL, ID-like), PREPROCESSORS' columns and
transformers (automl.custom), the problem type the target supports
and the objective it allows (automl.problem), and hyperparameters that depend on the
problem type (automl.hyperparams). These modules are light: `import automl` loads
the estimators only when training starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class Objection:
    """Why training would fail: the trainer's SQLSTATE, message and hint, and the
    CREATE MODEL clause it is about ("source", "target", "problem_type", ...)."""

    sqlstate: str
    message: str
    hint: str | None
    clause: str
    detail: str | None = None


def check(table: pa.Table, features: list[str], options: dict[str, Any]) -> Objection | None:
    """`options`: the job's training options (create_model._train_options)."""
    from automl import problem as P
    from automl.columns import describe, kind_of, to_raw
    from automl.custom import parse
    from automl.errors import AutoMLError
    from automl.hyperparams import map_hyperparameters
    from automl.objectives import SELECTION_METRIC, check_labels, xgboost_objective

    target = options.get("target")
    if target is not None:
        table = table.filter(pc.is_valid(table.column(target)))
    infos = [describe(name, table.schema.field(name).type, to_raw(table.column(name))) for name in features]
    if not any(info.used for info in infos):
        reasons = {info.name: info.reason for info in infos}
        return Objection("22000", "no column of the training data can be used as a feature: each is constant, "
                         "all NULL or ID-like",
                         "Select columns that vary and carry information about the target "
                         "(a row number or key predicts nothing).", "source",
                         "; ".join(f'column "{n}": {r}' for n, r in reasons.items()))
    if options.get("preprocessors"):
        try:
            parse(options["preprocessors"], infos)
        except AutoMLError as e:
            return Objection(e.sqlstate, e.message, e.hint, "preprocessors")
    if target is None:
        return None
    y = to_raw(table.column(target))
    kind = kind_of(table.schema.field(target).type)
    problem_type = options.get("problem_type")
    clause = "target"
    try:
        if problem_type is None:
            problem_type, _ = P.infer_problem_type(y, kind)
        else:
            clause = "problem_type"
            P.check_problem_type(problem_type, y, kind)
        clause = "objective"
        loss = xgboost_objective(options.get("objective"))  # MODEL_TYPE XGBOOST's loss, ranked by its metric
        P.resolve_objective(SELECTION_METRIC[loss] if loss else options.get("objective"), problem_type)
        if loss and problem_type == P.REGRESSION and kind == "numeric":
            check_labels(loss, y.astype("float64"))
        if options.get("model_type") and options.get("hyperparameters"):
            clause = "hyperparameters"
            map_hyperparameters(options["model_type"], options["hyperparameters"], problem_type)
    except AutoMLError as e:
        return Objection(e.sqlstate, e.message, e.hint, clause)
    return None
