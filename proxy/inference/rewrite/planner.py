"""plan_query: decide how a statement with model calls runs, or refuse it.

Statements that may hold calls: SELECT (also SELECT INTO), INSERT, UPDATE, DELETE,
CREATE TABLE AS, COPY (query) TO, DECLARE CURSOR FOR SELECT, and EXPLAIN of the
others.  A statement that would *store* a call for later (a view, a function body,
a column default, a PREPAREd statement) is refused: the stored call would run the
stub.  A cursor takes the general path: its FETCHes read the lookups' temporary
tables, which therefore live until the end of the transaction (ON COMMIT DROP; a
WITH HOLD cursor is materialized at COMMIT, before they go).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

from pglast import ast
from pglast.enums import ObjectType

from ...errors import FEATURE_NOT_SUPPORTED, INTERNAL_ERROR, PgError
from .analysis import Analysis
from .builtins import is_set_returning
from .clauses import Range, Segmenter
from .functions import ModelFunction, is_model_call, resolve
from .general import GeneralPlanner
from .inputs import refuse
from .plan import ExplainPlan, GeneralPlan, QueryPlan
from .render import Renderer
from .streaming import build as build_streaming
from .streaming import streamable
from .syntax import Span, SpanError, TokenList, descendants, extent, parse, parse_located

WRONG_OBJECT_TYPE = "42809"
_QUERY_STATEMENTS = (ast.SelectStmt, ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt)
_STORED = {
    "ViewStmt": "CREATE VIEW",
    "CreateFunctionStmt": "CREATE FUNCTION",
    "PrepareStmt": "PREPARE",
    "RuleStmt": "CREATE RULE",
    "CreateStmt": "CREATE TABLE",
    "AlterTableStmt": "ALTER TABLE",
    "IndexStmt": "CREATE INDEX",
    "CreateTrigStmt": "CREATE TRIGGER",
    "CreatePolicyStmt": "CREATE POLICY",
    "CreateDomainStmt": "CREATE DOMAIN",
    "MergeStmt": "MERGE",
    "CallStmt": "CALL",
    "ExecuteStmt": "EXECUTE",
}
_counter = itertools.count(1)
_CURSOR_OPT_HOLD = 0x0020  # DeclareCursorStmt.options (parsenodes.h)


def find_model_calls(sql: str, functions: Mapping[str, Sequence[ModelFunction]]) -> bool:
    """True iff Postgres' parser finds a call of one of `functions` in `sql`.

    Names in strings, comments, column names and aliases are not calls; a call
    qualified with a schema none of the functions lives in is not one either.
    """
    statements = parse(sql)
    if not statements:
        return False
    return any(isinstance(node, ast.FuncCall) and is_model_call(node, functions)
               for raw in statements for node in descendants(raw.stmt))


def plan_query(sql: str, functions: Mapping[str, Sequence[ModelFunction]], *,
               search_path: Sequence[str] = ("public",), temp_prefix: str | None = None) -> QueryPlan | None:
    """How to run `sql` (one statement), or None when it calls no model function.

    Raises PgError for what the proxy refuses (0A000, 42809).  A statement Postgres
    cannot parse gives None: forwarded, it gets Postgres' own syntax error.
    `temp_prefix` names the temporary tables (default: unique per process).
    """
    try:
        return _plan(sql, functions, tuple(search_path), temp_prefix)
    except PgError:
        raise
    except SpanError as e:
        raise PgError(FEATURE_NOT_SUPPORTED, "mlproxy: cannot rewrite the model calls of this statement",
                      detail=f"The statement text did not have the expected shape ({e}).") from None
    except RecursionError:
        raise PgError(FEATURE_NOT_SUPPORTED, "mlproxy: statement too deeply nested to rewrite its model calls") from None
    except Exception as e:  # a bug must not take the session down: report it as Postgres would
        raise PgError(INTERNAL_ERROR, f"mlproxy: could not plan the model calls of this statement ({type(e).__name__}: {e})") from e


def _plan(sql: str, functions: Mapping[str, Sequence[ModelFunction]], search_path: tuple[str, ...],
          temp_prefix: str | None) -> QueryPlan | None:
    parsed = parse_located(sql)
    if not parsed or not parsed[0]:
        return None
    statements, constants = parsed
    with_calls = [raw for raw in statements if any(
        isinstance(n, ast.FuncCall) and resolve(n, functions, search_path) is not None for n in descendants(raw.stmt))]
    if not with_calls:
        return None
    if len(statements) > 1:
        raise PgError(FEATURE_NOT_SUPPORTED,
                      "mlproxy: a statement that calls a model function must be sent on its own, "
                      "not in a query string with other statements")
    raw = statements[0]
    tokens = TokenList(sql)
    seg = Segmenter(tokens, constants)
    stmt_end = raw.stmt_location + raw.stmt_len if raw.stmt_len else len(sql)
    lo, hi = tokens.index_from(raw.stmt_location), tokens.index_from(stmt_end)
    while hi > lo and tokens[hi - 1].text == ";":
        hi -= 1
    node, (lo, hi), explain = _unwrap(raw.stmt, seg, lo, hi)
    cursor = None
    if isinstance(raw.stmt, ast.DeclareCursorStmt):
        cursor = "hold" if raw.stmt.options & _CURSOR_OPT_HOLD else "transaction"
    analysis = Analysis(sql, node, (lo, hi), seg, functions, search_path)
    _check_calls(analysis)
    renderer = Renderer(analysis)
    inner_span = seg.span((lo, hi))
    whole = Span(0, len(sql))
    if isinstance(node, ast.SelectStmt) and streamable(analysis) and not _wrapped(raw.stmt, explain):
        plan, _ = build_streaming(analysis, renderer, whole)
        if explain is None:
            return plan
        inner_plan, _ = build_streaming(analysis, renderer, inner_span)
        return ExplainPlan(inner_plan, plan.sql, _analyze(explain), plan.description)
    planner = GeneralPlanner(analysis, renderer, temp_prefix or f"__mlproxy_{next(_counter)}_",
                             transaction_tables=cursor is not None)
    steps = planner.steps()
    tables = ", ".join(f"{s.table} ({s.function.name})" for s in steps)
    noun = "table" if len(steps) == 1 else "tables"
    description = f"mlproxy: general path via temporary {noun} {tables}"
    if explain is None:
        return GeneralPlan(steps, planner.final(whole), description, cursor=cursor)
    inner = GeneralPlan(steps, planner.final(inner_span), description)
    return ExplainPlan(inner, planner.final(whole), _analyze(explain), description)


def _wrapped(stmt: ast.Node, explain: ast.ExplainStmt | None) -> bool:
    """Is the query inside CREATE TABLE AS / COPY / DECLARE (then no rows come back
    to stream)?"""
    inner = explain.query if explain is not None else stmt
    return not isinstance(inner, ast.SelectStmt)


def _analyze(explain: ast.ExplainStmt) -> bool:
    for option in explain.options or ():
        if option.defname == "analyze":
            arg = option.arg
            if arg is None:
                return True
            value = getattr(arg, "sval", None) or getattr(arg, "boolval", None) or getattr(arg, "ival", None)
            return str(value).lower() not in ("false", "off", "0", "none")
    return False


def _unwrap(stmt: ast.Node, seg: Segmenter, lo: int, hi: int) -> tuple[ast.Node, Range, ast.ExplainStmt | None]:
    """The query statement inside EXPLAIN / CREATE TABLE AS / COPY, with its tokens."""
    explain = None
    t = seg.tokens
    while not isinstance(stmt, _QUERY_STATEMENTS):
        if isinstance(stmt, ast.ExplainStmt) and explain is None:
            explain = stmt
            i = lo + 1
            if t[i].text == "(":
                i = seg.skip_group(i)
            else:
                while t[i].word in ("ANALYZE", "ANALYSE", "VERBOSE"):
                    i += 1
            stmt, lo = stmt.query, i
        elif isinstance(stmt, ast.CreateTableAsStmt) and stmt.objtype == ObjectType.OBJECT_TABLE \
                and isinstance(stmt.query, _QUERY_STATEMENTS):
            level = t.level(lo)
            relation = t.index_at(stmt.into.rel.location)
            start = next(i for i in range(relation + 1, hi) if t[i].word == "AS" and t.level(i) == level)
            words = [t[i].word for i in range(max(lo, hi - 3), hi)]
            if words[-2:] == ["WITH", "DATA"]:
                hi -= 2
            elif words[-3:] == ["WITH", "NO", "DATA"]:
                hi -= 3
            stmt, lo = stmt.query, start + 1
        elif isinstance(stmt, ast.DeclareCursorStmt) and isinstance(stmt.query, ast.SelectStmt) \
                and explain is None:
            level = t.level(lo)
            start = next(i for i in range(lo + 1, hi) if t[i].word == "FOR" and t.level(i) == level)
            stmt, lo = stmt.query, start + 1
        elif isinstance(stmt, ast.CopyStmt) and stmt.query is not None and not stmt.is_from:
            ext = extent(stmt.query, seg.constants)
            group = t.enclosing_group(t.index_at(ext.first), t.index_at(ext.last))
            while group is not None and not seg.starts_statement(group[0] + 1, group[1]):
                group = t.enclosing_group(group[0], group[1])
            if group is None:
                raise SpanError("COPY query not found")
            stmt, (lo, hi) = stmt.query, (group[0] + 1, group[1])
        else:
            raise _stored(stmt)
    return stmt, (lo, hi), explain


def _stored(stmt: ast.Node) -> PgError:
    name = type(stmt).__name__
    if isinstance(stmt, ast.CreateTableAsStmt):
        kind = "CREATE MATERIALIZED VIEW" if stmt.objtype != ObjectType.OBJECT_TABLE else "CREATE TABLE AS EXECUTE"
    else:
        kind = _STORED.get(name) or re.sub(r"(?<!^)(?=[A-Z])", " ", name.removesuffix("Stmt")).upper()
    hint = None
    if name == "PrepareStmt":
        hint = "Prepare it with the extended query protocol (Parse/Bind) instead; mlproxy rewrites those."
    elif name in ("ViewStmt", "CreateFunctionStmt", "RuleStmt", "CreateStmt", "IndexStmt", "CreateTableAsStmt"):
        hint = "A stored definition would call the model's stub later; call the model in the query that reads it."
    return PgError(FEATURE_NOT_SUPPORTED, f"mlproxy: model function calls are not supported in {kind}", hint=hint)


def _check_calls(analysis: Analysis) -> None:
    """Refuse the call placements and spellings the rewrite cannot serve."""
    for call in analysis.calls:
        node = call.node
        flag = _aggregate_syntax(node, call.name)
        if flag is not None:
            raise PgError(WRONG_OBJECT_TYPE, flag, position=call.span.start + 1)
        if any(isinstance(a, ast.NamedArgExpr) for a in node.args or ()) or node.func_variadic:
            raise refuse(f"named or VARIADIC arguments in a call of {call.name} are not supported", call,
                         hint="Pass the arguments by position.")
        if call.in_from_function:
            raise refuse("model function calls in a FROM-clause function, TABLESAMPLE or table expression "
                         "are not supported", call, hint="Call the model in the select list or WHERE clause.")
        if call.clause == "on_conflict":
            raise refuse("model function calls in ON CONFLICT are not supported", call)
        if call.clause == "returning" and call.block.kind != "delete":
            raise refuse("model function calls in RETURNING of INSERT or UPDATE are not supported: the returned "
                         "rows do not exist before the statement runs", call,
                         hint="Select the model's result from the table afterwards.")
        if call.clause == "other":
            raise refuse("model function calls are not supported in this statement", call)
        for fc, block in analysis.other_calls:
            if block is call.block and is_set_returning(fc) and any(fc.location in a for a in call.args):
                raise refuse(f"set-returning function {fc.funcname[-1].sval}() in the arguments of {call.name} "
                             "is not supported", call, hint="Move it into a LATERAL FROM item.")


def _aggregate_syntax(node: ast.FuncCall, name: str) -> str | None:
    """Postgres' 42809 message for aggregate/window syntax on an ordinary function."""
    if node.agg_star:
        return f"{name}(*) specified, but {name} is not an aggregate function"
    if node.agg_distinct:
        return f"DISTINCT specified, but {name} is not an aggregate function"
    if node.agg_within_group:
        return f"WITHIN GROUP specified, but {name} is not an aggregate function"
    if node.agg_order:
        return f"ORDER BY specified, but {name} is not an aggregate function"
    if node.agg_filter is not None:
        return f"FILTER specified, but {name} is not an aggregate function"
    if node.over is not None:
        return f"OVER specified, but {name} is not a window function nor an aggregate function"
    return None

