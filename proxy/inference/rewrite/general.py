"""The general path: a model call anywhere becomes a lookup in a temporary table.

For each call the proxy first runs an *input query* returning the DISTINCT argument
tuples the call can be evaluated on (a superset is fine: it only costs predictions),
predicts them, loads (arguments, prediction) into `pg_temp.<table>`, and then runs
the client's statement with every call replaced by

    (SELECT m.p AS <name> FROM pg_temp.<table> AS m
      WHERE ARRAY[m.a0::text, ...] = ARRAY[(<arg0 transport>)::text, ...] LIMIT 1)

(an index on the ARRAY expression serves it; arrays compare NULL elements as equal,
so NULL arguments find their row).  The subquery's column is named after the
function, so the statement's column names are what the client would have seen.

An input query is built from the block (query level) the call is in:

- row form, for per-row calls: the block's FROM (target relation + FROM/USING for
  UPDATE/DELETE) and the WHERE conditions that do not need the call; an ON
  condition holding the call becomes its other conjuncts, or `true`;
- block form, for calls that see groups (their arguments aggregate, or GROUP BY has
  grouping sets) or window functions: FROM, the complete WHERE and GROUP BY, and
  for window functions HAVING and WINDOW too, with the select list kept (calls in
  it as NULL) so that GROUP BY 1 / GROUP BY alias mean what they meant;
- no FROM, for calls in VALUES rows and LIMIT/OFFSET.

A sub-query whose qualified column references name ranges of enclosing queries is
*correlated*: its core is joined LATERAL after the enclosing FROM lists, so the
outer columns are bound as they are in the statement.  Calls nested in a call, in a
kept condition or in a CTE the input needs are looked up in tables of earlier
steps; the steps are ordered by these dependencies.  Conditions holding other calls
are dropped from input queries where keeping them would make two calls wait for
each other.

Lookups that find no row give NULL.  Every row that reaches the result finds its
row, provided evaluating the arguments twice gives the same values: known volatile
functions (random(), nextval(), clock_timestamp(), TABLESAMPLE without REPEATABLE)
in what an input query evaluates are refused; user-defined volatile functions are
not known here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pglast import ast

from ...errors import FEATURE_NOT_SUPPORTED, PgError
from ...ml_statements.literals import quote_identifier
from .analysis import CTE, Analysis, Block, Call
from .builtins import is_aggregate, is_volatile
from .clauses import CteText, Range
from .functions import arg_type
from .plan import ArgColumn, InferenceStep
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
from .text import CallRef, Copy, Insert, Param, Piece, SqlText, assemble

ROW, BLOCK, NO_FROM = "row", "block", "no_from"
_POST_AGGREGATE = ("target", "having", "order", "window", "distinct_on")
_JOIN_KEYWORDS = frozenset({"JOIN", "LEFT", "RIGHT", "FULL", "INNER", "CROSS", "NATURAL", "OUTER"})
HINT = ("mlproxy evaluates a model call in a sub-query over that sub-query's own FROM clause; "
        "in a correlated sub-query, qualify outer columns with their table (t.column).")


def refuse(message: str, call: Call | None = None, hint: str | None = None) -> PgError:
    return PgError(FEATURE_NOT_SUPPORTED, f"mlproxy: {message}",
                   position=call.span.start + 1 if call is not None else None, hint=hint)


@dataclass(frozen=True)
class _Cte:
    text: CteText
    block: Block
    recursive: bool
    depth: int
    index: int


class GeneralPlanner:
    """Input queries, dependency order, steps and the final statement."""

    def __init__(self, analysis: Analysis, renderer: Renderer, prefix: str) -> None:
        self.analysis = analysis
        self.render = renderer
        self.seg = analysis.segmenter
        self.prefix = prefix
        self._tables: dict[int, str] = {}
        self._volatile = [fc for fc, _ in analysis.other_calls if is_volatile(fc)]
        self._by_function = {c.ordinal for c in analysis.calls if self._needs_function(c)}
        renderer.insertions = [self._alias(c) for c in analysis.calls if c.ordinal in self._by_function
                               and self._names_target(c)]

    def _needs_function(self, call: Call) -> bool:
        """Aggregates or window functions in the arguments must be evaluated in the
        call's own query level, so the key cannot sit inside a lookup sub-query
        (count(*) there would count the sub-query's rows): such calls look up
        through a temporary SQL function taking the key as its argument."""
        return any((fc.over is not None or is_aggregate(fc)) and any(fc.location in a for a in call.args)
                   for fc, block in self.analysis.other_calls if block is call.block)

    def _names_target(self, call: Call) -> bool:
        """Does the call give an unaliased select-list entry its column name?"""
        if call.clause != "target" or call.block.kind != "select":
            return False
        target = call.block.node.targetList[call.target_index]
        node = target.val
        while not target.name and isinstance(node, ast.TypeCast | ast.CollateClause) and \
                isinstance(node.arg, ast.FuncCall | ast.TypeCast | ast.CollateClause):
            node = node.arg
        return not target.name and node is call.node

    def _alias(self, call: Call) -> tuple[int, list[Piece]]:
        """` AS name` after the select-list entry the call names (a function lookup
        would otherwise name the column after the lookup function)."""
        items = self.seg.split(self.analysis.clauses(call.block).get("targets"))
        if len(items) != len(call.block.node.targetList):
            raise refuse("cannot find the select-list entries of this query", call)
        end = self.seg.span(items[call.target_index]).end
        return end, [Insert(f" AS {quote_identifier(call.name)}", call.span.start)]

    # -- the plan --------------------------------------------------------------------

    def steps(self) -> tuple[InferenceStep, ...]:
        """The steps, in an order that runs every call's dependencies first."""
        calls = self.analysis.calls
        inputs = {c.ordinal: self.input_query(c) for c in calls}
        deps = {o: self._refs(p) for o, p in inputs.items()}
        levels: dict[int, int] = {}
        for call in calls:
            self._level(call.ordinal, deps, levels, ())
        groups: dict[tuple[object, int], list[Call]] = {}
        for call in sorted(calls, key=lambda c: (levels[c.ordinal], c.ordinal)):
            groups.setdefault((call.function, levels[call.ordinal]), []).append(call)
        steps: list[InferenceStep] = []
        step_of: dict[int, int] = {}
        for k, members in enumerate(groups.values()):
            table = f"pg_temp.{self.prefix}{k + 1}"
            for call in members:
                self._tables[call.ordinal] = table
                step_of[call.ordinal] = k
            steps.append(self._step(members, table, inputs, deps, step_of))
        return tuple(steps)

    def final(self, span: Span) -> SqlText:
        """The client's `span` with every call replaced by its lookup (after steps())."""
        return assemble(self.analysis.sql, self.render.span(span), expand=self.lookup)

    def _level(self, ordinal: int, deps: dict[int, set[int]], levels: dict[int, int],
               path: tuple[int, ...]) -> int:
        if ordinal in levels:
            return levels[ordinal]
        if ordinal in path:
            call = self.analysis.calls[ordinal]
            raise refuse(f"cannot order the model calls of this statement: the input of {call.name} "
                         "depends on its own result", call)
        level = 1 + max((self._level(d, deps, levels, path + (ordinal,)) for d in deps[ordinal]), default=-1)
        levels[ordinal] = level
        return level

    def _step(self, members: list[Call], table: str, inputs: dict[int, list[Piece]],
              deps: dict[int, set[int]], step_of: dict[int, int]) -> InferenceStep:
        first = members[0]
        function = first.function
        anchor = first.span.start
        if len(members) == 1:
            pieces = inputs[first.ordinal]
        else:
            pieces = [Insert("(", anchor), *joined((inputs[c.ordinal] for c in members), ") UNION (", anchor),
                      Insert(")", anchor)]
        probe = [Insert("SELECT * FROM (", anchor), *pieces, Insert(") AS __mlproxy_probe LIMIT 0", anchor)]
        types = [arg_type(t) for t in function.arg_types]
        columns = [f"a{i} {t.sql_type}" for i, t in enumerate(types)] + [f"p {function.return_type}"]
        key = f"ARRAY[{', '.join(f'a{i}::text' for i in range(len(types)))}]" if types else "ARRAY[]::text[]"
        finish = (f"CREATE INDEX ON {table} (({key}))",) if types else ()
        create = (f"CREATE TEMPORARY TABLE {table} ({', '.join(columns)})",)
        drop = (f"DROP TABLE IF EXISTS {table}",)
        if any(c.ordinal in self._by_function for c in members):
            create += (f"CREATE FUNCTION {table}_lookup(text[]) RETURNS {function.return_type} LANGUAGE sql STABLE "
                       f"PARALLEL RESTRICTED AS $mlproxy$SELECT p FROM {table} WHERE {key} = $1 LIMIT 1$mlproxy$",)
            drop += (f"DROP FUNCTION IF EXISTS {table}_lookup(text[])",)
        depends = sorted({step_of[d] for c in members for d in deps[c.ordinal]})
        return InferenceStep(
            function=function,
            table=table,
            input=assemble(self.analysis.sql, pieces, expand=self.lookup, renumber=True),
            probe=assemble(self.analysis.sql, probe, expand=self.lookup, renumber=True),
            args=tuple(ArgColumn(i, t.kind, t.declared) for i, t in enumerate(types)),
            create=create,
            copy=f"COPY {table} ({', '.join([f'a{i}' for i in range(len(types))] + ['p'])}) FROM STDIN",
            finish=finish + (f"ANALYZE {table}",),
            drop=drop,
            depends_on=tuple(depends),
            calls=tuple(c.ordinal for c in members),
            hint=HINT,
        )

    def lookup(self, ordinal: int) -> list[Piece]:
        """The lookup that replaces call `ordinal` (its table must be known)."""
        call = self.analysis.calls[ordinal]
        table = self._tables.get(ordinal, "pg_temp.__mlproxy_pending")
        anchor = call.span.start
        n = len(call.function.arg_types)
        if n:
            left = "ARRAY[" + ", ".join(f"__mlproxy_m.a{i}::text" for i in range(n)) + "]"
            keys = [[Insert(f"({prefix}", anchor), *self.render.arg(call, i), Insert(f"{suffix})::text", anchor)]
                    for i, (prefix, suffix) in enumerate(self._wraps(call))]
            right = [Insert("ARRAY[", anchor), *joined(keys, ", ", anchor), Insert("]", anchor)]
        else:
            left, right = "ARRAY[]::text[]", [Insert("ARRAY[]::text[]", anchor)]
        if ordinal in self._by_function:
            return [Insert(f"{table}_lookup(", anchor), *right, Insert(")", anchor)]
        head = (f"(SELECT __mlproxy_m.p AS {quote_identifier(call.name)} FROM {table} AS __mlproxy_m "
                f"WHERE {left} = ")
        return [Insert(head, anchor), *right, Insert(" LIMIT 1)", anchor)]

    def _wraps(self, call: Call) -> list[tuple[str, str]]:
        """Transport wrappers per written argument (extra ones as text: 42883 comes first)."""
        declared = list(call.function.arg_types[: len(call.args)])
        declared += ["text"] * (len(call.args) - len(declared))
        return [arg_type(t).wrap() for t in declared]

    # -- flattening ------------------------------------------------------------------

    def _flat(self, pieces: Iterable[Piece]) -> Iterable[Piece]:
        for piece in pieces:
            yield piece
            if isinstance(piece, CallRef):
                yield from self._flat(self.lookup(piece.call))

    def _refs(self, pieces: list[Piece]) -> set[int]:
        return {p.call for p in self._flat(pieces) if isinstance(p, CallRef)}

    def _copied(self, pieces: list[Piece]) -> list[Span]:
        return [Span(p.start, p.end) for p in self._flat(pieces) if isinstance(p, Copy | Param)]

    # -- input queries ---------------------------------------------------------------

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

    def input_query(self, call: Call) -> list[Piece]:
        block = call.block
        form = self.form(call)
        outer = has_outer_scope(block)
        correlated = outer and is_correlated(block)
        a = call.span.start
        body = [Insert("(", a), *self._core(call, form, confined=outer and not correlated), Insert(")", a)]
        if correlated:
            for level in reversed(outer_levels(block)):
                where = self._level_where(level)
                body = [Insert("(SELECT __mlproxy_i.* FROM ", a), *self._level_from(level),
                        Insert(", LATERAL ", a), *body, Insert(" AS __mlproxy_i", a),
                        *([Insert(" WHERE ", a), *where] if where else []), Insert(")", a)]
        columns = ", ".join(f"__mlproxy_i.__mlproxy_a{i} AS a{i}" for i in range(len(call.args)))
        query = [Insert(f"SELECT DISTINCT {columns} FROM ", a), *body, Insert(" AS __mlproxy_i", a)]
        self._check_deterministic(call, query)
        return self._with_prefix(call, query) + query

    def _core(self, call: Call, form: str, confined: bool) -> list[Piece]:
        block = call.block
        a = call.span.start
        out: list[Piece] = [Insert("SELECT ", a)]
        clauses = self.analysis.clauses(block) if form != NO_FROM else None
        if form == BLOCK and block.node.groupClause:
            out += [*self._kept_targets(call, clauses.get("targets")), Insert(", ", a)]
        out += [Insert("CASE WHEN false THEN ", a), *self.render.call_verbatim(call),
                Insert(" END AS __mlproxy_check", a)]
        for i, (prefix, suffix) in enumerate(self._wraps(call)):
            out += [Insert(f", {prefix}", a), *self.render.arg(call, i), Insert(f"{suffix} AS __mlproxy_a{i}", a)]
        if form == NO_FROM:
            return out
        source = self._from(block, call, clauses)
        if source:
            out += [Insert(" FROM ", a), *source]
        where = self._where(block, call, form, confined)
        if where:
            out += [Insert(" WHERE ", a), *where]
        if form == BLOCK:
            windowed = call.clause not in ("having",) and self.form_is_windowed(call)
            names = ("group", "having", "window") if windowed else ("group",)
            for name in names:
                r = clauses.get(name)
                if r is not None:
                    keyword = {"group": " GROUP BY ", "having": " HAVING ", "window": " WINDOW "}[name]
                    out += [Insert(keyword, a), *self.render.span(self.seg.span(r))]
        return out

    def form_is_windowed(self, call: Call) -> bool:
        return any(fc.over is not None for fc, b in self.analysis.other_calls
                   if b is call.block and any(fc.location in arg for arg in call.args))

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

    def _from(self, block: Block, call: Call | None, clauses, items: int | None = None) -> list[Piece]:
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
            span = self.seg.span(r)
            parts.append(self.render.span(span, replace=self._quals_replacements(block, call, r)))
        return joined(parts, ", ", call.span.start if call else 0)

    def _quals_replacements(self, block: Block, call: Call | None, r: Range) -> list[tuple[Span, list[Piece]]]:
        """ON conditions to cut down: for a call in an ON condition (or `call` None, an
        enclosing level) drop conjuncts that hold calls, except in joins nested inside
        the call's join; always drop conjuncts with volatile functions."""
        inner: set[int] = set()
        if call is not None and call.clause == "on" and call.block is block:
            inner = {id(j) for j in _joins(call.join.larg)} | {id(j) for j in _joins(call.join.rarg)}
        drop_calls = call is None or (call.clause == "on" and call.block is block)
        out = []
        span = self.seg.span(r)
        interesting = {id(c.node) for c in self.analysis.calls} | {id(fc) for fc in self._volatile}
        for join in (j for item in from_items(block) for j in _joins(item)):
            if join.quals is None or not any(id(n) in interesting for n in descendants(join.quals)):
                continue
            qr = self.seg.quals(join, r[1])
            if not span.covers(self.seg.span(qr)):
                continue
            terms = self.seg.conjuncts(join.quals, qr)
            kept = [t for t in terms if not self._volatile_in(self.seg.span(t[1])) and not (
                drop_calls and id(join) not in inner and self.analysis.has_call(self.seg.span(t[1])))]
            if len(kept) < len(terms):
                out.append((self.seg.span(qr), self._conjunction(kept, self.seg.span(qr).start)))
        return out

    def _conjunction(self, terms: list[tuple[ast.Node, Range]], anchor: int) -> list[Piece]:
        if not terms:
            return [Insert("true", anchor)]
        parts = [[Insert("(", anchor), *self.render.span(self.seg.span(r)), Insert(")", anchor)] for _, r in terms]
        return joined(parts, " AND ", anchor)

    def _where(self, block: Block, call: Call, form: str, confined: bool) -> list[Piece]:
        r = self.analysis.clauses(block).get("where")
        if r is None or block.node.whereClause is None:
            return []
        terms = self.seg.conjuncts(block.node.whereClause, r)
        if form == BLOCK:
            return self.render.span(self.seg.span(r))
        drop_calls = call.block is block and call.clause in ("where", "on")
        names = local_names(block)

        def keep(node: ast.Node, span: Span) -> bool:
            if self._volatile_in(span) or (drop_calls and self.analysis.has_call(span)):
                return False
            if confined:  # outer ranges are not joined: keep only what is surely local
                if has_unqualified_ref(node) or qualifiers(node) - names:
                    return False
                if any(isinstance(n, ast.SubLink) for n in descendants(node)):
                    return False
            return True

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

    def _check_deterministic(self, call: Call, query: list[Piece]) -> None:
        copied = self._copied(query)
        for fc in self._volatile:
            if any(fc.location in s for s in copied):
                raise refuse(f"the general path evaluates the inputs of {call.name} twice, and "
                             f"{fc.funcname[-1].sval}() gives a different value each time", call,
                             hint="Compute the volatile value in a CTE ... MATERIALIZED or a temporary table first.")
        for sample in self.analysis.samples:
            if sample.repeatable is None and any(sample.relation.location in s for s in copied):
                raise refuse(f"the general path evaluates the inputs of {call.name} twice, and "
                             "TABLESAMPLE without REPEATABLE draws a different sample each time", call)

    def _with_prefix(self, call: Call, query: list[Piece]) -> list[Piece]:
        """WITH clause for the CTEs the input query refers to that it does not contain."""
        needed: dict[int, tuple[_Cte, list[Piece]]] = {}
        copied_all = self._copied(query)
        pending = [query]
        while pending:
            copied = self._copied(pending.pop())
            for range_var, block in self.analysis.range_vars:
                if range_var.schemaname is not None or not any(range_var.location in s for s in copied):
                    continue
                cte = self._visible_cte(range_var.relname, block)
                if cte is None or id(cte.text.node) in needed:
                    continue
                if any(s.covers(cte.text.span) for s in copied_all):
                    continue  # its WITH clause is part of the copied text
                pieces = self.render.span(cte.text.span)
                needed[id(cte.text.node)] = (cte, pieces)
                pending.append(pieces)
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
                        return _Cte(text, current, bool(with_clause.recursive), len(current.ancestors()), index)
            child, current = current, current.parent
        return None


def _joins(item: ast.Node) -> Iterable[ast.JoinExpr]:
    """JoinExprs of one FROM item (not inside sub-queries)."""
    if isinstance(item, ast.JoinExpr):
        yield item
        yield from _joins(item.larg)
        yield from _joins(item.rarg)
