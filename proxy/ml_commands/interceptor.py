"""The interceptor for Redshift ML statements: CREATE MODEL, SHOW MODEL, DROP MODEL,
GRANT/REVOKE ... ON MODEL and GRANT/REVOKE CREATE MODEL.

`wants()` is called for every Query and Parse: a byte-level prefilter rejects almost
all traffic at once; only text that mentions MODEL is parsed, and only statements
the parser confirms are taken over. Then:

- simple protocol: the query string is split; ordinary pieces run upstream as they
  are, ML pieces are carried out, and one ReadyForQuery ends it all, as Postgres
  does for a multi-statement string (an error stops the rest);
- extended protocol: SHOW MODEL becomes a Parse of the equivalent catalog query, so
  Bind/Describe/Execute behave as for any query; CREATE and DROP MODEL are answered
  by the proxy like a utility statement (ParseComplete, BindComplete, NoData,
  CommandComplete), the work happening at Execute.
"""

from __future__ import annotations

import logging

from .. import errors, protocol as p
from ..errors import PgError
from ..framing import Frame
from ..intercept import Takeover
from ..ml_statements import (CreateModel, CreateRemoteModel, DropModel, ModelPrivileges, ShowModel,
                             might_be_ml_statement, parse_statements)
from .create_model import MLServices, create_model
from .privileges import model_privileges
from .upstream_ops import relay, sql_literal

log = logging.getLogger("mlproxy.ml")


def show_sql(stmt: ShowModel) -> str:
    if stmt.is_all:
        return "SELECT * FROM mlproxy.show_models()"
    return (f"SELECT * FROM mlproxy.show_any_model({sql_literal(stmt.name.schema)}, "
            f"{sql_literal(stmt.name.name)})")


def drop_sql(stmt: DropModel) -> str:
    return ("DO $mlproxy$BEGIN PERFORM mlproxy.drop_model("
            f"{sql_literal(stmt.name.schema)}, {sql_literal(stmt.name.name)}, "
            f"{'true' if stmt.if_exists else 'false'}); END$mlproxy$")


