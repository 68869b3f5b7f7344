"""Entry point of the ML statement parser: is this one of ours, and which?

Grammar (keywords case-insensitive, identifiers by Postgres' rules):

    CREATE MODEL [schema.]name
      FROM { [schema.]table | ( select ) }
      [ TARGET column ]                       -- required unless MODEL_TYPE KMEANS
      FUNCTION [schema.]fn [ ( type [, ...] ) ] [ RETURNS type ]
      [ IAM_ROLE { DEFAULT | 'arn' } ]
      [ AUTO { ON | OFF } ]
      [ MODEL_TYPE word ] [ PROBLEM_TYPE word ] [ OBJECTIVE 'string' ]
      [ PREPROCESSORS 'json' ]
      [ HYPERPARAMETERS DEFAULT [ EXCEPT ( key value [, ...] ) ] ]
      [ SETTINGS ( key value [, ...] ) ]
    CREATE MODEL [schema.]name                -- bring your own model (imported, not trained)
      FROM { 'location' | ( select returning one bytea ) }
      FUNCTION [schema.]fn ( type [, ...] ) RETURNS type
      [ IAM_ROLE { DEFAULT | 'arn' } ] [ SETTINGS ( key value [, ...] ) ]
    SHOW MODEL { ALL | [schema.]name }
    DROP MODEL [ IF EXISTS ] [schema.]name
    GRANT / REVOKE ... ON MODEL, GRANT / REVOKE CREATE MODEL  (see privileges.py)

Positions in errors are 1-based character cursors into the client's whole query
string: the caller passes the statement's `offset` in it (StatementText.start).
"""

from __future__ import annotations

from proxy.errors import PgError

from .create_model import parse_create_model
from .lexer import PUNCT
from .privileges import parse_model_privileges
from .reader import TokenReader
from .statements import DropModel, MLStatement, ModelName, ShowModel


def parse_ml_statement(
    sql: str, *, offset: int = 0, standard_conforming_strings: bool = True
) -> MLStatement | None:
    """Parse one statement; None if it is not an ML statement (forward it unchanged).

    Raises PgError for an ML statement that is malformed.  `sql` is one statement,
    optionally ending in `;`; `offset` is where it starts in the client's query
    string, so error positions point into that string.  Only the first words decide
    whether a statement is ours, so anything else costs a few tokens and never fails.
    """
    reader = TokenReader(sql, offset, standard_conforming_strings)
    try:
        first, second = reader.peek(0), reader.peek(1)
    except PgError:
        return None  # not lexable as far as we look: Postgres will say why
    if first.is_keyword("grant") or first.is_keyword("revoke"):
        return parse_model_privileges(reader)
    if not second.is_keyword("model"):
        return None
    if first.is_keyword("create"):
        reader.take(2)
        return parse_create_model(reader)
    if first.is_keyword("drop"):
        reader.take(2)
        return _drop_model(reader)
    if first.is_keyword("show"):
        following = reader.peek(2)
        if following.kind == PUNCT and following.text == ".":
            return None  # SHOW model.setting: a custom GUC
        reader.take(2)
        return _show_model(reader)
    return None


def _show_model(reader: TokenReader) -> ShowModel:
    name = None if reader.keyword("all") else reader.qualified_name(ModelName, "a model name or ALL")[0]
    reader.finish()
    return ShowModel(name, text=reader.sql, offset=reader.offset)


def _drop_model(reader: TokenReader) -> DropModel:
    if_exists = reader.peek().is_keyword("if") and reader.peek(1).is_keyword("exists")
    if if_exists:
        reader.take(2)
    name = reader.qualified_name(ModelName, "a model name")[0]
    reader.finish()
    return DropModel(name, if_exists, text=reader.sql, offset=reader.offset)
