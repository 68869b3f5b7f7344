"""FORECAST(model): a FORECAST model's stored forecast as rows, Redshift's way.

`SELECT FORECAST(m)` (the call as the only select item of a SELECT without FROM,
optionally followed by WHERE/ORDER BY/LIMIT), `SELECT ... FROM FORECAST(m) [AS f]`
and both inside CREATE TABLE ... AS return one row per item and future time with
columns id (text), time (timestamp) and one double precision column per requested
percentile (p10, p50, p90 or mean).  The proxy only rewrites the call to a subquery
over the catalog's mlproxy.forecast(schema, name), which checks, as the caller, that
the model is visible (owner, superuser or GRANT EXECUTE ON MODEL: 42704/42501 as
for every model statement), is a FORECAST model (42809) and is READY (55000); the
rows come from the server, so both protocols and CREATE TABLE AS work unchanged.

The result columns depend on the model's PERCENTILES, so the rewrite first reads
them, on the client's session (the same visibility rule); a Parse in the middle of
an extended-protocol pipeline, where no query of the proxy's fits in, is refused
with 0A000.  Only statements whose text contains "forecast" get here (the trigger).
"""

from __future__ import annotations

import json

from pglast import ast, parse_sql
from pglast.parser import ParseError, scan
from pglast.visitors import Visitor

from .. import errors, protocol as p
from ..errors import PgError
from ..framing import Frame
from ..intercept import Takeover
from ..ml_statements.literals import quote_identifier
from .upstream_ops import collect, relay, sql_literal


class Call:
    """One FORECAST(m) call: byte span of the call, model name, and how it is used."""

    def __init__(self, start: int, end: int, schema: str | None, name: str, in_from: bool,
                 has_alias: bool) -> None:
        self.start, self.end, self.schema, self.name = start, end, schema, name
        self.in_from, self.has_alias = in_from, has_alias


class _Calls(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[ast.FuncCall, bool, bool, bool]] = []  # call, in FROM, alias, alone

    def visit_RangeFunction(self, ancestors, node) -> None:
        for item in node.functions or ():
            call = item[0] if isinstance(item, tuple) else item
            if _is_forecast(call):
                self.found.append((call, True, node.alias is not None, True))

    def visit_SelectStmt(self, ancestors, node) -> None:
        targets = node.targetList or ()
        for i, target in enumerate(targets):
            # only where a name could not be a column: the one item of a SELECT
            # without FROM (elsewhere forecast(x) may be a function of the user's)
            if (isinstance(target, ast.ResTarget) and _is_forecast(target.val) and len(targets) == 1
                    and not node.fromClause and target.name is None):
                self.found.append((target.val, False, False, True))


def _is_forecast(node) -> bool:
    return (isinstance(node, ast.FuncCall) and len(node.funcname) == 1
            and node.funcname[0].sval == "forecast" and node.args is not None and len(node.args) == 1
            and isinstance(node.args[0], ast.ColumnRef) and 1 <= len(node.args[0].fields) <= 2
            and all(isinstance(f, ast.String) for f in node.args[0].fields))


def forecast_calls(sql: str) -> list[Call]:
    """The FORECAST(m) calls of `sql`; empty when there is none or it does not parse.
    forecast(x) elsewhere (a select item beside others or over a FROM) is left to
    the server: it may be a function of the user's."""
    try:
        tree = parse_sql(sql)
    except ParseError:
        return []
    visitor = _Calls()
    visitor(tree)
    if not visitor.found:
        return []
    tokens = scan(sql)
    calls = []
    for call, in_from, has_alias, _alone in visitor.found:
        end = _closing_paren(tokens, call.location)
        fields = [f.sval for f in call.args[0].fields]
        schema, name = (fields[0], fields[1]) if len(fields) == 2 else (None, fields[0])
        calls.append(Call(call.location, end, schema, name, in_from, has_alias))
    return sorted(calls, key=lambda c: c.start)


def _closing_paren(tokens, location: int) -> int:
    depth = 0
    for token in tokens:
        if token.start < location:
            continue
        if token.name == "ASCII_40":
            depth += 1
        elif token.name == "ASCII_41":
            depth -= 1
            if depth == 0:
                return token.end + 1
    raise ValueError("unbalanced FORECAST call")


