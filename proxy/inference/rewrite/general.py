"""The general path: a model call anywhere becomes a lookup in a temporary table.

For each call the proxy first runs an *input query* (inputs.py) returning the
DISTINCT argument tuples the call can be evaluated on, predicts them, loads
(arguments, prediction) into `pg_temp.<table>`, and then runs the client's
statement with every call replaced by a lookup (lookups.py).

Steps: a call whose input reads another call's result (a nested call, an ON
condition or GROUP BY key kept in its input, a CTE) waits for that call's step;
calls of one model at one dependency level share a step (one table), and those
with the same source are read in one scan.  Lookups that find no row give NULL;
every row that reaches the result finds its row, provided evaluating the arguments
twice gives the same values (what inputs.py refuses is what is known not to).
"""

from __future__ import annotations

from pglast import ast

from ...ml_statements.literals import quote_identifier
from .analysis import Analysis, Call
from .functions import arg_type
from .inputs import InputBuilder, InputPart, refuse
from .lookups import Lookups
from .plan import ArgColumn, InferenceStep
from .render import Renderer, joined
from .syntax import Span
from .text import Insert, Piece, SqlText, assemble

HINT = ("mlproxy evaluates a model call in a sub-query over that sub-query's own FROM clause; "
        "in a correlated sub-query, qualify outer columns with their table (t.column).")


class GeneralPlanner:
    """Steps in dependency order, then the final statement."""

    def __init__(self, analysis: Analysis, renderer: Renderer, prefix: str, *,
                 transaction_tables: bool = False) -> None:
        self.analysis = analysis
        self.render = renderer
        self.prefix = prefix
        self.on_commit = " ON COMMIT DROP" if transaction_tables else ""
        self.lookups = Lookups(analysis, renderer)
        self.inputs = InputBuilder(analysis, renderer, self.lookups)
        renderer.insertions = [self._alias(c) for c in analysis.calls
                               if c.ordinal in self.lookups.by_function and self._names_target(c)]

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
        items = self.analysis.segmenter.split(self.analysis.clauses(call.block).get("targets"))
        if len(items) != len(call.block.node.targetList):
            raise refuse("cannot find the select-list entries of this query", call)
        end = self.analysis.segmenter.span(items[call.target_index]).end
        return end, [Insert(f" AS {quote_identifier(call.name)}", call.span.start)]

    def steps(self) -> tuple[InferenceStep, ...]:
        calls = self.analysis.calls
        parts = {c.ordinal: self.inputs.part(c) for c in calls}
        deps = {o: self.lookups.reads(self.inputs.query([p]))[0] for o, p in parts.items()}
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
                self.lookups.tables[call.ordinal] = table
                step_of[call.ordinal] = k
            depends = sorted({step_of[d] for c in members for d in deps[c.ordinal]})
            steps.append(self._step(members, table, [parts[c.ordinal] for c in members], depends))
        return tuple(steps)

    def final(self, span: Span) -> SqlText:
        """The client's `span` with every call replaced by its lookup (after steps())."""
        return assemble(self.analysis.sql, self.render.span(span), expand=self.lookups.expand)

    def _level(self, ordinal: int, deps: dict[int, set[int]], levels: dict[int, int],
               path: tuple[int, ...]) -> int:
        if ordinal in levels:
            return levels[ordinal]
        if ordinal in path or ordinal in deps[ordinal]:
            call = self.analysis.calls[ordinal]
            raise refuse(f"cannot order the model calls of this statement: the input of {call.name} "
                         "depends on its own result", call)
        level = 1 + max((self._level(d, deps, levels, path + (ordinal,)) for d in deps[ordinal]), default=-1)
        levels[ordinal] = level
        return level

    def _step(self, members: list[Call], table: str, parts: list[InputPart], depends: list[int]) -> InferenceStep:
        function = members[0].function
        anchor = members[0].span.start
        scans: dict[tuple[object, ...], list[InputPart]] = {}
        for part in parts:
            scans.setdefault(part.key, []).append(part)
        queries = [self.inputs.query(group) for group in scans.values()]
        if len(queries) == 1:
            pieces = queries[0]
        else:
            pieces = [Insert("(", anchor), *joined(queries, ") UNION (", anchor), Insert(")", anchor)]
        probe = [Insert("SELECT * FROM (", anchor), *pieces, Insert(") AS __mlproxy_probe LIMIT 0", anchor)]
        types = [arg_type(t) for t in function.arg_types]
        columns = [f"a{i} {t.sql_type}" for i, t in enumerate(types)] + [f"p {function.return_type}"]
        key = f"ARRAY[{', '.join(f'a{i}::text' for i in range(len(types)))}]" if types else "ARRAY[]::text[]"
        # every role of the session may use it (a SET ROLE after a prepared statement's
        # Parse made it: the role a Bind runs as is not always its maker's); no other
        # session can read a temporary table, whatever its privileges
        create = (f"CREATE TEMPORARY TABLE {table} ({', '.join(columns)}){self.on_commit}",
                  f"GRANT ALL ON TABLE {table} TO PUBLIC")
        drop = (f"DROP TABLE IF EXISTS {table}",)
        if any(c.ordinal in self.lookups.by_function for c in members):
            create += (f"CREATE OR REPLACE FUNCTION {table}_lookup(text[]) RETURNS {function.return_type} LANGUAGE sql STABLE "
                       f"PARALLEL RESTRICTED AS $mlproxy$SELECT p FROM {table} WHERE {key} = $1 LIMIT 1$mlproxy$",)
            drop += (f"DROP FUNCTION IF EXISTS {table}_lookup(text[])",)
        # a hash index: it stores the key's hash, so an argument of any size (a 5 MB
        # text) is looked up (a btree refuses index rows over ~2.7 kB, 54000), and it
        # builds and probes faster than a btree on a text[] key
        index = (f"CREATE INDEX ON {table} USING hash (({key}))",) if types else ()
        expand = self.lookups.expand
        return InferenceStep(
            function=function,
            table=table,
            input=assemble(self.analysis.sql, pieces, expand=expand, renumber=True),
            probe=assemble(self.analysis.sql, probe, expand=expand, renumber=True),
            args=tuple(ArgColumn(i, t.kind, t.declared) for i, t in enumerate(types)),
            create=create,
            copy=f"COPY {table} ({', '.join([f'a{i}' for i in range(len(types))] + ['p'])}) FROM STDIN",
            finish=index + (f"ANALYZE {table}",),
            drop=drop,
            depends_on=tuple(depends),
            calls=tuple(c.ordinal for c in members),
            hint=HINT,
            index=index,
        )
