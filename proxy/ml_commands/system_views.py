"""Redshift's ML system views by their unqualified names.

`STV_ML_MODEL_INFO`, `SVV_ML_MODEL_INFO` and `SVV_ML_MODEL_PRIVILEGES` exist as
views in schema mlproxy (catalog migration 5), which each show only the models the
querying role may see. Redshift users write them unqualified, so the proxy
qualifies them, in the text the server receives, where Postgres would read them as
relations: an unqualified name in a FROM (or USING) list, in any case, in joins and
subqueries too. Nothing else is touched: a CTE of the same name, a column, a
string, a qualified name, or the name as the target of INSERT/CREATE/COPY.

Postgres' name resolution still decides first: a table or view of the same name
that the session's search path finds wins, as it would on Postgres (asked on the
session, `to_regclass`). The one exception is a Parse in the middle of an
extended-protocol pipeline, where no query of the proxy's fits in: the names are
then qualified without asking.

Only statements whose text contains "ml_model_" get this far (the trigger), so
ordinary statements pay nothing; the pglast parse happens only for those. A
qualified statement that also calls a model goes on to the inference interceptor.
"""

from __future__ import annotations

from pglast import parse_sql
from pglast.parser import ParseError
from pglast.visitors import Visitor

from .. import protocol as p
from ..framing import Frame
from ..inference.explain_model import original_position
from ..intercept import Takeover
from .upstream_ops import collect, relay, sql_literal

VIEWS = frozenset(("stv_ml_model_info", "svv_ml_model_info", "svv_ml_model_privileges"))
_PREFIX = "mlproxy."  # what original_position() maps back
_FROM_LISTS = frozenset(("fromClause", "usingClause"))
_JOIN_ARMS = frozenset(("larg", "rarg"))


class _References(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[int, str]] = []
        self.ctes: set[str] = set()

    def visit_CommonTableExpr(self, ancestors, node) -> None:
        self.ctes.add(node.ctename)

    def visit_RangeVar(self, ancestors, node) -> None:
        if node.schemaname is not None or node.catalogname is not None:
            return
        if node.relname not in VIEWS or not _in_from_list(ancestors):
            return
        self.found.append((node.location, node.relname))


def _in_from_list(ancestors) -> bool:
    """Is the relation an item of a FROM/USING list (directly or as a join arm)?"""
    while ancestors is not None:
        member = ancestors.member
        if isinstance(member, str) and member not in _JOIN_ARMS:
            return member in _FROM_LISTS
        ancestors = ancestors.parent
    return False


def view_references(sql: str) -> list[tuple[int, str]]:
    """(offset, view name) of each unqualified system-view relation in `sql`, in
    text order; empty when there is none or the text does not parse (the server
    will say why)."""
    try:
        tree = parse_sql(sql)
    except ParseError:
        return []
    refs = _References()
    refs(tree)
    return sorted((offset, name) for offset, name in refs.found if name not in refs.ctes)


def qualify(sql: str, offsets: list[int]) -> str:
    out, last = [], 0
    for offset in sorted(offsets):
        out.append(sql[last:offset])
        out.append(_PREFIX)
        last = offset
    out.append(sql[last:])
    return "".join(out)


class SystemViewInterceptor:
    """Qualifies the system views' names; see the module docstring."""

    def __init__(self, catalog, then=None) -> None:
        self.catalog = catalog  # the views come with the catalog's migrations
        # The interceptor that gets the qualified statement if it wants it (the
        # inference interceptor: a statement may call a model and read a view).
        self.then = then

    def triggers(self, database: str) -> tuple[bytes, ...]:
        return (b"ml_model_",)

    def subscribe(self, changed) -> None:
        pass  # the trigger never changes

    def wants(self, frame: Frame, sql: bytes, session) -> bool:
        lowered = sql.lower()
        if not any(name.encode() in lowered for name in VIEWS):
            return False
        try:
            return bool(view_references(sql.decode()))
        except UnicodeDecodeError:
            return False  # not valid UTF-8: the server says so

    async def handle(self, frame: Frame, takeover: Takeover) -> None:
        session = takeover.session
        is_query = frame.type == p.F_QUERY
        sql = (p.query_text(frame.body) if is_query else p.parse_message_parts(frame.body)[1]).decode()
        refs = view_references(sql)
        try:
            await self.catalog.pool(session.startup.database)
        except Exception:  # noqa: BLE001 - no catalog: the server says the names do not exist
            refs = []
        shadowed = await _shadowed(takeover, {name for _, name in refs})
        offsets = [offset for offset, name in refs if name not in shadowed]
        if not offsets:
            session.relay_frame(frame)
            return
        text = qualify(sql, offsets)
        if self.then is not None:
            body = p.cstr(text) if is_query else _parse_body(frame, text)
            qualified = Frame(frame.type, p.message(bytes([frame.type]), body))
            if self.then.wants(qualified, text.encode(), session):
                await self.then.handle(qualified, takeover)
                return
        if is_query:
            await relay(takeover, text, position=lambda pos: original_position(pos, offsets))
            takeover.send_client(p.ready_for_query(session.txstatus))
            return
        session.relay_frame(Frame(p.F_PARSE, p.message(b"P", _parse_body(frame, text))))


def _parse_body(frame: Frame, text: str) -> bytes:
    """A Parse message's body with its statement text replaced."""
    name, _sql, tail = p.parse_message_parts(frame.body)
    return name + b"\x00" + p.cstr(text) + tail


async def _shadowed(takeover: Takeover, names: set[str]) -> set[str]:
    """The names that the session's search path resolves to a relation of its own
    (mlproxy's views found that way need no qualifying either). All of them when
    the session cannot be asked: a failed transaction (the statement fails there
    anyway); none mid-pipeline (see the module docstring)."""
    if not names:
        return set()
    session = takeover.session
    if session.unsynced:
        return set()
    if session.txstatus == b"E":
        return set(names)
    probe = " UNION ALL ".join(
        f"SELECT {sql_literal(n)} WHERE pg_catalog.to_regclass({sql_literal(n)}) IS NOT NULL"
        for n in sorted(names))
    result = await collect(takeover, probe)
    if result.error is not None:
        return set(names)
    return {row[0] for row in result.rows}
