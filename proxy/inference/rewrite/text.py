"""Rewritten SQL built from pieces of the client's text, with the way back.

A rewritten statement is a sequence of pieces: spans copied from the client's text,
text the rewrite inserts (each anchored at the client position it stands for),
`$n` parameters (renumbered when a derived query uses only some of them) and model
calls to be replaced by lookups once their temporary tables are known.  Assembling
the pieces records where each output character came from, so an error position
Postgres reports in the rewritten text maps back to the client's text.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Copy:
    """The client's text [start, end)."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Insert:
    """Text the rewrite adds; errors inside it point at the client's `anchor`."""

    text: str
    anchor: int


@dataclass(frozen=True, slots=True)
class Param:
    """A `$number` parameter, client text [start, end)."""

    number: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class CallRef:
    """A model call (by ordinal), expanded when the text is assembled."""

    call: int


Piece = Copy | Insert | Param | CallRef
Expander = Callable[[int], Iterable[Piece]]


@dataclass(frozen=True)
class SqlText:
    """A rewritten SQL text and the map from its positions to the client's text.

    `params[k-1]` is the client's parameter number that `$k` of this text stands
    for: bind those values, in that order, when running it.
    """

    text: str
    params: tuple[int, ...]
    # (output offset, length, client offset, copied?) sorted by output offset
    segments: tuple[tuple[int, int, int, bool], ...]
    source_length: int

    def __str__(self) -> str:
        return self.text

    def map_position(self, position: int) -> int:
        """The client's 1-based position for a 1-based position in this text.

        Copied text maps character for character; inserted text maps to the client
        position it stands for (the call it replaces, typically).
        """
        index = position - 1
        if not self.segments:
            return 1
        starts = [s[0] for s in self.segments]
        k = bisect.bisect_right(starts, index) - 1
        if k < 0:
            k = 0
        out, length, src, copied = self.segments[k]
        if copied and out <= index < out + length:
            return src + (index - out) + 1
        if not copied and out <= index < out + length:
            return src + 1
        return self.source_length + 1  # past the end of the text: the end of the client's


def assemble(source: str, pieces: Iterable[Piece], *, expand: Expander | None = None,
             renumber: bool = False) -> SqlText:
    """Concatenate `pieces` into an SqlText.

    With `renumber`, parameters become $1..$n in the order of the client's numbers
    they stand for (so a query that uses only $2 and $5 takes two values).
    """
    flat = list(_flatten(pieces, expand))
    numbers = sorted({p.number for p in flat if isinstance(p, Param)})
    if renumber:
        mapping = {n: i + 1 for i, n in enumerate(numbers)}
        params = tuple(numbers)
    else:
        mapping = {n: n for n in numbers}
        params = tuple(range(1, (numbers[-1] if numbers else 0) + 1))
    out: list[str] = []
    segments: list[tuple[int, int, int, bool]] = []
    offset = 0
    for piece in flat:
        if isinstance(piece, Copy):
            text, src, copied = source[piece.start : piece.end], piece.start, True
        elif isinstance(piece, Insert):
            text, src, copied = piece.text, piece.anchor, False
        else:  # Param
            text = f"${mapping[piece.number]}"
            copied = text == source[piece.start : piece.end]
            src = piece.start
        if not text:
            continue
        out.append(text)
        segments.append((offset, len(text), src, copied))
        offset += len(text)
    return SqlText("".join(out), params, tuple(segments), len(source))


def _flatten(pieces: Iterable[Piece], expand: Expander | None) -> Iterable[Copy | Insert | Param]:
    for piece in pieces:
        if isinstance(piece, CallRef):
            if expand is None:
                raise AssertionError("a model call reached assembly without an expander")
            yield from _flatten(expand(piece.call), expand)
        else:
            yield piece
