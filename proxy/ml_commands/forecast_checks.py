"""CREATE MODEL ... MODEL_TYPE FORECAST: the training data's shape, checked on the
client's session before anything is exported or registered.

Redshift's rule for a forecast's data: the first column is the item id (any type),
the second the timestamp (date or timestamp), then the TARGET (numeric); any other
column is a related time series and must be numeric too.  Then, on the data itself
(one aggregate query as the client): rows must exist, no timestamp may be NULL, no
(item, timestamp) pair may repeat, and HORIZON may be at most a third of the longest
series (Amazon Forecast's own limit: the backtest needs history to spare), counting
the steps with a non-NULL target.
Every failure is 22023 at the clause it concerns.
"""

from __future__ import annotations

import hashlib
import re

from .. import errors
from ..errors import PgError
from ..intercept import Takeover
from ..ml_statements import CreateModel, ModelName
from ..ml_statements.statements import ModelFunction, QualifiedName
from ..ml_statements.literals import quote_identifier
from .upstream_ops import collect

_TIME = re.compile(r"^(date|timestamp(\(\d+\))? with(out)? time zone)$")
_NUMERIC = re.compile(r"^(smallint|integer|bigint|real|double precision|numeric(\(\d+(,\d+)?\))?)$")
HISTORY_PER_HORIZON = 3
STUB_SUFFIX = "_forecast"  # the longest series holds at least 3 x HORIZON steps


def stub_function(model: ModelName) -> ModelFunction:
    """A FORECAST model's stub: `<model>_forecast()` in the model's schema, no
    arguments, returning double precision (never called: it carries the model's
    EXECUTE privilege, which mlproxy.forecast() checks).  A model name too long for
    the suffix is cut, with 8 hex digits of its md5 kept for uniqueness."""
    name = model.name + STUB_SUFFIX
    if len(name.encode()) > 63:
        digest = hashlib.md5(model.name.encode()).hexdigest()[:8]
        head = model.name.encode()[: 63 - len(STUB_SUFFIX) - 9].decode(errors="ignore")
        name = f"{head}_{digest}{STUB_SUFFIX}"
    return ModelFunction(QualifiedName(model.schema, name), (), "double precision")


def is_time_type(type_name: str) -> bool:
    return bool(_TIME.match(type_name))


def is_numeric_type(type_name: str) -> bool:
    return bool(_NUMERIC.match(type_name))


def check_columns(stmt: CreateModel, names: list[str], types: list[str]) -> None:
    """Column roles by position and type (module docstring)."""
    source = stmt.positions.get("source")
    if len(names) < 3:
        raise _invalid("a FORECAST model's training data needs at least three columns: item id, "
                       f"timestamp and target; it has {len(names)}", source)
    if not is_time_type(types[1]):
        raise _invalid(f'the second column of a FORECAST model\'s training data, "{names[1]}", is {types[1]}, '
                       "not a timestamp", source,
                       "The columns are item id, timestamp (date or timestamp), target, then related series.")
    target = stmt.target
    if target in (names[0], names[1]):
        raise _invalid(f'TARGET "{target}" is the {"item id" if target == names[0] else "timestamp"} column',
                       stmt.positions.get("target"),
                       "The columns are item id, timestamp, target, then related series.")
    for name, type_name in zip(names[2:], types[2:]):
        if not is_numeric_type(type_name):
            role = "TARGET" if name == target else "related time series"
            raise _invalid(f'{role} column "{name}" of a FORECAST model is {type_name}, not numeric',
                           stmt.positions.get("target" if name == target else "source"),
                           "Cast it to a numeric type in the FROM query.")


async def check_data(takeover: Takeover, stmt: CreateModel, source_sql: str, names: list[str]) -> None:
    """The data rules (module docstring), asked on the client's session."""
    item, ts = quote_identifier(names[0]), quote_identifier(names[1])
    target = quote_identifier(stmt.target)
    horizon = int(stmt.options["forecast"]["horizon"])
    # the history is the steps with a target; rows after it (target NULL) only give
    # related series' future values, so they do not lengthen it
    sql = (f"WITH s AS (SELECT {item} AS i, {ts} AS t, {target} IS NOT NULL AS known "
           f"FROM ({source_sql}\n) AS mlproxy_source), "
           "c AS (SELECT i, t, count(*) AS n, bool_or(known) AS known FROM s GROUP BY i, t) "
           "SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM s WHERE t IS NULL), "
           "(SELECT i::text || ', ' || t::text FROM c WHERE n > 1 AND t IS NOT NULL LIMIT 1), "
           "(SELECT max(k) FROM (SELECT count(t) FILTER (WHERE known) AS k FROM c GROUP BY i) AS per_item)")
    result = await collect(takeover, sql)
    if result.error is not None:
        result.error.position = stmt.positions.get("source")
        raise result.error
    total, null_times, duplicate, longest = result.rows[0]
    source = stmt.positions.get("source")
    if int(total) == 0:
        raise _invalid("the training data of a FORECAST model is empty", source)
    if int(null_times):
        raise _invalid(f'{null_times} rows of the training data have a NULL timestamp ("{names[1]}")', source,
                       "Filter them out in the FROM query.")
    if duplicate is not None:
        raise _invalid(f'the training data has more than one row for an item and timestamp ({duplicate})',
                       source, f'Aggregate to one row per ("{names[0]}", "{names[1]}"), e.g. with GROUP BY.')
    if horizon * HISTORY_PER_HORIZON > int(longest or 0):
        raise _invalid(f"HORIZON {horizon} is too long for the history: the longest series has "
                       f"{longest} time steps", stmt.positions.get("settings"),
                       f"HORIZON may be at most a third of the longest series ({int(longest or 0) // 3} here).")


def _invalid(message: str, position: int | None, hint: str | None = None) -> PgError:
    return PgError(errors.INVALID_PARAMETER_VALUE, message, position=position, hint=hint)
