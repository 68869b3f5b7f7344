"""MODEL_TYPE FORECAST's own options: Redshift ML's forecasting settings and objectives.

A FORECAST model (Amazon Forecast's AutoPredictor in Redshift) has no FUNCTION, no
PROBLEM_TYPE, PREPROCESSORS or HYPERPARAMETERS, and runs with AUTO ON.  Its SETTINGS:

- HORIZON n (required): how many future time steps to forecast, a positive integer.
- FREQUENCY (required): the series' granularity, one of FREQUENCIES (case as written
  is ignored; the canonical spelling is stored).
- PERCENTILES (optional): a quoted, comma-separated list of at most five forecast
  types, each a quantile in (0, 1) in steps of 0.01 or 'mean'.  Default
  '0.1,0.5,0.9', Amazon Forecast's.  Each becomes one result column, named
  `p<percent>` (0.1 -> p10, 0.05 -> p5) or `mean`.
- OBJECTIVE (optional clause): one of FORECAST_OBJECTIVES; default
  AverageWeightedQuantileLoss, as Amazon Forecast's.

`forecast_options` puts the canonical values into options["forecast"]:
{"horizon": int, "frequency": str, "percentiles": [str, ...] (canonical text such
as "0.1" or "mean"), "columns": [column name, ...], "objective": str}.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from proxy.errors import INVALID_PARAMETER_VALUE, PgError

if TYPE_CHECKING:
    from .options import RawOptions, RawValue

FREQUENCIES = ("Y", "M", "W", "D", "H", "30min", "15min", "10min", "5min", "1min")
FORECAST_OBJECTIVES = ("AverageWeightedQuantileLoss", "WAPE", "RMSE", "MAPE", "MASE")
DEFAULT_PERCENTILES = ("0.1", "0.5", "0.9")
DEFAULT_OBJECTIVE = "AverageWeightedQuantileLoss"
MAX_PERCENTILES = 5
_NOISE = re.compile(r"[\s_\-]")


def forecast_options(raw: RawOptions, options: dict[str, Any], settings_position: int | None,
                     model_type_position: int) -> None:
    """Check a FORECAST model's clauses and add options["forecast"] (module docstring).

    `raw` still holds the objective as written (the generic objective check is not
    run for FORECAST: WAPE, MAPE and MASE mean nothing to it)."""
    for name, clause in (("PROBLEM_TYPE", raw.problem_type), ("PREPROCESSORS", raw.preprocessors)):
        if clause is not None:
            raise _invalid(f"MODEL_TYPE FORECAST does not take {name}", clause.position,
                           "Remove it; a forecast model learns from the series alone.")
    if raw.hyperparameters:
        raise _invalid("MODEL_TYPE FORECAST does not take HYPERPARAMETERS", raw.hyperparameters[0][0].position,
                       "Remove them; the forecaster chooses its models within MAX_RUNTIME.")
    if raw.auto is not None and raw.auto.value == "off":
        raise _invalid("MODEL_TYPE FORECAST requires AUTO ON", raw.auto.position,
                       "Remove AUTO OFF; the forecaster always searches its models.")
    given = {key.value.lower(): (key, value) for key, value in raw.settings}
    where = settings_position if settings_position is not None else model_type_position
    for required, example in (("horizon", "HORIZON 12"), ("frequency", "FREQUENCY 'D'")):
        if required not in given:
            raise _invalid(f"MODEL_TYPE FORECAST requires the setting {required.upper()}", where,
                           f"Add SETTINGS ({example}, ...).")
    horizon = options["settings"]["horizon"]  # a positive int: the generic setting check
    frequency = _frequency(given["frequency"][1])
    percentiles = _percentiles(given["percentiles"][1]) if "percentiles" in given else list(DEFAULT_PERCENTILES)
    options["objective"] = _objective(raw.objective)
    options["settings"]["frequency"] = frequency
    options["forecast"] = {
        "horizon": horizon, "frequency": frequency, "percentiles": percentiles,
        "columns": [column_name(p) for p in percentiles], "objective": options["objective"],
    }


def column_name(percentile: str) -> str:
    """'0.1' -> 'p10', '0.05' -> 'p5', 'mean' -> 'mean' (Redshift's result columns)."""
    if percentile == "mean":
        return "mean"
    return f"p{int(Decimal(percentile) * 100)}"


def _frequency(raw: RawValue) -> str:
    text = raw.value.strip() if raw.kind == "string" else raw.text
    for allowed in FREQUENCIES:
        if text.lower() == allowed.lower():
            return allowed
    raise _invalid(f"invalid value for FREQUENCY: {raw.text}", raw.position,
                   "FREQUENCY must be one of " + ", ".join(f"'{f}'" for f in FREQUENCIES) + ".")


def _percentiles(raw: RawValue) -> list[str]:
    hint = ("PERCENTILES is a quoted list of at most five forecast types, each a quantile "
            "from 0.01 to 0.99 in steps of 0.01 or 'mean', e.g. '0.1,0.5,0.9'.")
    if raw.kind != "string":
        raise _invalid(f"invalid value for PERCENTILES: {raw.text}", raw.position, hint)
    out: list[str] = []
    for part in raw.value.split(","):
        text = part.strip().lower()
        if text != "mean":
            try:
                value = Decimal(text)
            except InvalidOperation:
                value = None
            if value is None or not value.is_finite() or not 0 < value < 1 or (value * 100) % 1 != 0:
                raise _invalid(f"invalid forecast type in PERCENTILES: '{part.strip()}'", raw.position, hint)
            text = str(value.normalize())
        if text in out:
            raise _invalid(f"PERCENTILES lists '{text}' more than once", raw.position, hint)
        out.append(text)
    if len(out) > MAX_PERCENTILES:
        raise _invalid(f"PERCENTILES lists {len(out)} forecast types; at most {MAX_PERCENTILES} are allowed",
                       raw.position, hint)
    return out


def _objective(raw: RawValue | None) -> str:
    if raw is None:
        return DEFAULT_OBJECTIVE
    spelled = _NOISE.sub("", raw.value).lower()
    for allowed in FORECAST_OBJECTIVES:
        if spelled == allowed.lower():
            return allowed
    raise _invalid(f"invalid OBJECTIVE {raw.text} for MODEL_TYPE FORECAST", raw.position,
                   "OBJECTIVE must be one of " + ", ".join(f"'{o}'" for o in FORECAST_OBJECTIVES) + ".")


def _invalid(message: str, position: int, hint: str) -> PgError:
    return PgError(INVALID_PARAMETER_VALUE, message, position=position, hint=hint)
