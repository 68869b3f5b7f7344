"""Errors the compiler raises, each carrying the SQLSTATE the proxy should report.

The proxy turns any `CompilerError` into an ErrorResponse by reading `sqlstate`, so it
never needs to know the individual classes. Messages name the column, value or file
at fault and say what was expected; they never contain a traceback. Everything is
checked in Python before native code runs, so bad input can never crash the process.
"""

from __future__ import annotations

#: SQLSTATE codes used here (names as in Postgres' errcodes.txt).
UNDEFINED_FUNCTION = "42883"
INVALID_PARAMETER_VALUE = "22023"
NUMERIC_VALUE_OUT_OF_RANGE = "22003"
DATA_CORRUPTED = "XX001"
FEATURE_NOT_SUPPORTED = "0A000"
INTERNAL_ERROR = "XX000"


class CompilerError(Exception):
    """Base class: a model could not be serialized, built, loaded or evaluated."""

    sqlstate = INTERNAL_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UnsupportedModel(CompilerError):
    """The trained model cannot be turned into an artifact (e.g. Treelite refuses it)."""

    sqlstate = FEATURE_NOT_SUPPORTED


class UnsupportedArtifact(CompilerError):
    """A well-formed artifact written by a newer, incompatible mlproxy."""

    sqlstate = FEATURE_NOT_SUPPORTED


class CorruptArtifact(CompilerError):
    """Artifact bytes are damaged, truncated or do not match their expected hash."""

    sqlstate = DATA_CORRUPTED


class BuildError(CompilerError):
    """The native library could not be generated, compiled or verified."""

    sqlstate = INTERNAL_ERROR


class ArgumentMismatch(CompilerError):
    """The batch does not fit the model function's signature: a missing or extra
    column, or a column whose type cannot be an argument of that function. Postgres
    reports calls with the wrong argument list as undefined_function."""

    sqlstate = UNDEFINED_FUNCTION

    def __init__(self, message: str, *, column: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.column = column


class InvalidInputValue(CompilerError):
    """A value the model cannot take (Infinity, a number too large, ragged columns)."""

    sqlstate = INVALID_PARAMETER_VALUE

    def __init__(self, message: str, *, column: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.column = column


class NotAClassifier(CompilerError):
    """Probabilities were asked of a regression or clustering model; Postgres would
    say the `_prob` function does not exist for it."""

    sqlstate = UNDEFINED_FUNCTION


class ValueOutOfRange(InvalidInputValue):
    """Inputs so large that the model's output overflows (numeric_value_out_of_range)."""

    sqlstate = NUMERIC_VALUE_OUT_OF_RANGE
