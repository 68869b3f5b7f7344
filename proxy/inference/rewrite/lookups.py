"""What a model call becomes on the general path: a lookup of its prediction.

    (SELECT m.p AS <name> FROM pg_temp.<table> AS m
      WHERE ARRAY[m.a0::text, ...] = ARRAY[(<arg0 transport>)::text, ...] LIMIT 1)

A hash index on the ARRAY expression serves it (it holds the key's hash, so an
argument of any size has its row; a btree refuses keys over ~2.7 kB), and arrays
compare NULL elements as equal, so NULL arguments find their row.  The sub-query's column is named after
the function, so a statement's column names stay what the client would have seen.
LIMIT 1 guards against two float8 values that print alike (extra_float_digits < 1).

Aggregates and window functions in the arguments must be evaluated at the call's
own query level: inside the lookup sub-query count(*) would count the sub-query's
rows, and a window function is not allowed there.  Such calls look up through a
temporary SQL function that takes the key as its argument instead; the select-list
entry they name gets an explicit alias (see GeneralPlanner).
"""

from __future__ import annotations

from collections.abc import Iterable

from ...ml_statements.literals import quote_identifier
from .analysis import Analysis, Call
from .builtins import is_aggregate
from .functions import arg_type
from .render import Renderer, joined
from .syntax import Span
from .text import CallRef, Copy, Insert, Param, Piece

PENDING = "pg_temp.__mlproxy_pending"


class Lookups:
    """Lookup expansions of the calls of one statement, and what they read."""

    def __init__(self, analysis: Analysis, renderer: Renderer) -> None:
        self.analysis = analysis
        self.render = renderer
        self.tables: dict[int, str] = {}  # call ordinal -> its step's table, once known
        self.by_function = {c.ordinal for c in analysis.calls if self._needs_function(c)}
        self._read: dict[int, tuple[frozenset[int], tuple[Span, ...]]] = {}

    def _needs_function(self, call: Call) -> bool:
        return any((fc.over is not None or is_aggregate(fc)) and any(fc.location in a for a in call.args)
                   for fc, block in self.analysis.other_calls if block is call.block)

    def wraps(self, call: Call) -> list[tuple[str, str]]:
        """Transport wrappers per written argument (extra ones as text: 42883 comes first)."""
        declared = list(call.function.arg_types[: len(call.args)])
        declared += ["text"] * (len(call.args) - len(declared))
        return [arg_type(t).wrap() for t in declared]

    def expand(self, ordinal: int) -> list[Piece]:
        """The lookup replacing call `ordinal`."""
        call = self.analysis.calls[ordinal]
        table = self.tables.get(ordinal, PENDING)
        anchor = call.span.start
        n = len(call.function.arg_types)
        if n:
            left = "ARRAY[" + ", ".join(f"__mlproxy_m.a{i}::text" for i in range(n)) + "]"
            keys = [[Insert(f"({prefix}", anchor), *self.render.arg(call, i), Insert(f"{suffix})::text", anchor)]
                    for i, (prefix, suffix) in enumerate(self.wraps(call))]
            right = [Insert("ARRAY[", anchor), *joined(keys, ", ", anchor), Insert("]", anchor)]
        else:
            left, right = "ARRAY[]::text[]", [Insert("ARRAY[]::text[]", anchor)]
        if ordinal in self.by_function:
            return [Insert(f"{table}_lookup(", anchor), *right, Insert(")", anchor)]
        head = (f"(SELECT __mlproxy_m.p AS {quote_identifier(call.name)} FROM {table} AS __mlproxy_m "
                f"WHERE {left} = ")
        return [Insert(head, anchor), *right, Insert(" LIMIT 1)", anchor)]

    def reads(self, pieces: Iterable[Piece]) -> tuple[set[int], list[Span]]:
        """Calls looked up in `pieces` (also inside lookups) and the client text they copy."""
        calls: set[int] = set()
        copied: list[Span] = []
        for piece in pieces:
            if isinstance(piece, CallRef):
                inner_calls, inner_copied = self._reads_of(piece.call)
                calls.add(piece.call)
                calls |= inner_calls
                copied += inner_copied
            elif isinstance(piece, Copy | Param):
                copied.append(Span(piece.start, piece.end))
        return calls, copied

    def _reads_of(self, ordinal: int) -> tuple[frozenset[int], tuple[Span, ...]]:
        if ordinal not in self._read:
            calls, copied = self.reads(self.expand(ordinal))
            self._read[ordinal] = frozenset(calls), tuple(copied)
        return self._read[ordinal]
