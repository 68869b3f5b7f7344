"""Errors that training raises for a SQL user to read.

Each class carries a Postgres SQLSTATE in `sqlstate`, so the proxy can turn any
`AutoMLError` into an ErrorResponse without knowing the individual classes, and a
`hint` (or None) telling the user what to change. Messages name the column or option
at fault and never contain a traceback.
"""

from __future__ import annotations


class AutoMLError(Exception):
    """Base class: something about the request or the data prevents training."""

    sqlstate = "XX000"  # internal_error; subclasses are more specific

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InvalidOption(AutoMLError):
    """A CREATE MODEL option has a bad value or does not fit the problem."""

    sqlstate = "22023"  # invalid_parameter_value


class MissingColumn(AutoMLError):
    """The TARGET (or a PREPROCESSORS column) is not a column of the data."""

    sqlstate = "42703"  # undefined_column


class UnsupportedColumnType(AutoMLError):
    """A feature column has a type that training cannot use (e.g. bytea, json)."""

    sqlstate = "0A000"  # feature_not_supported


class UnusableData(AutoMLError):
    """The data cannot train a model: target all NULL, one class, too few rows."""

    sqlstate = "22000"  # data_exception


class TimeBudgetExceeded(AutoMLError):
    """MAX_RUNTIME ran out before even one candidate model finished training."""

    sqlstate = "57014"  # query_canceled, what Postgres reports for statement_timeout
