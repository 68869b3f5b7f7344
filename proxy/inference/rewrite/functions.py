"""Model functions as SQL sees them: names, how a call resolves, how arguments travel.

A model's SQL function exists upstream as a stub, so Postgres itself can check a
call's arity and argument types.  The proxy evaluates the model, so it has to fetch
the arguments: each one is cast to the declared parameter type (what the call would
have done) and then to a *transport* type whose text form the proxy decodes cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from pglast import ast, parse_sql
from pglast.parser import ParseError

from ...errors import FEATURE_NOT_SUPPORTED, INTERNAL_ERROR, PgError
from ...ml_statements.literals import quote_identifier

FLOAT, INT, EPOCH, TEXT = "float", "int", "epoch", "text"

_NUMERIC = {"int2", "int4", "int8", "float4", "float8", "numeric"}
_EPOCH = {"date", "timestamp", "timestamptz"}
# Spellings that need no schema and carry no implicit type modifier.  Others are
# written pg_catalog.<name>: bare `character` or `bit` would mean length 1.
_BUILTIN_SPELLING = {
    "int2": "smallint", "int4": "integer", "int8": "bigint", "float4": "real",
    "float8": "double precision", "bool": "boolean", "numeric": "numeric",
    "timestamp": "timestamp",
}
_TRANSPORT_SQL_TYPE = {FLOAT: "double precision", INT: "integer", EPOCH: "double precision", TEXT: "text"}


@dataclass(frozen=True)
class ModelFunction:
    """What the proxy knows of one READY model function."""

    schema: str
    name: str
    arg_types: tuple[str, ...]
    return_type: str
    model_id: int
    kind: str  # "predict" (label/value), "prob" (jsonb probabilities) or "explain" (jsonb Shapley values)

    @property
    def qualified_name(self) -> str:
        return f"{quote_identifier(self.schema)}.{quote_identifier(self.name)}"


@dataclass(frozen=True)
class ArgType:
    """One declared parameter type, as a cast target and a transport kind.

    `cast` drops type modifiers: a function parameter declared varchar(10) or
    numeric(10,2) accepts any varchar or numeric, so the cast must not truncate.
    """

    declared: str
    cast: str
    kind: str

    @property
    def sql_type(self) -> str:
        """Column type of the transport value (temporary tables use it)."""
        return _TRANSPORT_SQL_TYPE[self.kind]

    def transport(self, arg_sql: str) -> str:
        """SQL that turns the argument text `arg_sql` into its transport value."""
        typed = f"({arg_sql})::{self.cast}"
        if self.kind == EPOCH:
            return f"extract(epoch FROM {typed})::double precision"
        if self.cast == self.sql_type:  # already the transport type
            return typed
        return f"({typed})::{self.sql_type}"

    def wrap(self) -> tuple[str, str]:
        """transport() split around the argument: (prefix, suffix)."""
        marker = "\x00"
        prefix, _, suffix = self.transport(marker).partition(marker)
        return prefix, suffix


@lru_cache(maxsize=1024)
def arg_type(declared: str) -> ArgType:
    """Classify a declared type name; raises PgError for a name Postgres cannot parse."""
    try:
        stmt = parse_sql(f"SELECT NULL::{declared}")[0].stmt
        type_name = stmt.targetList[0].val.typeName
    except (ParseError, AttributeError, IndexError):
        raise PgError(INTERNAL_ERROR, f"mlproxy: model function argument type {declared!r} is not a type name") from None
    names = [n.sval for n in type_name.names]
    builtin = names[0] == "pg_catalog" and len(names) == 2
    base = names[-1]
    if type_name.arrayBounds:
        kind = TEXT
    elif builtin and base in _NUMERIC:
        kind = FLOAT
    elif builtin and base == "bool":
        kind = INT
    elif (builtin and base in _EPOCH) or names == ["date"]:
        kind = EPOCH
    else:
        kind = TEXT
    if builtin:
        cast = _BUILTIN_SPELLING.get(base, f"pg_catalog.{base}")
    else:
        cast = ".".join(quote_identifier(n) for n in names)
    if type_name.arrayBounds:
        cast += "[]"
    return ArgType(declared, cast, kind)


def call_name(node: ast.FuncCall) -> tuple[str | None, str]:
    """(schema or None, name) of a call, as Postgres' parser left them (folded)."""
    parts = [p.sval for p in node.funcname if isinstance(p, ast.String)]
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return None, parts[-1] if parts else ""


def candidates(name: str, functions: Mapping[str, Sequence[ModelFunction]]) -> list[ModelFunction]:
    """Model functions named exactly `name` (the mapping is keyed by lower-cased name,
    or by the stored name: both are looked at)."""
    found = list(functions.get(name.lower(), ()))
    if name != name.lower():
        found += [f for f in functions.get(name, ()) if f not in found]
    return [f for f in found if f.name == name]


def is_model_call(node: ast.FuncCall, functions: Mapping[str, Sequence[ModelFunction]]) -> bool:
    """Could this call reach a model function (on some search_path)?"""
    schema, name = call_name(node)
    found = candidates(name, functions)
    return any(f.schema == schema for f in found) if schema is not None else bool(found)


def resolve(node: ast.FuncCall, functions: Mapping[str, Sequence[ModelFunction]],
            search_path: Sequence[str]) -> ModelFunction | None:
    """The model function this call invokes, or None if it is not a model call.

    Postgres resolves an unqualified name in the first search_path schema that has a
    function of that name; the proxy knows only model functions, so it does the same
    over them.  Among same-named functions of one schema the arity decides; when it
    matches none, the call is not a model call: forwarded unchanged, it either
    reaches a function of the user's own with that arity, or gets Postgres's own
    42883 for the stub's arity, exactly as without the proxy.
    """
    schema, name = call_name(node)
    found = candidates(name, functions)
    if not found:
        return None
    if schema is None:
        for path_schema in search_path:
            in_schema = [f for f in found if f.schema == path_schema]
            if in_schema:
                found = in_schema
                break
        else:
            return None
    else:
        found = [f for f in found if f.schema == schema]
        if not found:
            return None
    arity = len(node.args or ())
    matching = [f for f in found if len(f.arg_types) == arity]
    if len(matching) > 1:
        raise PgError(FEATURE_NOT_SUPPORTED,
                      f"mlproxy: model function {name} has several overloads with {arity} arguments",
                      position=node.location + 1,
                      hint="Call one model per function name, or qualify the call with its schema.")
    return matching[0] if matching else None