def subquery(call: Call, columns: list[str]) -> str:
    picks = ", ".join(f"f.q[{i}] AS {quote_identifier(c)}" for i, c in enumerate(columns, start=1))
    return (f"(SELECT f.id, f.\"time\", {picks} FROM mlproxy.forecast("
            f"{sql_literal(call.schema)}, {sql_literal(call.name)}) AS f)")


def rewrite(sql: str, calls: list[Call], columns: list[list[str]]) -> str:
    data = sql.encode()
    out, last = [], 0
    for call, cols in zip(calls, columns):
        out.append(data[last:call.start])
        sub = subquery(call, cols)
        if call.in_from:
            text = sub if call.has_alias else f"{sub} AS forecast"
        else:
            text = f"* FROM {sub} AS forecast"
        out.append(text.encode())
        last = call.end
    out.append(data[last:])
    return b"".join(out).decode()


class ForecastInterceptor:
    """Rewrites FORECAST(m); see the module docstring."""

    def __init__(self, catalog, then=None) -> None:
        self.catalog = catalog
        self.then = then  # the inference interceptor, for a statement that also calls a model

    def triggers(self, database: str) -> tuple[bytes, ...]:
        return (b"forecast",)

    def subscribe(self, changed) -> None:
        pass

    def wants(self, frame: Frame, sql: bytes, session) -> bool:
        if b"forecast" not in sql.lower():
            return False
        try:
            return bool(forecast_calls(sql.decode()))
        except PgError:
            return True  # handle() reports it
        except (UnicodeDecodeError, ValueError):
            return False

    async def handle(self, frame: Frame, takeover: Takeover) -> None:
        session = takeover.session
        is_query = frame.type == p.F_QUERY
        sql = (p.query_text(frame.body) if is_query else p.parse_message_parts(frame.body)[1]).decode()
        try:
            calls = forecast_calls(sql)
            if session.unsynced:
                raise PgError(errors.FEATURE_NOT_SUPPORTED,
                              "FORECAST(model) cannot be prepared in the middle of a pipeline",
                              hint="Send Sync before the Parse that reads a forecast.")
            columns = [await _columns(takeover, call) for call in calls]
        except PgError as err:
            takeover.send_client(p.error_response(err))
            if is_query:
                takeover.send_client(p.ready_for_query(session.txstatus))
            else:
                await takeover.discard_until_sync()
            return
        text = rewrite(sql, calls, columns)
        if self.then is not None:
            body = p.cstr(text) if is_query else _parse_body(frame, text)
            rewritten = Frame(frame.type, p.message(bytes([frame.type]), body))
            if self.then.wants(rewritten, text.encode(), session):
                await self.then.handle(rewritten, takeover)
                return
        if is_query:
            await relay(takeover, text)
            takeover.send_client(p.ready_for_query(session.txstatus))
            return
        session.relay_frame(Frame(p.F_PARSE, p.message(b"P", _parse_body(frame, text))))


async def _columns(takeover: Takeover, call: Call) -> list[str]:
    """The model's result columns, read as the client (its visibility rule)."""
    result = await collect(takeover, (
        "SELECT (m.options -> 'forecast' -> 'columns')::text FROM mlproxy.visible_models m "
        f"WHERE m.id = mlproxy.visible_model_id({sql_literal(call.schema)}, {sql_literal(call.name)})"))
    if result.error is not None:
        result.error.position = None
        result.error.fields.pop("W", None)
        raise result.error
    if not result.rows or result.rows[0][0] is None:
        raise PgError(errors.WRONG_OBJECT_TYPE, f'model "{call.name}" is not a FORECAST model',
                      hint="FORECAST(model) reads models created with MODEL_TYPE FORECAST.")
    return list(json.loads(result.rows[0][0]))


def _parse_body(frame: Frame, text: str) -> bytes:
    name, _sql, tail = p.parse_message_parts(frame.body)
    return name + b"\x00" + p.cstr(text) + tail
