"""Postgres-shaped errors raised inside the proxy.

Every failure the proxy itself detects (bad protocol input, a malformed ML statement,
a training failure) is reported to the client as an ErrorResponse with a real
SQLSTATE, so drivers map it to their usual exception classes and the session stays
in sync. This module holds the one exception type for that and the SQLSTATE codes
the proxy uses.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

# SQLSTATE codes used by the proxy (names follow Postgres' errcodes.txt).
PROTOCOL_VIOLATION = "08P01"
CONNECTION_FAILURE = "08006"
CONNECTION_EXCEPTION = "08000"
SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION = "08001"
FEATURE_NOT_SUPPORTED = "0A000"
SYNTAX_ERROR = "42601"
INVALID_PARAMETER_VALUE = "22023"
CHARACTER_NOT_IN_REPERTOIRE = "22021"  # also Postgres' invalid byte sequence
DUPLICATE_OBJECT = "42710"
UNIQUE_VIOLATION = "23505"
DUPLICATE_FUNCTION = "42723"
NAME_TOO_LONG = "42622"
UNDEFINED_OBJECT = "42704"
UNDEFINED_FUNCTION = "42883"
UNDEFINED_COLUMN = "42703"
WRONG_OBJECT_TYPE = "42809"
DUPLICATE_COLUMN = "42701"
INVALID_SCHEMA_NAME = "3F000"
INSUFFICIENT_PRIVILEGE = "42501"
INVALID_GRANT_OPERATION = "0LP01"
INVALID_AUTHORIZATION_SPECIFICATION = "28000"
ACTIVE_SQL_TRANSACTION = "25001"
OBJECT_NOT_IN_PREREQUISITE_STATE = "55000"
QUERY_CANCELED = "57014"
ADMIN_SHUTDOWN = "57P01"
CANNOT_CONNECT_NOW = "57P03"
TOO_MANY_CONNECTIONS = "53300"
INSUFFICIENT_RESOURCES = "53000"
DISK_FULL = "53100"
IO_ERROR = "58030"
INTERNAL_ERROR = "XX000"
DATA_EXCEPTION = "22000"
TOO_MANY_COLUMNS = "54011"
TOO_MANY_ARGUMENTS = "54023"

#: The hint of an error about text that is not UTF-8: mlproxy parses the statements
#: that mention models, and reads model arguments, as UTF-8, where Postgres sends and
#: takes text in the session's client_encoding.
UTF8_HINT = ("mlproxy reads statements that call models, and the text they give models, "
             "as UTF-8: SET client_encoding TO 'UTF8'")


@dataclass
class PgError(Exception):
    """An error to send to the client as an ErrorResponse.

    `position` is a 1-based character offset into the client's statement text, as
    Postgres reports it (psql draws the caret from it).
    """

    sqlstate: str
    message: str
    position: int | None = None
    hint: str | None = None
    detail: str | None = None
    severity: str = "ERROR"
    fields: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.severity}: {self.message} (SQLSTATE {self.sqlstate})"


def file_error(exc: OSError, action: str = "write to file", path: object = None) -> PgError:
    """Postgres' error for a file operation of the proxy's own that failed, worded as
    Postgres words it (`could not <action> "<path>": <strerror>`, e.g. action "create
    directory", "write to file", "rename file"): a full disk (or quota) is 53100
    disk_full, too many open files 53000, anything else (a read-only file system, an
    I/O error, permissions of the proxy's own directories) 58030 io_error, since the
    client can do nothing about it but tell whoever runs the proxy. `path` names the
    file when the error does not (a failed write on an open file)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        sqlstate = DISK_FULL
    elif exc.errno in (errno.EMFILE, errno.ENFILE):
        sqlstate = INSUFFICIENT_RESOURCES
    else:
        sqlstate = IO_ERROR
    cause = exc.strerror or str(exc)
    filename = exc.filename if exc.filename is not None else path
    if filename is None:
        return PgError(sqlstate, f"could not {action}: {cause}")
    names = f'"{filename}"'
    if exc.filename2 is not None:
        names += f' to "{exc.filename2}"'
    return PgError(sqlstate, f"could not {action} {names}: {cause}")
