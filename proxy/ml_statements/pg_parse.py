"""The parts of CREATE MODEL that are plain Postgres, checked by Postgres' own parser.

pglast (libpg_query) cannot parse CREATE MODEL, but the training query inside
`FROM ( ... )` and the type names of FUNCTION/RETURNS are ordinary SQL.  Handing
them to the real parser means we accept exactly what Postgres accepts, and report
its errors with the cursor moved into the client's text.
"""

from __future__ import annotations

from pglast import ast, parse_sql
from pglast.enums import SetOperation
from pglast.parser import ParseError

from .lexer import near, syntax_error, tokenize
from .literals import quote_identifier

# Postgres' internal names of built-in types -> format_type()'s spelling.
_TYPE_DISPLAY = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "varchar": "character varying",
    "bpchar": "character",
    "varbit": "bit varying",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "time": "time without time zone",
    "timetz": "time with time zone",
}
# gram.y's interval field masks (INTERVAL_MASK bits) -> their SQL spelling.
_INTERVAL_FIELDS = {
    4: "year", 2: "month", 8: "day", 1024: "hour", 2048: "minute", 4096: "second",
    6: "year to month", 1032: "day to hour", 3080: "day to minute", 7176: "day to second",
    3072: "hour to minute", 7168: "hour to second", 6144: "minute to second",
}
_INTERVAL_FULL_RANGE = 0x7FFF
_CAST_PREFIX = "SELECT CAST(NULL AS "
_TYPE_HINT = "Expected a Postgres type name such as integer, text or double precision."


def normalize_type_name(text: str, position: int, hint: str = _TYPE_HINT) -> str:
    """Canonical spelling of the type named by `text` (as format_type() prints it).

    `position` is the client cursor of `text[0]`.  Wrapping the text in CAST(... AS
    <text>) makes anything after a complete type name a syntax error, so `int FROM t`
    or `x y` cannot slip through as a type.
    """
    try:
        stmts = parse_sql(f"{_CAST_PREFIX}{text})")
    except ParseError as e:
        location = e.args[1] if len(e.args) > 1 else None
        inside = location is not None and len(_CAST_PREFIX) <= location < len(_CAST_PREFIX) + len(text)
        if inside:
            raise syntax_error(str(e.args[0]), position + location - len(_CAST_PREFIX), hint) from None
        raise _invalid_type(text, position, hint) from None
    type_name = stmts[0].stmt.targetList[0].val.typeName
    if type_name.setof or type_name.pct_type:
        raise _invalid_type(text, position, hint)
    try:
        return _format_type(type_name)
    except ValueError:
        raise _invalid_type(text, position, hint) from None


def _invalid_type(text: str, position: int, hint: str) -> Exception:
    return syntax_error(f"invalid type name {near(text)}", position, hint)


def _format_type(type_name: ast.TypeName) -> str:
    names = [n.sval for n in type_name.names]
    builtin = len(names) == 1 or (len(names) == 2 and names[0] == "pg_catalog")
    base = names[-1]
    mods = [_typmod_value(m) for m in type_name.typmods or ()]
    if builtin and base == "interval":
        words = "interval"
        if mods and mods[0] != _INTERVAL_FULL_RANGE:
            if mods[0] not in _INTERVAL_FIELDS:
                raise ValueError("not an interval field list")
            words += " " + _INTERVAL_FIELDS[mods[0]]
        display = words + (f"({mods[1]})" if len(mods) > 1 else "")
    else:
        if builtin and base in _TYPE_DISPLAY:
            words = _TYPE_DISPLAY[base]
        elif builtin and names[0] == "pg_catalog":
            words = base  # a keyword-spelled built-in (numeric, json, bit): no quotes
        else:
            words = ".".join(quote_identifier(n) for n in names)
        suffix = f"({','.join(str(m) for m in mods)})" if mods else ""
        head, _, tail = words.partition(" ")
        # format_type() puts a time/timestamp precision after the first word.
        if suffix and base in ("time", "timetz", "timestamp", "timestamptz"):
            display = f"{head}{suffix} {tail}"
        else:
            display = words + suffix
    return display + ("[]" if type_name.arrayBounds else "")


def _typmod_value(node: ast.Node) -> int:
    """An integer type modifier; anything else is not a type Postgres can build."""
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Integer):
        return node.val.ival
    raise ValueError("type modifiers must be integer constants")


def check_select(text: str, position: int) -> None:
    """Raise PgError(42601) unless `text` is exactly one SELECT (VALUES, WITH ...).

    `position` is the client cursor of `text[0]`.  The caller has already rejected
    `;` inside the parentheses, so there is at most one statement here.
    """
    try:
        stmts = parse_sql(text)
    except ParseError as e:
        location = e.args[1] if len(e.args) > 1 else None
        if location is None:  # Postgres would have met our closing parenthesis here
            raise syntax_error(f"syntax error {near(')')}", position + len(text),
                               hint="The query in FROM ( ... ) is incomplete.") from None
        raise syntax_error(str(e.args[0]), position + location,
                           hint="This is in the query inside FROM ( ... ), parsed as ordinary Postgres SQL.") from None
    hint = "FROM ( ... ) takes one SELECT query (SELECT, VALUES or WITH ... SELECT)."
    if not stmts:
        raise syntax_error(f"syntax error {near(')')}", position + len(text), hint=hint)
    raw = stmts[0]
    stmt = raw.stmt
    if not isinstance(stmt, ast.SelectStmt):
        first = next(tokenize(text[raw.stmt_location:], strict=False))
        raise syntax_error(f"syntax error {near(first.text)}", position + raw.stmt_location, hint=hint)
    into = _into_clause(stmt)
    if into is not None:
        # The INTO keyword is the last one before the new table's name.
        keyword = [t for t in tokenize(text[: into.rel.location], strict=False) if t.is_keyword("into")][-1]
        raise syntax_error(f"syntax error {near(keyword.text)}", position + keyword.start,
                           hint="SELECT ... INTO creates a table; FROM ( ... ) takes a plain SELECT.")


def _into_clause(stmt: ast.SelectStmt) -> ast.IntoClause | None:
    """The INTO clause of a SELECT, which may sit in either arm of a set operation."""
    if stmt.intoClause is not None:
        return stmt.intoClause
    if stmt.op != SetOperation.SETOP_NONE:
        return _into_clause(stmt.larg) or _into_clause(stmt.rarg)
    return None
