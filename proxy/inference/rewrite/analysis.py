"""Find the model calls of one statement and the query blocks they live in.

A *block* is one SELECT, VALUES, UPDATE, DELETE or INSERT with its own FROM scope;
blocks nest through sub-queries (SubLink), derived tables, CTEs and set-operation
arms, and the edge to the parent says what a block can see of it.  A *call* knows
its block, the clause it sits in (target list, WHERE, JOIN ... ON, ...), whether it
is inside an aggregate's arguments, and its text: the span from the function name
to the closing parenthesis and one span per argument.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from pglast import ast
from pglast.enums import SetOperation

from .builtins import is_aggregate
from .clauses import Clauses, Range, Segmenter
from .functions import ModelFunction, resolve
from .syntax import Span, SpanError, children, extent

TOP, SUBLINK, FROM, LATERAL, CTE, SETOP, INSERT = "top", "sublink", "from", "lateral", "cte", "setop", "insert"


def returning(node: ast.Node) -> tuple[ast.Node, ...]:
    """RETURNING entries (pglast 8 wraps them in a ReturningClause)."""
    clause = getattr(node, "returningClause", None)
    if clause is not None:
        return tuple(clause.exprs or ())
    return tuple(getattr(node, "returningList", None) or ())


@dataclass(eq=False)
class Block:
    """One query level: its node, its parent and how it hangs from it."""

    node: ast.Node
    parent: Block | None
    edge: str
    from_item: ast.Node | None = None  # the RangeSubselect, for FROM/LATERAL edges
    item_index: int | None = None  # index of the parent's top-level FROM item holding it
    join: ast.JoinExpr | None = None  # the JOIN it is the right-hand side of, if any
    cte: ast.CommonTableExpr | None = None  # for CTE edges
    in_from_function: bool = False  # a sub-query inside a FROM-clause function call
    calls: list[Call] = field(default_factory=list)
    children: list[Block] = field(default_factory=list)
    range: Range | None = None
    _clauses: Clauses | None = None

    @property
    def kind(self) -> str:
        node = self.node
        if isinstance(node, ast.SelectStmt):
            if node.op != SetOperation.SETOP_NONE:
                return "setop"
            return "values" if node.valuesLists else "select"
        return {ast.UpdateStmt: "update", ast.DeleteStmt: "delete", ast.InsertStmt: "insert"}[type(node)]

    def ancestors(self) -> list[Block]:
        chain, current = [], self.parent
        while current is not None:
            chain.append(current)
            current = current.parent
        return chain

    def within(self, other: Block) -> bool:
        return self is other or other in self.ancestors()


@dataclass(eq=False)
class Call:
    """One call of a model function in the statement."""

    node: ast.FuncCall
    function: ModelFunction
    block: Block
    clause: str
    target_index: int | None
    in_aggregate: bool
    join: ast.JoinExpr | None
    in_from_function: bool
    ordinal: int = -1
    span: Span = Span(0, 0)
    args: tuple[Span, ...] = ()
    enclosing: Call | None = None  # innermost model call whose text contains this one

    @property
    def name(self) -> str:
        return self.function.name

    @property
    def whole_target(self) -> bool:
        """The call is an entire select-list entry (`f(x)` or `f(x) AS p`)."""
        if self.clause != "target" or self.target_index is None or self.block.kind != "select":
            return False
        return self.block.node.targetList[self.target_index].val is self.node


@dataclass(frozen=True)
class _Ctx:
    block: Block
    clause: str
    target_index: int | None = None
    in_aggregate: bool = False
    join: ast.JoinExpr | None = None
    in_from_function: bool = False


class Analysis:
    """The blocks and model calls of one statement, with text spans."""

    def __init__(self, sql: str, root: ast.Node, root_range: Range, segmenter: Segmenter,
                 functions: Mapping[str, Sequence[ModelFunction]], search_path: Sequence[str]) -> None:
        self.sql = sql
        self.tokens = segmenter.tokens
        self.segmenter = segmenter
        self._functions = functions
        self._search_path = search_path
        self.blocks: list[Block] = []
        self.calls: list[Call] = []
        self.params: list[tuple[int, Span]] = []
        self.range_vars: list[tuple[ast.RangeVar, Block]] = []
        self.other_calls: list[tuple[ast.FuncCall, Block]] = []  # calls of ordinary functions
        self.samples: list[ast.RangeTableSample] = []
        self.root = self._statement(root, None, TOP)
        self.root.range = root_range
        self._finish_calls()

    # -- walking the tree ------------------------------------------------------------

    def _statement(self, node: ast.Node, parent: Block | None, edge: str, **where) -> Block:
        block = Block(node, parent, edge, **where)
        self.blocks.append(block)
        if parent is not None:
            parent.children.append(block)
        with_clause = getattr(node, "withClause", None)
        if with_clause is not None:
            for cte in with_clause.ctes:
                self._statement(cte.ctequery, block, CTE, cte=cte,
                                in_from_function=block.in_from_function)
        ctx = _Ctx(block, "", in_from_function=block.in_from_function)
        if isinstance(node, ast.SelectStmt):
            self._select(node, ctx)
        elif isinstance(node, ast.UpdateStmt):
            self._targets(node.targetList, replace(ctx, clause="set"))
            self._from_list(node.fromClause, ctx)
            self._expr(node.whereClause, replace(ctx, clause="where"))
            self._targets(returning(node), replace(ctx, clause="returning"))
        elif isinstance(node, ast.DeleteStmt):
            self._from_list(node.usingClause, ctx)
            self._expr(node.whereClause, replace(ctx, clause="where"))
            self._targets(returning(node), replace(ctx, clause="returning"))
        elif isinstance(node, ast.InsertStmt):
            if node.selectStmt is not None:
                self._statement(node.selectStmt, block, INSERT, in_from_function=block.in_from_function)
            self._expr(node.onConflictClause, replace(ctx, clause="on_conflict"))
            self._targets(returning(node), replace(ctx, clause="returning"))
        else:  # MERGE and anything else that may hold a call: walk it, the planner refuses
            for _, child in children(node):
                self._expr(child, replace(ctx, clause="other"))
        return block

    def _select(self, node: ast.SelectStmt, ctx: _Ctx) -> None:
        block = ctx.block
        if node.op != SetOperation.SETOP_NONE:
            self._statement(node.larg, block, SETOP, in_from_function=block.in_from_function)
            self._statement(node.rarg, block, SETOP, in_from_function=block.in_from_function)
        else:
            self._targets(node.targetList, replace(ctx, clause="target"))
            self._from_list(node.fromClause, ctx)
            self._expr(node.whereClause, replace(ctx, clause="where"))
            for item in node.groupClause or ():
                self._expr(item, replace(ctx, clause="group"))
            self._expr(node.havingClause, replace(ctx, clause="having"))
            for item in node.windowClause or ():
                self._expr(item, replace(ctx, clause="window"))
            for item in node.distinctClause or ():
                if item is not None:
                    self._expr(item, replace(ctx, clause="distinct_on"))
            for row in node.valuesLists or ():
                for item in row:
                    self._expr(item, replace(ctx, clause="values"))
        for item in node.sortClause or ():
            self._expr(item, replace(ctx, clause="order"))
        self._expr(node.limitCount, replace(ctx, clause="limit"))
        self._expr(node.limitOffset, replace(ctx, clause="limit"))

    def _targets(self, targets: Sequence[ast.Node] | None, ctx: _Ctx) -> None:
        for i, target in enumerate(targets or ()):
            self._expr(target, replace(ctx, target_index=i))

    def _from_list(self, items: Sequence[ast.Node] | None, ctx: _Ctx) -> None:
        for index, item in enumerate(items or ()):
            self._from_item(item, ctx, index)

    def _from_item(self, item: ast.Node, ctx: _Ctx, index: int, join: ast.JoinExpr | None = None) -> None:
        block = ctx.block
        if isinstance(item, ast.RangeVar):
            self.range_vars.append((item, block))
        elif isinstance(item, ast.RangeSubselect):
            self._statement(item.subquery, block, LATERAL if item.lateral else FROM,
                            from_item=item, item_index=index, join=join, in_from_function=ctx.in_from_function)
        elif isinstance(item, ast.JoinExpr):
            self._from_item(item.larg, ctx, index)
            self._from_item(item.rarg, ctx, index, item)
            self._expr(item.quals, replace(ctx, clause="on", join=item))
        else:  # functions, TABLESAMPLE, XMLTABLE, JSON_TABLE: expressions evaluated in FROM
            if isinstance(item, ast.RangeTableSample):
                self.samples.append(item)
                if isinstance(item.relation, ast.RangeVar):
                    self.range_vars.append((item.relation, block))
            for _, child in children(item):
                self._expr(child, replace(ctx, clause="from", in_from_function=True))

    def _expr(self, node: ast.Node | None, ctx: _Ctx) -> None:
        if node is None:
            return
        if isinstance(node, ast.FuncCall):
            function = resolve(node, self._functions, self._search_path)
            if function is not None:
                self.calls.append(Call(node, function, ctx.block, ctx.clause, ctx.target_index,
                                       ctx.in_aggregate, ctx.join, ctx.in_from_function))
            else:
                self.other_calls.append((node, ctx.block))
                if is_aggregate(node):
                    ctx = replace(ctx, in_aggregate=True)
        elif isinstance(node, ast.SubLink):
            self._expr(node.testexpr, ctx)
            self._statement(node.subselect, ctx.block, SUBLINK, in_from_function=ctx.in_from_function)
            return
        elif isinstance(node, ast.ParamRef):
            index = self.tokens.index_at(node.location)
            self.params.append((node.number, Span(node.location, self.tokens[index].end)))
        for _, child in children(node):
            self._expr(child, ctx)

    # -- text ------------------------------------------------------------------------

    def _finish_calls(self) -> None:
        self.calls.sort(key=lambda c: c.node.location)
        for ordinal, call in enumerate(self.calls):
            call.ordinal = ordinal
            call.span, call.args = self._call_text(call.node)
            call.block.calls.append(call)
        open_calls: list[Call] = []  # calls are nested or disjoint: a stack finds the enclosing one
        for call in self.calls:
            while open_calls and open_calls[-1].span.end <= call.span.start:
                open_calls.pop()
            call.enclosing = open_calls[-1] if open_calls else None
            open_calls.append(call)
        self._starts = [c.span.start for c in self.calls]
        self.params.sort(key=lambda p: p[1].start)
        self._param_starts = [where.start for _, where in self.params]

    def _call_text(self, node: ast.FuncCall) -> tuple[Span, tuple[Span, ...]]:
        """The call's span (name to closing parenthesis) and its arguments' spans."""
        t = self.tokens
        i = t.index_at(node.location)
        while i < len(t) and t[i].text != "(":
            i += 1
        close = t.partner.get(i)
        if close is None:
            raise SpanError("call without argument list")
        args: list[Span] = []
        if close > i + 1 and node.args:
            for lo, hi in self.segmenter.split((i + 1, close)):
                args.append(self.segmenter.span((lo, hi)))
        if len(args) != len(node.args or ()):
            raise SpanError("argument count differs from the tree")
        for arg, span in zip(node.args or (), args):
            ext = extent(arg, self.segmenter.constants)
            if ext is not None and not (span.start <= ext.first and ext.last < span.end):
                raise SpanError("argument outside its span")
        return Span(t[t.index_at(node.location)].start, t[close].end), tuple(args)

    def block_range(self, block: Block) -> Range:
        """Tokens of a block's statement text (computed on demand, then kept)."""
        if block.range is not None:
            return block.range
        seg, parent = self.segmenter, block.parent
        assert parent is not None
        if block.edge == SETOP:
            _, pieces = seg.set_operation(parent.node, *self.block_range(parent))
            block.range = seg.arm(block.node, pieces)
        elif block.edge == CTE:
            with_text = self.clauses(parent).with_
            body = next((c.body for c in with_text.ctes if c.node is block.cte), None) if with_text else None
            if body is None:
                raise SpanError("CTE body not found")
            block.range = body
        elif block.edge == INSERT:
            block.range = seg.insert_query(parent.node, *self.block_range(parent))
        else:
            ext = extent(block.node, self.segmenter.constants)
            if ext is None:
                raise SpanError("sub-query without locations")
            first, last = self.tokens.index_at(ext.first), self.tokens.index_at(ext.last)
            group = self.tokens.enclosing_group(first, last)
            while group is not None and not seg.starts_statement(group[0] + 1, group[1]):
                group = self.tokens.enclosing_group(group[0], group[1])
            if group is None:
                raise SpanError("sub-query brackets not found")
            block.range = (group[0] + 1, group[1])
        return block.range

    def clauses(self, block: Block) -> Clauses:
        """Clause ranges of a block (computed on demand, then kept)."""
        if block._clauses is None:
            seg, kind = self.segmenter, block.kind
            lo, hi = self.block_range(block)
            if kind in ("select", "values"):
                block._clauses = seg.select(block.node, lo, hi)
            elif kind == "setop":
                with_text, _ = seg.set_operation(block.node, lo, hi)
                block._clauses = Clauses({}, with_text)
            elif kind == "update":
                block._clauses = seg.update(block.node, lo, hi)
            elif kind == "delete":
                block._clauses = seg.delete(block.node, lo, hi)
            else:
                with_text, _ = seg.with_clause(block.node.withClause, *seg.strip(lo, hi))
                block._clauses = Clauses({}, with_text)
        return block._clauses

    def calls_in(self, span: Span) -> list[Call]:
        """The outermost model calls whose text lies inside `span`."""
        inside = self._inside(span)
        return [c for c in inside if c.enclosing is None or not span.covers(c.enclosing.span)]

    def has_call(self, span: Span) -> bool:
        return bool(self._inside(span))

    def _inside(self, span: Span) -> list[Call]:
        first = bisect.bisect_left(self._starts, span.start)
        last = bisect.bisect_left(self._starts, span.end)
        return [c for c in self.calls[first:last] if c.span.end <= span.end]

    def params_in(self, span: Span) -> list[tuple[int, Span]]:
        """The $n parameters inside `span`."""
        first = bisect.bisect_left(self._param_starts, span.start)
        last = bisect.bisect_left(self._param_starts, span.end)
        return [p for p in self.params[first:last] if p[1].end <= span.end]
