"""Input queries: the DISTINCT argument tuples a call can be evaluated on.

Built from the block (query level) the call is in; a superset of the rows the call
sees is fine (it only costs predictions), a subset is not:

- row form, for per-row calls: the block's FROM (UPDATE/DELETE: the target relation
  plus FROM/USING) and the WHERE conjuncts without model calls or volatile
  functions.  An ON condition holding the call becomes its other conjuncts (or
  `true`), and so do ON conditions around it; other ON conditions keep their calls
  as lookups of earlier steps.
- block form, for calls that see groups (arguments with aggregates, or GROUP BY
  with grouping sets) or window functions: FROM, the complete WHERE and GROUP BY,
  for window functions HAVING and WINDOW too, and the select list when there is a
  GROUP BY (calls in it as NULLs) so that GROUP BY 1 / GROUP BY alias keep their
  meaning.  Calls in these clauses are looked up from earlier steps.
- no FROM, for calls in VALUES rows and LIMIT/OFFSET.

A sub-query that can see an enclosing query is *correlated* when one of its
qualified column references names a range it does not define (`c.id` inside
`EXISTS (SELECT .. FROM orders o ..)`): its core is then joined LATERAL after the
FROM lists of the enclosing queries, which binds outer columns as the statement
does.  An uncorrelated sub-query keeps only WHERE conjuncts whose columns are all
qualified with its own ranges; unqualified outer references in the arguments fail
with 42703 (the step's hint says to qualify them).

Every input query starts with a check column, `CASE WHEN false THEN <the call>
END`, so that Postgres reports a wrong argument list as its own 42883 on the call
before anything runs; it needs the CTEs it reads as a WITH clause of its own; and
it must not evaluate a known volatile function (random(), nextval(), TABLESAMPLE
without REPEATABLE ...): the final statement would see other values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pglast import ast

from ...errors import FEATURE_NOT_SUPPORTED, PgError
from .analysis import CTE, Analysis, Block, Call
from .builtins import is_aggregate, is_volatile
from .clauses import Clauses, CteText, Range
from .lookups import Lookups
from .render import Renderer, joined
from .scopes import (
    Level,
    from_items,
    has_grouping_sets,
    has_outer_scope,
    has_unqualified_ref,
    is_correlated,
    is_grouped,
    local_names,
    outer_levels,
    qualifiers,
    referenced_by_group,
)
from .syntax import Span, descendants
from .text import Insert, Piece

ROW, BLOCK, NO_FROM = "row", "block", "no_from"
_POST_AGGREGATE = ("target", "having", "order", "window", "distinct_on")
_JOIN_KEYWORDS = frozenset({"JOIN", "LEFT", "RIGHT", "FULL", "INNER", "CROSS", "NATURAL", "OUTER"})


def refuse(message: str, call: Call | None = None, hint: str | None = None) -> PgError:
    return PgError(FEATURE_NOT_SUPPORTED, f"mlproxy: {message}",
                   position=call.span.start + 1 if call is not None else None, hint=hint)


@dataclass(frozen=True)
class InputPart:
    """One call's share of an input query.  Calls whose parts have equal `key`s
    (same block, same source) are read in one scan."""

    call: Call
    head: tuple[Piece, ...]  # the block's select list (block form with GROUP BY) and ", "
    check: tuple[Piece, ...]  # CASE WHEN false THEN <call> END
    args: tuple[tuple[Piece, ...], ...]  # the arguments' transport expressions
    source: tuple[Piece, ...]  # " FROM ... WHERE ... GROUP BY ..."
    correlated: bool

    @property
    def key(self) -> tuple[object, ...]:
        return id(self.call.block), _shape(self.head), _shape(self.source), self.correlated, len(self.args)


def _shape(pieces: tuple[Piece, ...]) -> tuple[object, ...]:
    """Pieces compared without the anchors of inserted text."""
    return tuple(p.text if isinstance(p, Insert) else p for p in pieces)


@dataclass(frozen=True)
class _Cte:
    text: CteText
    recursive: bool
    depth: int
    index: int


class InputBuilder:
    """Input query pieces for the calls of one statement."""

    def __init__(self, analysis: Analysis, renderer: Renderer, lookups: Lookups) -> None:
        self.analysis = analysis
        self.render = renderer
        self.lookups = lookups
        self.seg = analysis.segmenter
        self._volatile = [fc for fc, _ in analysis.other_calls if is_volatile(fc)]

    # -- one call --------------------------------------------------------------------

    def form(self, call: Call) -> str:
        block = call.block
        if call.clause in ("values", "limit"):
            return NO_FROM
        if block.kind != "select" or call.in_aggregate:
            return ROW
        inside = [fc for fc, b in self.analysis.other_calls
                  if b is block and any(fc.location in arg for arg in call.args)]
        if any(fc.over is not None for fc in inside):
            return BLOCK
        if call.clause in _POST_AGGREGATE and is_grouped(self.analysis, block):
            aggregated = any(is_aggregate(fc) for fc in inside)
            if call.clause == "target" and not aggregated and referenced_by_group(block, call.target_index):
                return ROW
            if aggregated or has_grouping_sets(block):
                return BLOCK
        return ROW

    def part(self, call: Call) -> InputPart:
        block = call.block
        form = self.form(call)
        outer = has_outer_scope(block)
        correlated = outer and is_correlated(block)
        a = call.span.start
        head: list[Piece] = []
        source: list[Piece] = []
        clauses = self.analysis.clauses(block) if form != NO_FROM else None
        if form == BLOCK and block.node.groupClause:
            head = [*self._kept_targets(call, clauses.get("targets")), Insert(", ", a)]
        if form != NO_FROM:
            from_list = self._from(block, call, clauses)
            if from_list:
                source += [Insert(" FROM ", a), *from_list]
            where = self._where(block, call, form, confined=outer and not correlated)
            if where:
                source += [Insert(" WHERE ", a), *where]
        if form == BLOCK:
            windowed = any(fc.over is not None for fc, b in self.analysis.other_calls
                           if b is block and any(fc.location in arg for arg in call.args))
            for name, keyword in (("group", " GROUP BY "), ("having", " HAVING "), ("window", " WINDOW ")):
                r = clauses.get(name)
                if r is not None and (name == "group" or windowed):
                    source += [Insert(keyword, a), *self.render.span(self.seg.span(r))]
        check = (Insert("CASE WHEN false THEN ", a), *self.render.call_verbatim(call), Insert(" END", a))
        args = tuple((Insert(prefix, a), *self.render.arg(call, i), Insert(suffix, a))
                     for i, (prefix, suffix) in enumerate(self.lookups.wraps(call)))
        return InputPart(call, tuple(head), check, args, tuple(source), correlated)

    # -- a query for calls with equal keys ---------------------------------------------

    def query(self, parts: list[InputPart]) -> list[Piece]:
        """SELECT DISTINCT a0, a1, ... over the parts' common source."""
        first = parts[0]
        call, a = first.call, first.call.span.start
        select: list[Piece] = [Insert("SELECT ", a), *first.head]
        for j, part in enumerate(parts):
            select += [Insert(", " if j else "", a), *part.check, Insert(f" AS __mlproxy_check{j}", a)]
            for i, arg in enumerate(part.args):
                select += [Insert(", ", a), *arg, Insert(f" AS __mlproxy_c{j}_a{i}", a)]
        body = [Insert("(", a), *select, *first.source, Insert(")", a)]
        if first.correlated:
            for level in reversed(outer_levels(call.block)):
                where = self._level_where(level)
                body = [Insert("(SELECT __mlproxy_i.* FROM ", a), *self._level_from(level),
                        Insert(", LATERAL ", a), *body, Insert(" AS __mlproxy_i", a),
                        *([Insert(" WHERE ", a), *where] if where else []), Insert(")", a)]
        n = len(first.args)
        names = ", ".join(f"a{i}" for i in range(n))
        if n == 0:
            query = [Insert("SELECT FROM ", a), *body, Insert(" AS __mlproxy_i LIMIT 1", a)]
        elif len(parts) == 1:
            columns = ", ".join(f"__mlproxy_i.__mlproxy_c0_a{i} AS a{i}" for i in range(n))
            query = [Insert(f"SELECT DISTINCT {columns} FROM ", a), *body, Insert(" AS __mlproxy_i", a)]
        else:  # one scan, one row per call: unpivot the calls' argument columns
            rows = ", ".join("(" + ", ".join(f"__mlproxy_i.__mlproxy_c{j}_a{i}" for i in range(n)) + ")"
                             for j in range(len(parts)))
            query = [Insert(f"SELECT DISTINCT {names} FROM ", a), *body,
                     Insert(f" AS __mlproxy_i CROSS JOIN LATERAL (VALUES {rows}) AS __mlproxy_v({names})", a)]
        _, copied = self.lookups.reads(query)
        self._check_deterministic(call, copied)
        return self._with_prefix(call, copied) + query

    # -- the select list of a grouped block ------------------------------------------

    def _kept_targets(self, call: Call, targets: Range) -> list[Piece]:
        """The block's select list with calls as typed NULLs, except in entries GROUP BY
        may refer to (those keep their lookups: they are grouping keys)."""
        block = call.block
        items = [self.seg.span(r) for r in self.seg.split(targets)]
        if len(items) != len(block.node.targetList):
            raise refuse("cannot find the select-list entries of this query", call)

        def hook(other: Call) -> list[Piece] | None:
            index = next(k for k, item in enumerate(items) if item.covers(other.span))
            if other is call or other.span.covers(call.span) or not referenced_by_group(block, index):
                return [Insert(f"NULL::{other.function.return_type}", other.span.start)]
            return None

        return self.render.span(self.seg.span(targets), on_call=hook)

    # -- FROM and WHERE --------------------------------------------------------------

    def _from(self, block: Block, call: Call | None, clauses: Clauses, items: int | None = None) -> list[Piece]:
        """The block's FROM list (with the UPDATE/DELETE target relation first)."""
        parts: list[list[Piece]] = []
        target = clauses.get("target")
        if target is not None and block.kind in ("update", "delete"):
            parts.append(self.render.span(self.seg.span(target)))
        r = clauses.get("from")
        if r is not None:
            if items is not None:
                pieces = self.seg.split(r)[:items]
                if not pieces:
                    return joined(parts, ", ", 0)
                r = (pieces[0][0], pieces[-1][1])
            parts.append(self.render.span(self.seg.span(r), replace=self._quals_replacements(block, call, r)))
        return joined(parts, ", ", call.span.start if call else 0)

    def _quals_replacements(self, block: Block, call: Call | None, r: Range) -> list[tuple[Span, list[Piece]]]:
        """ON conditions to cut down.  For a call in an ON condition (or `call` None:
        an enclosing level), conjuncts holding calls are dropped except in joins nested
        inside the call's join; conjuncts with volatile functions are always dropped."""
        inner: set[int] = set()
        in_on = call is not None and call.clause == "on" and call.block is block
        if in_on:
            inner = {id(j) for j in _joins(call.join.larg)} | {id(j) for j in _joins(call.join.rarg)}
        drop_calls = call is None or in_on
        interesting = {id(c.node) for c in self.analysis.calls} | {id(fc) for fc in self._volatile}
        span = self.seg.span(r)
        out = []
        for join in (j for item in from_items(block) for j in _joins(item)):
            if join.quals is None or not any(id(n) in interesting for n in descendants(join.quals)):
                continue
            qr = self.seg.quals(join, r[1])
            quals = self.seg.span(qr)
            if not span.covers(quals):
                continue
            terms = self.seg.conjuncts(join.quals, qr)
            kept = [t for t in terms if not self._volatile_in(self.seg.span(t[1])) and not (
                drop_calls and id(join) not in inner and self.analysis.has_call(self.seg.span(t[1])))]
            if len(kept) < len(terms):
                out.append((quals, self._conjunction(kept, quals.start)))
        return out

    def _conjunction(self, terms: list[tuple[ast.Node, Range]], anchor: int) -> list[Piece]:
        if not terms:
            return [Insert("true", anchor)]
        parts = [[Insert("(", anchor), *self.render.span(self.seg.span(r)), Insert(")", anchor)] for _, r in terms]
        return joined(parts, " AND ", anchor)

    def _where(self, block: Block, call: Call, form: str, confined: bool) -> list[Piece]:
        """WHERE for the input: all of it for the block form; else the conjuncts that
        need no model call, no volatile function and (`confined`) no outer column."""
        r = self.analysis.clauses(block).get("where")
        if r is None or block.node.whereClause is None:
            return []
        if form == BLOCK:
            return self.render.span(self.seg.span(r))
        names = local_names(block)

        def keep(node: ast.Node, span: Span) -> bool:
            if self._volatile_in(span) or self.analysis.has_call(span):
                return False
            if confined and (has_unqualified_ref(node) or qualifiers(node) - names
                             or any(isinstance(n, ast.SubLink) for n in descendants(node))):
                return False
            return True

        terms = self.seg.conjuncts(block.node.whereClause, r)
        kept = [(n, t) for n, t in terms if keep(n, self.seg.span(t))]
        if len(kept) == len(terms):
            return self.render.span(self.seg.span(r))
        return self._conjunction(kept, self.seg.span(r).start) if kept else []

    def _level_from(self, level: Level) -> list[Piece]:
        clauses = self.analysis.clauses(level.block)
        visible = self._from(level.block, None, clauses, level.items)
        if level.join is None:
            return visible
        # `a JOIN b ON .. LEFT JOIN LATERAL (...)`: the LATERAL sub-query also sees
        # the left-hand side, the item's text up to the JOIN keywords before LATERAL.
        t = self.seg.tokens
        item = self.seg.split(clauses.get("from"))[level.items]
        keyword = self.analysis.block_range(level.via)[0] - 2
        if t[keyword].word != "LATERAL":
            raise refuse("cannot find the LATERAL keyword of a correlated sub-query")
        while t[keyword - 1].word in _JOIN_KEYWORDS:
            keyword -= 1
        left = (item[0], keyword)
        pieces = self.render.span(self.seg.span(left), replace=self._quals_replacements(level.block, None, left))
        return joined([p for p in (visible, pieces) if p], ", ", 0)

    def _level_where(self, level: Level) -> list[Piece]:
        block = level.block
        r = self.analysis.clauses(block).get("where")
        if level.items is not None or r is None or block.node.whereClause is None:
            return []
        terms = [(n, t) for n, t in self.seg.conjuncts(block.node.whereClause, r)
                 if not self._volatile_in(self.seg.span(t)) and not self.analysis.has_call(self.seg.span(t))]
        return self._conjunction(terms, self.seg.span(r).start) if terms else []

    # -- determinism and CTEs --------------------------------------------------------

    def _volatile_in(self, span: Span) -> bool:
        return any(fc.location in span for fc in self._volatile)

    def _check_deterministic(self, call: Call, copied: list[Span]) -> None:
        for fc in self._volatile:
            if any(fc.location in s for s in copied):
                raise refuse(f"the general path evaluates the inputs of {call.name} twice, and "
                             f"{fc.funcname[-1].sval}() gives a different value each time", call,
                             hint="Compute the volatile value in a CTE ... MATERIALIZED or a temporary table first.")
        for sample in self.analysis.samples:
            if sample.repeatable is None and any(sample.relation.location in s for s in copied):
                raise refuse(f"the general path evaluates the inputs of {call.name} twice, and "
                             "TABLESAMPLE without REPEATABLE draws a different sample each time", call)

    def _with_prefix(self, call: Call, copied_all: list[Span]) -> list[Piece]:
        """WITH clause for the CTEs the input query reads that are not in its text."""
        needed: dict[int, tuple[_Cte, list[Piece]]] = {}
        pending = [copied_all]
        while pending:
            copied = pending.pop()
            for range_var, block in self.analysis.range_vars:
                if range_var.schemaname is not None or not any(range_var.location in s for s in copied):
                    continue
                cte = self._visible_cte(range_var.relname, block)
                if cte is None or id(cte.text.node) in needed or any(s.covers(cte.text.span) for s in copied_all):
                    continue
                pieces = self.render.span(cte.text.span)
                needed[id(cte.text.node)] = (cte, pieces)
                pending.append(self.lookups.reads(pieces)[1])
        if not needed:
            return []
        ctes = sorted((c for c, _ in needed.values()), key=lambda c: (c.depth, c.index))
        names = [c.text.node.ctename for c in ctes]
        if len(set(names)) < len(names):
            raise refuse("the input of a model call needs two WITH queries of the same name", call)
        for cte in ctes:
            if not isinstance(cte.text.node.ctequery, ast.SelectStmt):
                raise refuse(f"the input of {call.name} reads WITH query {cte.text.node.ctename}, which modifies "
                             "data and cannot run twice", call)
        recursive = any(c.recursive for c in ctes)
        if recursive and not all(c.recursive for c in ctes):
            raise refuse("the input of a model call needs WITH queries from both a WITH RECURSIVE and a plain WITH",
                         call)
        a = call.span.start
        parts = [needed[id(c.text.node)][1] for c in ctes]
        return [Insert("WITH RECURSIVE " if recursive else "WITH ", a), *joined(parts, ", ", a), Insert(" ", a)]

    def _visible_cte(self, name: str, block: Block) -> _Cte | None:
        """The WITH query `name` refers to from inside `block`, if any."""
        child, current = None, block
        while current is not None:
            with_clause = getattr(current.node, "withClause", None)
            if with_clause is not None:
                texts = self.analysis.clauses(current).with_.ctes
                candidates = texts
                if child is not None and child.edge == CTE:
                    own = next((k for k, t in enumerate(texts) if t.node is child.cte), None)
                    if own is not None and not with_clause.recursive:
                        candidates = texts[:own]
                for index, text in enumerate(candidates):
                    if text.node.ctename == name:
                        return _Cte(text, bool(with_clause.recursive), len(current.ancestors()), index)
            child, current = current, current.parent
        return None


def _joins(item: ast.Node) -> Iterable[ast.JoinExpr]:
    """JoinExprs of one FROM item (not inside sub-queries)."""
    if isinstance(item, ast.JoinExpr):
        yield item
        yield from _joins(item.larg)
        yield from _joins(item.rarg)
