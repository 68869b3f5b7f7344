"""The streaming path: model calls that are whole entries of the top select list.

`SELECT id, predict_churn(age, plan) AS p FROM t` becomes

    SELECT id, (CASE WHEN false THEN predict_churn(age, plan) END) AS p,
           ((age)::integer)::double precision AS __mlproxy_0_0,
           ((plan)::text) AS __mlproxy_0_1 FROM t

Postgres still resolves the call (so a wrong argument list is its own 42883 at the
call, and the placeholder column has the function's result type) but folds the
dead CASE branch away, so the stub never runs.  The proxy reads the appended
columns, predicts, fills the placeholder and drops them.

Appending columns is only invisible when nothing else looks at the select list as
a whole, so this path is taken only when:

- the statement is a plain SELECT (no set operation, no SELECT INTO), every model
  call in it is an entire select-list entry, and none is nested in another;
- it has no plain DISTINCT (the extra columns would change what is distinct);
- no ORDER BY, GROUP BY or DISTINCT ON item names a call's column by its output
  name or its position (they would sort or group by the NULL placeholder);
- the select list has at most one `*` (the proxy then learns its width from the
  RowDescription).

GROUP BY, aggregates, window functions, DISTINCT ON, LIMIT/OFFSET, ORDER BY other
columns, joins, WITH, FOR UPDATE and $n parameters are all fine: the appended
columns are the calls' own arguments, valid wherever the call itself is.
Everything else takes the general path.
"""

from __future__ import annotations

from pglast import ast

from ...ml_statements.literals import quote_identifier
from .analysis import Analysis, Call
from .functions import arg_type
from .plan import ArgColumn, StreamingCall, StreamingPlan
from .render import Renderer
from .syntax import Span, descendants
from .text import Insert, Piece, assemble


def streamable(analysis: Analysis) -> bool:
    """Can every call of this statement be evaluated on the streaming result?"""
    root = analysis.root
    node = root.node
    if root.kind != "select" or node.intoClause is not None:
        return False
    if not all(c.block is root and c.whole_target for c in analysis.calls):
        return False
    if node.distinctClause and node.distinctClause[0] is None:  # plain DISTINCT
        return False
    targets = node.targetList
    stars = [i for i, t in enumerate(targets) if _is_star(t.val)]
    if len(stars) > 1:
        return False
    call_names = {_output_name(c) for c in analysis.calls}
    call_positions = {c.target_index + 1 for c in analysis.calls}
    first_star = stars[0] + 1 if stars else None
    items = [s.node for s in node.sortClause or ()] + list(node.groupClause or ()) + \
        [d for d in node.distinctClause or () if d is not None]
    for item in items:
        for ref in descendants(item):
            if isinstance(ref, ast.ColumnRef) and len(ref.fields) == 1 and isinstance(ref.fields[0], ast.String):
                if ref.fields[0].sval in call_names:
                    return False
            elif isinstance(ref, ast.A_Const) and isinstance(ref.val, ast.Integer):
                if ref.val.ival in call_positions or (first_star is not None and ref.val.ival >= first_star):
                    return False
    return True


def _is_star(node: ast.Node) -> bool:
    if isinstance(node, ast.ColumnRef):
        return isinstance(node.fields[-1], ast.A_Star)
    if isinstance(node, ast.A_Indirection):
        return any(isinstance(i, ast.A_Star) for i in node.indirection)
    return False


def _output_name(call: Call) -> str:
    target = call.block.node.targetList[call.target_index]
    return target.name or call.name


def build(analysis: Analysis, renderer: Renderer, span: Span) -> tuple[StreamingPlan, list[Piece]]:
    """The streaming plan, and the pieces of `span` rewritten (for EXPLAIN's text too)."""
    root = analysis.root
    targets = analysis.clauses(root).get("targets")
    end = analysis.segmenter.span(targets).end
    user_columns = len(root.node.targetList)
    replacements: list[tuple[Span, list[Piece]]] = []
    appended: list[Piece] = []
    calls: list[StreamingCall] = []
    column = user_columns
    for k, call in enumerate(analysis.calls):
        anchor = call.span.start
        placeholder: list[Piece] = [Insert("(CASE WHEN false THEN ", anchor), *renderer.call_verbatim(call),
                                    Insert(" END)", anchor)]
        target = root.node.targetList[call.target_index]
        if not target.name:
            placeholder.append(Insert(f" AS {quote_identifier(call.name)}", anchor))
        replacements.append((call.span, placeholder))
        args = []
        declared = _declared_types(call)
        for i, arg in enumerate(call.args):
            kind = arg_type(declared[i])
            prefix, suffix = kind.wrap()
            appended += [Insert(f", {prefix}", arg.start), *renderer.arg(call, i),
                         Insert(f"{suffix} AS __mlproxy_{k}_{i}", arg.start)]
            args.append(ArgColumn(column, kind.kind, declared[i]))
            column += 1
        calls.append(StreamingCall(call.function, call.target_index, _output_name(call), tuple(args)))
    replacements.append((Span(end, end), appended))
    pieces = renderer.span(span, replace=replacements)
    stars = [i for i, t in enumerate(root.node.targetList) if _is_star(t.val)]
    names = ", ".join(dict.fromkeys(c.name for c in analysis.calls))
    plan = StreamingPlan(
        sql=assemble(analysis.sql, pieces),
        calls=tuple(calls),
        user_columns=user_columns,
        appended_columns=column - user_columns,
        description=f"mlproxy: streaming inference of {names} in the select list",
        star_index=stars[0] if stars else None,
    )
    return plan, pieces


def _declared_types(call: Call) -> list[str]:
    """Declared types per written argument; extra arguments (a call Postgres will
    reject as 42883 anyway) travel as text so the rewritten text stays valid."""
    declared = list(call.function.arg_types[: len(call.args)])
    return declared + ["text"] * (len(call.args) - len(declared))
