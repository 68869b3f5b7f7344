"""What a block can see and how it computes: names, grouping, outer references.

These are the syntactic facts the general path needs to decide, for one model
call, over which rows its arguments must be enumerated:

- the names a block's FROM list defines (to tell a qualified outer reference from
  a local one: `b.x` inside a sub-query whose FROM has no `b` is correlated);
- whether a block aggregates (a call in its select list then sees groups);
- which select-list entries GROUP BY refers to (by position or output name);
- the chain of enclosing blocks whose FROM items a correlated block can see.
"""

from __future__ import annotations

from dataclasses import dataclass

from pglast import ast

from ...errors import FEATURE_NOT_SUPPORTED, PgError
from .analysis import CTE, FROM, INSERT, LATERAL, SETOP, SUBLINK, Analysis, Block
from .builtins import is_aggregate
from .syntax import descendants


def from_items(block: Block) -> tuple[ast.Node, ...]:
    """The FROM list of a block (UPDATE's FROM, DELETE's USING)."""
    node = block.node
    if isinstance(node, ast.SelectStmt | ast.UpdateStmt):
        return tuple(node.fromClause or ())
    if isinstance(node, ast.DeleteStmt):
        return tuple(node.usingClause or ())
    return ()


def _item_names(item: ast.Node) -> set[str]:
    names: set[str] = set()
    if isinstance(item, ast.RangeVar):
        names.add(item.alias.aliasname if item.alias else item.relname)
    elif isinstance(item, ast.JoinExpr):
        names |= _item_names(item.larg) | _item_names(item.rarg)
        if item.alias:
            names.add(item.alias.aliasname)
    elif isinstance(item, ast.RangeTableSample):
        names |= _item_names(item.relation)
    else:
        alias = getattr(item, "alias", None)
        if alias is not None:
            names.add(alias.aliasname)
        if isinstance(item, ast.RangeFunction) and alias is None:
            for function in item.functions or ():
                call = function[0] if isinstance(function, tuple) else function
                if isinstance(call, ast.FuncCall):
                    names.add(call.funcname[-1].sval)
    return names


def local_names(block: Block) -> set[str]:
    """Range names defined by the block itself (its target relation and FROM items)."""
    names: set[str] = set()
    relation = getattr(block.node, "relation", None)
    if isinstance(relation, ast.RangeVar) and not isinstance(block.node, ast.InsertStmt):
        names.add(relation.alias.aliasname if relation.alias else relation.relname)
    for item in from_items(block):
        names |= _item_names(item)
    return names


def subtree_names(block: Block) -> set[str]:
    names = local_names(block)
    for child in block.children:
        names |= subtree_names(child)
    return names


def qualifiers(node: ast.Node) -> set[str]:
    """Table qualifiers of the column references under `node` (`b` in `b.x`, `b.*`)."""
    found = set()
    for current in descendants(node):
        if isinstance(current, ast.ColumnRef) and len(current.fields) >= 2:
            qualifier = current.fields[-2]
            if isinstance(qualifier, ast.String):
                found.add(qualifier.sval)
    return found


def has_unqualified_ref(node: ast.Node) -> bool:
    return any(isinstance(n, ast.ColumnRef) and len(n.fields) == 1 for n in descendants(node))


def is_correlated(block: Block) -> bool:
    """Does a qualified column reference in the block name a range defined outside it?

    Unqualified references cannot be told apart without the catalog; they are taken
    as local (Postgres looks in the innermost scope first).  If one is in fact an
    outer column, the derived input query fails with 42703 instead of answering.
    """
    return bool(qualifiers(block.node) - subtree_names(block))


def is_grouped(analysis: Analysis, block: Block) -> bool:
    node = block.node
    if not isinstance(node, ast.SelectStmt):
        return False
    if node.groupClause or node.havingClause:
        return True
    return any(b is block and is_aggregate(call) for call, b in analysis.other_calls)


def has_grouping_sets(block: Block) -> bool:
    return any(isinstance(n, ast.GroupingSet) for item in block.node.groupClause or () for n in descendants(item))