class MLInterceptor:
    def __init__(self, services: MLServices) -> None:
        self.services = services

    # -- the cheap part, on every Query/Parse -----------------------------------------
    def triggers(self, database: str) -> tuple[bytes, ...]:
        return (b"model",)  # every ML statement (GRANT ... MODEL too) has the word

    def subscribe(self, changed) -> None:
        pass  # the triggers never change

    def wants(self, frame: Frame, sql: bytes, session) -> bool:
        if not might_be_ml_statement(sql):
            return False
        try:
            parsed: object = parse_statements(sql.decode())
        except PgError as err:
            parsed = err
        except UnicodeDecodeError:
            return False  # not valid UTF-8: let the server say so
        if isinstance(parsed, list) and all(stmt is None for _, stmt in parsed):
            return False
        session.ml_parse = (frame, parsed)  # handed to handle(); dies with the session
        return True

    # -- the work, with the session to ourselves ----------------------------------------
    async def handle(self, frame: Frame, takeover: Takeover) -> None:
        cached, takeover.session.ml_parse = takeover.session.ml_parse, None
        parsed = cached[1] if cached and cached[0] is frame else None
        if parsed is None:
            parsed = parse_statements(p.statement_text(frame.type, frame.raw).decode())
        if frame.type == p.F_QUERY:
            await self._simple(parsed, takeover)
        else:
            await self._extended(frame, parsed, takeover)

    async def _simple(self, parsed, takeover: Takeover) -> None:
        if isinstance(parsed, PgError):
            takeover.send_client(p.error_response(parsed))
        else:
            for piece, stmt in parsed:
                if not await self._run(piece, stmt, takeover):
                    break
        takeover.send_client(p.ready_for_query(takeover.session.txstatus))

    async def _run(self, piece, stmt, takeover: Takeover) -> bool:
        if stmt is None:
            start = piece.start
            return await relay(takeover, piece.text, position=lambda pos: pos + start)
        if not await self._catalog_ready(takeover):
            return False
        if isinstance(stmt, ShowModel):
            return await relay(takeover, show_sql(stmt), tag="SHOW", hide_context=True)
        return await self._change(stmt, takeover)

    async def _change(self, stmt, takeover: Takeover, *, extended: bool = False) -> bool:
        """CREATE or DROP MODEL; once committed, this proxy's own model registry is
        brought up to date before the client hears back, so its next statement sees
        the model function (other replicas learn of it by NOTIFY)."""
        if isinstance(stmt, ModelPrivileges):
            # privileges are checked at every call: no model changed
            return await model_privileges(takeover, stmt)
        if isinstance(stmt, (CreateModel, CreateRemoteModel)):
            ok = await create_model(self.services, takeover, stmt)
        else:
            ok = await relay(takeover, drop_sql(stmt), tag="DROP MODEL", rows=False,
                             hide_context=True, extended=extended)
        session = takeover.session
        if ok and session.txstatus == b"I" and self.services.models_changed is not None:
            await self.services.models_changed(session.startup.database)
        return ok

    async def _catalog_ready(self, takeover: Takeover) -> bool:
        database = takeover.session.startup.database
        try:
            await self.services.catalog.pool(database)
            return True
        except Exception as exc:  # noqa: BLE001 - report whatever kept the catalog away
            log.warning("model catalog unavailable database=%s error=%s", database, exc)
            takeover.send_client(p.error_response(PgError(
                errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                f"the model catalog of database \"{database}\" is not available: {exc}")))
            return False

    async def _extended(self, frame: Frame, parsed, takeover: Takeover) -> None:
        if isinstance(parsed, list) and len(parsed) > 1:
            parsed = PgError(errors.SYNTAX_ERROR,
                             "cannot insert multiple commands into a prepared statement")
        if isinstance(parsed, PgError):
            takeover.send_client(p.error_response(parsed))
            await takeover.discard_until_sync()
            return
        stmt = parsed[0][1]
        if not await self._catalog_ready(takeover):
            await takeover.discard_until_sync()
            return
        name, _sql, tail = p.parse_message_parts(frame.body)
        if isinstance(stmt, ShowModel):
            # From here on an ordinary statement: the server answers Parse and the rest.
            takeover.send_server(p.message(b"P", name + b"\x00" + p.cstr(show_sql(stmt)) + tail))
            return
        await self._utility(stmt, name, takeover)

    async def _utility(self, stmt, name: bytes, takeover: Takeover) -> None:
        """Answer Parse/Bind/Describe/Execute/Close/Sync for a statement that the
        proxy carries out itself and that returns no rows."""
        takeover.send_client(p.parse_complete())
        while True:
            msg = await takeover.client_message()
            t = msg.type
            try:  # what Postgres would refuse of a statement taking no parameters
                if t == p.F_BIND:
                    statement = p.bind_names(msg.body)[1]
                    p.decode_bind(msg.body, statement_params=0 if statement == name else None)
                elif t in (p.F_DESCRIBE, p.F_EXECUTE, p.F_CLOSE, p.F_FLUSH):
                    p.check_frontend(t, msg.body)
            except p.MalformedMessage as err:
                takeover.send_client(p.error_response(err))
                await takeover.discard_until_sync()
                return
            if t == p.F_BIND:
                takeover.send_client(p.bind_complete())
            elif t == p.F_DESCRIBE:
                if bytes(msg.body[:1]) == b"S":
                    takeover.send_client(p.message(b"t", b"\x00\x00"))  # no parameters
                takeover.send_client(p.no_data())
            elif t == p.F_EXECUTE:
                ok = await self._change(stmt, takeover, extended=True)
                if not ok:
                    await takeover.discard_until_sync()
                    return
            elif t == p.F_CLOSE:
                takeover.send_client(p.message(b"3"))
            elif t == p.F_FLUSH:
                continue
            elif t == p.F_SYNC:
                takeover.send_client(p.ready_for_query(takeover.session.txstatus))
                return
            else:  # another statement in the same pipeline: the server handles it
                takeover.unread_client(msg)
                return
