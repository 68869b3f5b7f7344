"""Where each clause of a statement is in the client's text.

The parse tree says what a statement contains, not where its clauses begin and end
(a FROM list has no location, a WHERE clause ends wherever the next clause starts).
This module cuts a statement's tokens into clauses at the clause keywords that stand
at the statement's own bracket depth, with the few places where such a keyword is
not a clause (`IS DISTINCT FROM`, `ROWS FROM`, `WITHIN GROUP`, a label after AS).
Every result is a token range; callers check it against the tree's locations and
refuse (SpanError) rather than guess when the two disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pglast import ast
from pglast.enums import BoolExprType

from .syntax import SpanError, Span, TokenList, extent

Range = tuple[int, int]  # token indexes [lo, hi)

STATEMENT_START = frozenset({"SELECT", "VALUES", "WITH", "TABLE", "INSERT", "UPDATE", "DELETE", "MERGE"})
SELECT_CLAUSES = frozenset({"INTO", "FROM", "WHERE", "GROUP", "HAVING", "WINDOW", "ORDER",
                            "LIMIT", "OFFSET", "FETCH", "FOR"})
TRAILING_CLAUSES = frozenset({"ORDER", "LIMIT", "OFFSET", "FETCH", "FOR"})
SET_OPERATORS = frozenset({"UNION", "INTERSECT", "EXCEPT"})
_JOIN_WORDS = frozenset({"JOIN", "INNER", "LEFT", "RIGHT", "FULL", "CROSS", "NATURAL"})
_QUALS_END = frozenset({"ON", "USING", "WHERE", "GROUP", "HAVING", "WINDOW", "ORDER", "LIMIT",
                        "OFFSET", "FETCH", "FOR", "UNION", "INTERSECT", "EXCEPT", "RETURNING"})
_LOCKING = frozenset({"UPDATE", "SHARE", "NO", "KEY"})


@dataclass
class CteText:
    """One `name [(cols)] AS [[NOT] MATERIALIZED] (body) [SEARCH|CYCLE ...]` item."""

    node: ast.CommonTableExpr
    span: Span
    body: Range


@dataclass
class WithText:
    node: ast.WithClause
    ctes: list[CteText]


@dataclass
class Clauses:
    """Content ranges (without the keywords) of one statement's clauses.

    Keys: "targets", "into", "from", "where", "group", "having", "window", "order",
    "limit", "offset", "fetch", "for" for SELECT; "target", "set", "from", "where",
    "returning" for UPDATE; "target", "from" (USING), "where", "returning" for DELETE.
    """

    ranges: dict[str, Range] = field(default_factory=dict)
    with_: WithText | None = None

    def get(self, name: str) -> Range | None:
        return self.ranges.get(name)


class Segmenter:
    """Clause analysis over one statement's tokens."""

    def __init__(self, tokens: TokenList, constants: dict[int, int] | None = None) -> None:
        self.tokens = tokens
        self.constants = constants or {}

    # -- small helpers ---------------------------------------------------------------

    def span(self, r: Range) -> Span:
        lo, hi = r
        if lo >= hi:
            raise SpanError("empty range")
        return Span(self.tokens[lo].start, self.tokens[hi - 1].end)

    def strip(self, lo: int, hi: int) -> Range:
        """Drop brackets that enclose the whole range."""
        t = self.tokens
        while lo < hi and t[lo].text == "(" and t.partner.get(lo) == hi - 1:
            lo, hi = lo + 1, hi - 1
        return lo, hi

    def starts_statement(self, lo: int, hi: int) -> bool:
        t = self.tokens
        while lo < hi and t[lo].text == "(":
            lo += 1
        return lo < hi and t[lo].word in STATEMENT_START

    def base(self, lo: int, hi: int) -> list[int]:
        """Indexes of the tokens of [lo, hi) at the range's own bracket depth."""
        if lo >= hi:
            return []
        t = self.tokens
        level = t.level(lo)
        return [i for i in range(lo, hi) if t.level(i) == level]

    def split(self, r: Range, separator: str = ",") -> list[Range]:
        lo, hi = r
        pieces, start = [], lo
        for i in self.base(lo, hi):
            if self.tokens[i].text == separator:
                pieces.append((start, i))
                start = i + 1
        pieces.append((start, hi))
        return pieces

    def skip_group(self, i: int) -> int:
        """Index just past the bracket group opening at i."""
        close = self.tokens.partner.get(i)
        if close is None:
            raise SpanError("unbalanced brackets")
        return close + 1

    def expect(self, i: int, *words: str) -> int:
        if i >= len(self.tokens) or not (self.tokens[i].word in words or self.tokens[i].text in words):
            raise SpanError(f"expected {'/'.join(words)}")
        return i + 1

    # -- statement pieces ------------------------------------------------------------

    def with_clause(self, node: ast.WithClause | None, lo: int, hi: int) -> tuple[WithText | None, int]:
        """Parse a leading WITH clause; returns it and the index of the statement after it."""
        t = self.tokens
        if node is None or lo >= hi or t[lo].word != "WITH":
            return None, lo
        i = lo + 1
        if i < hi and t[i].word == "RECURSIVE":
            i += 1
        ctes: list[CteText] = []
        for cte in node.ctes:
            if t[i].start != cte.location:
                raise SpanError("CTE name not where the tree says")
            start = i
            i += 1
            if t[i].text == "(":
                i = self.skip_group(i)
            i = self.expect(i, "AS")
            if t[i].word == "NOT":
                i += 1
            if t[i].word == "MATERIALIZED":
                i += 1
            if t[i].text != "(":
                raise SpanError("CTE body not parenthesized")
            body = (i + 1, t.partner[i])
            i = self.skip_group(i)
            if i < hi and t[i].word in ("SEARCH", "CYCLE"):
                while i < hi and t[i].text != "," and t[i].word not in STATEMENT_START and t[i].text != "(":
                    i += 1
            ctes.append(CteText(cte, self.span((start, i)), body))
            if i < hi and t[i].text == ",":
                i += 1
        return WithText(node, ctes), i

    def clause_ranges(self, lo: int, hi: int, words: frozenset[str], first: str) -> dict[str, Range]:
        """Cut [lo, hi) at clause keywords; text before the first keyword is `first`."""
        t = self.tokens
        cuts: list[tuple[str, int, int]] = []  # (name, keyword index, content start)
        seen: set[str] = set()
        for i in self.base(lo, hi):
            word = t[i].word
            if word not in words or word in seen:
                continue
            previous = t[i - 1].word if i > 0 else None
            if previous == "AS" or (word == "FROM" and previous in ("DISTINCT", "ROWS")):
                continue
            if word == "GROUP" and previous == "WITHIN":
                continue
            if word == "FOR" and (i + 1 >= hi or t[i + 1].word not in _LOCKING):
                continue
            content = i + 1
            if word in ("GROUP", "ORDER") and content < hi and t[content].word == "BY":
                content += 1
            cuts.append((word.lower(), i, content))
            if word != "FOR":
                seen.add(word)
        ranges: dict[str, Range] = {first: (lo, cuts[0][1] if cuts else hi)}
        for k, (name, _, content) in enumerate(cuts):
            end = cuts[k + 1][1] if k + 1 < len(cuts) else hi
            ranges.setdefault(name, (content, end))
        return ranges

    def select(self, node: ast.SelectStmt, lo: int, hi: int) -> Clauses:
        """Clauses of a simple SELECT (or VALUES) spanning tokens [lo, hi)."""
        t = self.tokens
        lo, hi = self.strip(lo, hi)
        with_, lo = self.with_clause(node.withClause, lo, hi)
        if lo < hi and t[lo].text == "(":
            close = t.partner.get(lo)
            if close is None or close >= hi:
                raise SpanError("unbalanced brackets")
            inner = self.select(node, lo + 1, close)
            if close + 1 < hi:
                trailing = self.clause_ranges(close + 1, hi, TRAILING_CLAUSES, "_")
                trailing.pop("_")
                inner.ranges.update(trailing)
            inner.with_ = with_ or inner.with_
            return inner
        if lo >= hi:
            raise SpanError("empty statement")
        if t[lo].word == "VALUES":
            ranges = self.clause_ranges(lo + 1, hi, TRAILING_CLAUSES, "values")
            return Clauses(ranges, with_)
        if t[lo].word != "SELECT":
            raise SpanError("not a SELECT")
        i = lo + 1
        if i < hi and t[i].word == "ALL":
            i += 1
        elif i < hi and t[i].word == "DISTINCT":
            i += 1
            if i < hi and t[i].word == "ON":
                i = self.skip_group(i + 1)
        return Clauses(self.clause_ranges(i, hi, SELECT_CLAUSES, "targets"), with_)

    def set_operation(self, node: ast.SelectStmt, lo: int, hi: int) -> tuple[WithText | None, list[Range]]:
        """The leaf pieces of a UNION/INTERSECT/EXCEPT tree, in text order."""
        t = self.tokens
        lo, hi = self.strip(lo, hi)
        with_, lo = self.with_clause(node.withClause, lo, hi)
        base = self.base(lo, hi)
        if not any(t[i].word in SET_OPERATORS for i in base) and t[lo].text == "(":
            close = t.partner[lo]
            _, pieces = self.set_operation(node, lo + 1, close)
            return with_, pieces
        pieces, start = [], lo
        k = 0
        while k < len(base):
            i = base[k]
            word = t[i].word
            if word in SET_OPERATORS:
                pieces.append((start, i))
                k += 1
                if k < len(base) and t[base[k]].word in ("ALL", "DISTINCT"):
                    k += 1
                start = base[k] if k < len(base) else hi
                continue
            if word in TRAILING_CLAUSES and t[i - 1].word != "AS":
                if word != "FOR" or (i + 1 < hi and t[i + 1].word in _LOCKING):
                    hi = i
                    break
            k += 1
        pieces.append((start, hi))
        return with_, pieces

    def arm(self, arm: ast.SelectStmt, pieces: list[Range]) -> Range:
        """Tokens of one arm of a set operation: the pieces its locations fall in."""
        ext = extent(arm, self.constants)
        if ext is None:
            raise SpanError("set operation arm without locations")
        inside = [p for p in pieces if self.tokens[p[0]].start <= ext.last and ext.first < self.tokens[p[1] - 1].end]
        if not inside:
            raise SpanError("set operation arm not found")
        return inside[0][0], inside[-1][1]

    def update(self, node: ast.UpdateStmt, lo: int, hi: int) -> Clauses:
        t = self.tokens
        with_, lo = self.with_clause(node.withClause, lo, hi)
        lo = self.expect(lo, "UPDATE")
        set_at = next((i for i in self.base(lo, hi) if t[i].word == "SET"), None)
        if set_at is None:
            raise SpanError("UPDATE without SET")
        ranges = self.clause_ranges(set_at + 1, hi, frozenset({"FROM", "WHERE", "RETURNING"}), "set")
        ranges["target"] = (lo, set_at)
        return Clauses(ranges, with_)

    def delete(self, node: ast.DeleteStmt, lo: int, hi: int) -> Clauses:
        with_, lo = self.with_clause(node.withClause, lo, hi)
        lo = self.expect(self.expect(lo, "DELETE"), "FROM")
        ranges = self.clause_ranges(lo, hi, frozenset({"USING", "WHERE", "RETURNING"}), "target")
        if "using" in ranges:
            ranges["from"] = ranges.pop("using")
        return Clauses(ranges, with_)

    def insert_query(self, node: ast.InsertStmt, lo: int, hi: int) -> Range:
        """Tokens of the SELECT/VALUES of an INSERT."""
        t = self.tokens
        i = t.index_at(node.relation.location)
        while i + 2 < hi and t[i + 1].text == ".":
            i += 2
        i += 1
        if i < hi and t[i].word == "AS":
            i += 2
        if node.cols:
            if t[i].text != "(":
                raise SpanError("INSERT column list not found")
            i = self.skip_group(i)
        if i < hi and t[i].word == "OVERRIDING":
            i += 3
        end = next((k for k in self.base(i, hi) if t[k].word in ("ON", "RETURNING")), hi)
        return i, end

    # -- expressions -----------------------------------------------------------------

    def conjuncts(self, node: ast.Node, r: Range) -> list[tuple[ast.Node, Range]]:
        """The top-level AND terms of a condition occupying `r`, each with its tokens."""
        if not (isinstance(node, ast.BoolExpr) and node.boolop == BoolExprType.AND_EXPR):
            return [(node, r)]
        t = self.tokens
        lo, hi = r
        level = t.level(lo)
        bounds = [lo]
        for arg in node.args[1:]:
            ext = extent(arg, self.constants)
            if ext is None:
                raise SpanError("conjunct without locations")
            j = t.index_at(ext.first) - 1
            while j >= bounds[-1] and not (t[j].word == "AND" and t.level(j) == level):
                j -= 1
            if j < bounds[-1]:
                raise SpanError("AND separator not found")
            bounds.append(j)
        result = []
        for k, arg in enumerate(node.args):
            start = bounds[k] + (1 if k else 0)
            end = bounds[k + 1] if k + 1 < len(bounds) else hi
            result.append((arg, (start, end)))
        return result

    def quals(self, join: ast.JoinExpr, limit: int) -> Range:
        """Tokens of a JOIN's ON condition (without ON)."""
        t = self.tokens
        ext = extent(join.quals, self.constants)
        if ext is None:
            raise SpanError("ON condition without locations")
        q = t.index_at(ext.first)
        j = q - 1
        while j >= 0 and not (t[j].word == "ON" and t.depth[j] <= t.depth[q]):
            j -= 1
        if j < 0:
            raise SpanError("ON not found")
        level = t.level(j)
        i = j + 1
        while i < limit:
            token = t[i]
            lvl = t.level(i)
            if lvl < level:
                break
            if lvl == level:
                if token.text in (",", ";"):
                    break
                if token.word in _JOIN_WORDS and not (i + 1 < limit and t[i + 1].text == "("):
                    break
                if token.word in _QUALS_END and t[i - 1].word != "AS":
                    break
            i += 1
        r = (j + 1, i)
        span = self.span(r)
        if not (span.start <= ext.first and ext.last < span.end):
            raise SpanError("ON condition extent outside its span")
        return r
