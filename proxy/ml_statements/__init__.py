"""Redshift ML statements (CREATE/SHOW/DROP MODEL, GRANT/REVOKE ... MODEL): a pure,
sans-IO front end.

The proxy uses it in three steps, cheapest first:

    if might_be_ml_statement(query):                 # every query; no false negatives
        for piece in split_statements(query):        # quote/comment-aware ';' split
            stmt = parse_ml_statement(piece.text, offset=piece.start)
            # None -> forward piece.text unchanged; else act on stmt

`parse_statements` does the loop above.  Every malformed ML statement raises
proxy.errors.PgError (42601 syntax, 22023 bad option value, 0A000 unsupported
Redshift feature) with a cursor position into the client's whole query string.
"""

from __future__ import annotations

from .grammar import parse_ml_statement
from .options import MODEL_TYPES, OBJECTIVES, PROBLEM_TYPES
from .prefilter import might_be_ml_statement
from .splitter import StatementText, split_statements
from .statements import (
    CreateModel,
    CreateRemoteModel,
    DropModel,
    Grantee,
    MLStatement,
    ModelFunction,
    ModelLocation,
    ModelName,
    ModelPrivileges,
    QualifiedName,
    ShowModel,
    SourceQuery,
    TableName,
)


def parse_statements(
    sql: str, *, standard_conforming_strings: bool = True
) -> list[tuple[StatementText, MLStatement | None]]:
    """Split `sql` and parse each piece; empty pieces are left out.

    Like Postgres, which parses a whole simple-protocol query string before running
    any of it, this raises for a malformed ML statement anywhere in the string.
    """
    return [
        (piece, parse_ml_statement(piece.text, offset=piece.start,
                                   standard_conforming_strings=standard_conforming_strings))
        for piece in split_statements(sql, standard_conforming_strings=standard_conforming_strings)
        if not piece.is_empty
    ]


__all__ = [
    "CreateModel",
    "CreateRemoteModel",
    "DropModel",
    "Grantee",
    "MLStatement",
    "MODEL_TYPES",
    "ModelFunction",
    "ModelLocation",
    "ModelName",
    "ModelPrivileges",
    "OBJECTIVES",
    "PROBLEM_TYPES",
    "QualifiedName",
    "ShowModel",
    "SourceQuery",
    "StatementText",
    "TableName",
    "might_be_ml_statement",
    "parse_ml_statement",
    "parse_statements",
    "split_statements",
]