@dataclass(frozen=True)
class GroupRefs:
    """Select-list references in GROUP BY: 1-based positions and bare names."""

    positions: frozenset[int]
    names: frozenset[str]


def group_refs(block: Block) -> GroupRefs:
    positions, names = set(), set()
    for item in block.node.groupClause or ():
        for node in descendants(item):
            if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Integer):
                positions.add(node.val.ival)
            elif isinstance(node, ast.ColumnRef) and len(node.fields) == 1 and isinstance(node.fields[0], ast.String):
                names.add(node.fields[0].sval)
    return GroupRefs(frozenset(positions), frozenset(names))


def output_name(target: ast.ResTarget) -> str | None:
    """The column name Postgres gives a select-list entry, where syntax decides it."""
    if target.name:
        return target.name
    node = target.val
    while True:
        if isinstance(node, ast.TypeCast):
            inner = node.arg
            if isinstance(inner, ast.ColumnRef | ast.FuncCall | ast.TypeCast | ast.CollateClause):
                node = inner
                continue
            return node.typeName.names[-1].sval
        if isinstance(node, ast.CollateClause):
            node = node.arg
            continue
        break
    if isinstance(node, ast.ColumnRef):
        last = node.fields[-1]
        return last.sval if isinstance(last, ast.String) else None
    if isinstance(node, ast.FuncCall):
        return node.funcname[-1].sval
    if isinstance(node, ast.CoalesceExpr):
        return "coalesce"
    if isinstance(node, ast.CaseExpr):
        return "case"
    return None


def referenced_by_group(block: Block, index: int) -> bool:
    """Could GROUP BY refer to select-list entry `index` (0-based)?  Errs towards yes."""
    refs = group_refs(block)
    if index + 1 in refs.positions:
        return True
    if not refs.names:
        return False
    name = output_name(block.node.targetList[index])
    return name is None or name in refs.names


@dataclass(frozen=True)
class Level:
    """An enclosing block whose FROM items a correlated block can see.

    `items` is how many of its top-level FROM items are visible (None: all), which
    is less than all for a LATERAL sub-query (it sees only the items before it);
    `via` is that LATERAL sub-query when it is the right-hand side of `join` (it
    then also sees the join's left-hand side).
    """

    block: Block
    items: int | None
    via: Block | None = None
    join: ast.JoinExpr | None = None


def has_outer_scope(block: Block) -> bool:
    """Can the block see columns of an enclosing query (is it a SubLink or LATERAL inside one)?"""
    current = block
    while current.parent is not None and current.edge != INSERT:
        if current.edge in (SUBLINK, LATERAL):
            return True
        current = current.parent
    return False


def outer_levels(block: Block) -> list[Level]:
    """Enclosing blocks visible to `block`, outermost first."""
    levels: list[Level] = []
    current = block
    while current.parent is not None:
        parent = current.parent
        if current.edge == SUBLINK:
            levels.append(Level(parent, None))
        elif current.edge == LATERAL:
            if current.join is not None and not _left_deep(from_items(parent)[current.item_index], current.join):
                raise PgError(FEATURE_NOT_SUPPORTED,
                              "mlproxy: a correlated model call in a LATERAL sub-query nested inside a "
                              "parenthesized JOIN is not supported",
                              hint="Put the LATERAL sub-query in the FROM list (FROM t, LATERAL (...) s).")
            levels.append(Level(parent, current.item_index, current, current.join))
        elif current.edge == INSERT:
            break
        elif current.edge not in (FROM, CTE, SETOP):  # pragma: no cover - every edge is listed
            raise AssertionError(current.edge)
        current = parent
    return [lv for lv in reversed(levels) if from_items(lv.block) or lv.block.kind in ("update", "delete")]


def _left_deep(item: ast.Node, join: ast.JoinExpr) -> bool:
    """Is `join` reached from `item` through left-hand sides only (a JOIN b JOIN c ...)?"""
    while isinstance(item, ast.JoinExpr):
        if item is join:
            return True
        item = item.larg
    return False
