"""Turn spans of the client's text into pieces, substituting model calls and sub-spans.

Every derived SQL text is the client's text with some sub-spans replaced: model
calls become lookups (a CallRef, expanded once the temporary tables are named),
dropped conditions become `true`, and so on.  `$n` parameters are kept as Param
pieces so that a derived query can renumber them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from .analysis import Analysis, Call
from .syntax import Span
from .text import CallRef, Copy, Insert, Param, Piece

CallHook = Callable[[Call], list[Piece] | None]
Replacement = tuple[Span, list[Piece]]


class Renderer:
    """Pieces for spans of one analysed statement."""

    def __init__(self, analysis: Analysis) -> None:
        self.analysis = analysis
        # Text added wherever the client's text at that offset is rendered (aliases).
        self.insertions: list[tuple[int, list[Piece]]] = []

    def span(self, span: Span, *, replace: Sequence[Replacement] = (), on_call: CallHook | None = None) -> list[Piece]:
        """The client's `span` as pieces.

        Sub-spans in `replace` become their pieces; each outermost model call outside
        them becomes `on_call(call)` when that returns pieces, else a CallRef.
        """
        events: list[tuple[Span, list[Piece]]] = list(replace)
        replaced = [r for r, _ in replace]

        def free(s: Span) -> bool:
            return not any(r.covers(s) for r in replaced)

        calls = [c for c in self.analysis.calls_in(span) if free(c.span)]
        for call in calls:
            pieces = on_call(call) if on_call is not None else None
            events.append((call.span, pieces if pieces is not None else [CallRef(call.ordinal)]))
        for offset, pieces in self.insertions:
            if span.start < offset <= span.end and not any(r.start < offset < r.end for r in replaced) \
                    and not any(c.span.start < offset < c.span.end for c in calls):
                events.append((Span(offset, offset), pieces))
        for number, where in self.analysis.params_in(span):
            if free(where) and not any(c.span.covers(where) for c in calls):
                events.append((where, [Param(number, where.start, where.end)]))
        events.sort(key=lambda e: (e[0].start, e[0].end))
        out: list[Piece] = []
        position = span.start
        for where, pieces in events:
            if where.start < position:
                raise AssertionError("overlapping substitutions")
            if where.start > position:
                out.append(Copy(position, where.start))
            out.extend(pieces)
            position = where.end
        if position < span.end:
            out.append(Copy(position, span.end))
        return out

    def call_verbatim(self, call: Call, on_call: CallHook | None = None) -> list[Piece]:
        """The call's own text, with the model calls inside its arguments substituted."""
        out: list[Piece] = []
        position = call.span.start
        for arg in call.args:
            out.append(Copy(position, arg.start))
            out.extend(self.span(arg, on_call=on_call))
            position = arg.end
        out.append(Copy(position, call.span.end))
        return out

    def arg(self, call: Call, index: int, on_call: CallHook | None = None) -> list[Piece]:
        return self.span(call.args[index], on_call=on_call)


def joined(parts: Iterable[list[Piece]], separator: str, anchor: int) -> list[Piece]:
    """Concatenate piece lists with an inserted separator."""
    out: list[Piece] = []
    for k, part in enumerate(parts):
        if k:
            out.append(Insert(separator, anchor))
        out.extend(part)
    return out
