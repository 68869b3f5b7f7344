"""The admin console: the virtual database `mlproxy`, as PgBouncer's `pgbouncer`.

`psql "postgresql://alice@proxy:6543/mlproxy"`: the login goes to the upstream as any
other (to the database `admin_database`, default postgres), so the upstream's own
authentication decides who gets in; after its AuthenticationOk the session is served
here instead of relayed, for a role named in `admin_users` (any other gets FATAL
42501 after logging in, as Postgres answers a role without CONNECT). The upstream
connection stays open, idle, until the console session ends.

The console is a Takeover handler (intercept.py) that owns the session from the login
on: it relays the authentication exchange message by message, then answers the
commands of commands.py under the simple protocol (several separated by `;`) and the
extended one (Parse/Bind/Describe/Execute/Close/Sync; results in the format codes the
Bind asks for), with plain RowDescription/DataRow/CommandComplete replies.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import errors, protocol as p
from ..errors import PgError
from ..framing import Frame
from ..intercept import Takeover
from ..startup import StartupMessage
from .commands import Commands, Result, find_command

log = logging.getLogger("mlproxy.console")

VIRTUAL_DATABASE = "mlproxy"
_AUTH_OK = 0
_AUTH_SASL_FINAL = 12
_INT8, _FLOAT8 = 20, 701


class ConsoleClosed(ConnectionResetError):
    """The console session ends (Terminate, SHUTDOWN, the proxy stopping)."""


@dataclass
class _Portal:
    result: Result
    formats: tuple[int, ...]
    sent: int = 0  # rows sent by earlier Executes (a row limit suspends the portal)
    done: bool = False


@dataclass
class _SessionState:
    statements: dict[bytes, str] = field(default_factory=dict)
    portals: dict[bytes, _Portal] = field(default_factory=dict)


class AdminConsole:
    def __init__(self, commands: Commands, admin_users: tuple[str, ...],
                 admin_database: str = "postgres") -> None:
        self.commands = commands
        self.admin_users = admin_users
        self.admin_database = admin_database
        self._closing = asyncio.Event()

    # -- the session's hook (session._connect_upstream): claims(), then handle() gets
    # the login for the upstream (upstream_login) as its frame
    def claims(self, startup: StartupMessage) -> bool:
        return startup.database == VIRTUAL_DATABASE and "replication" not in startup.parameters

    def upstream_login(self, startup: StartupMessage) -> StartupMessage:
        """The client's StartupMessage with the database replaced by admin_database
        (every other parameter as sent, bytes untouched)."""
        parts = startup.raw[8:-1].split(b"\x00")[:-1]
        pairs = [[parts[i], parts[i + 1]] for i in range(0, len(parts), 2)]
        found = False
        for pair in pairs:
            if pair[0] == b"database":
                pair[1], found = self.admin_database.encode(), True
        if not found:
            pairs.append([b"database", self.admin_database.encode()])
        body = startup.raw[4:8] + b"".join(k + b"\x00" + v + b"\x00" for k, v in pairs) + b"\x00"
        raw = struct.pack("!I", len(body) + 4) + body
        params = dict(startup.parameters)
        params["database"] = self.admin_database
        return StartupMessage(raw, startup.version, params)

    def close(self) -> None:
        """The proxy stops: console sessions end now (57P01), not after the grace period."""
        self._closing.set()

    # -- the takeover -----------------------------------------------------------------------
    async def handle(self, frame: Frame, takeover: Takeover) -> None:
        session = takeover.session
        user = session.startup.user if session.startup else ""
        takeover.send_server(bytes(frame.raw))  # the login, to admin_database
        if not await self._relay_login(takeover):
            raise ConsoleClosed("login refused by the upstream")
        if user not in self.admin_users:
            log.warning("admin console refused user=%s peer=%s: not in admin_users", user, session.peer)
            self._close_upstream(takeover)
            takeover.send_client(p.error_response(PgError(
                errors.INSUFFICIENT_PRIVILEGE,
                f'permission denied to use the mlproxy admin console: role "{user}" is not in admin_users',
                hint="The proxy's setting admin_users names the roles that may use it.",
                severity="FATAL")))
            raise ConsoleClosed("not an admin")
        log.info("admin console session=%s user=%s peer=%s", session.id, user, session.peer)
        takeover.send_client(p.ready_for_query(b"I"))
        state = _SessionState()
        try:
            while True:
                msg = await self._next_message(takeover)
                if msg is None:
                    takeover.send_client(p.error_response(PgError(
                        errors.ADMIN_SHUTDOWN, "terminating connection due to administrator command",
                        severity="FATAL")))
                    raise ConsoleClosed("shutting down")
                if msg.type == p.F_TERMINATE:
                    raise ConsoleClosed("terminate")
                if msg.type == p.F_QUERY:
                    await self._simple(msg, takeover)
                elif msg.type in (p.F_PARSE, p.F_BIND, p.F_DESCRIBE, p.F_EXECUTE, p.F_CLOSE):
                    try:
                        await self._extended(msg, takeover, state)
                    except PgError as err:
                        takeover.send_client(p.error_response(err))
                        await self._skip_to_sync(takeover)
                elif msg.type == p.F_SYNC:
                    takeover.send_client(p.ready_for_query(b"I"))
                elif msg.type == p.F_FLUSH:
                    pass
                else:
                    takeover.send_client(p.error_response(PgError(
                        errors.FEATURE_NOT_SUPPORTED,
                        f"the mlproxy admin console does not take message type {chr(msg.type)!r}")))
                    if msg.type != p.F_FUNCTION_CALL:
                        await self._skip_to_sync(takeover)
                    else:
                        takeover.send_client(p.ready_for_query(b"I"))
        finally:
            self._close_upstream(takeover)

    async def _relay_login(self, takeover: Takeover) -> bool:
        """Relay the upstream's authentication exchange and its messages up to the
        login's ReadyForQuery; False if the upstream refused (its error relayed)."""
        while True:
            msg = await takeover.server_message()
            raw = bytes(msg.raw)
            if msg.type == p.B_AUTHENTICATION:
                takeover.send_client(raw)
                code = struct.unpack_from("!i", raw, 5)[0]
                if code == _AUTH_OK:
                    break
                if code != _AUTH_SASL_FINAL:  # a request the client answers
                    reply = await takeover.client_message()
                    if reply.type != p.F_PASSWORD:
                        takeover.send_server(bytes(reply.raw))  # Postgres answers it (FATAL)
                        continue
                    takeover.send_server(bytes(reply.raw))
            elif msg.type == p.B_ERROR:
                takeover.send_client(raw)
                return False
            else:  # NegotiateProtocolVersion, a NOTICE
                takeover.send_client(raw)
        while True:  # ParameterStatus, BackendKeyData, notices, then ReadyForQuery
            msg = await takeover.server_message()
            if msg.type == p.B_READY_FOR_QUERY:
                return True
            takeover.send_client(bytes(msg.raw))
            if msg.type == p.B_ERROR:
                return False

    def _close_upstream(self, takeover: Takeover) -> None:
        if not takeover.server_closed:
            takeover.send_server(p.message(b"X"))

    async def _next_message(self, takeover: Takeover) -> Frame | None:
        """The client's next message, or None when the proxy is stopping."""
        if self._closing.is_set():
            return None
        waiting = asyncio.ensure_future(takeover.client_message())
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            done, _ = await asyncio.wait({waiting, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
        if waiting in done:
            return waiting.result()  # (raises ConnectionResetError when the client left)
        waiting.cancel()
        return None

    async def _skip_to_sync(self, takeover: Takeover) -> None:
        while True:
            msg = await takeover.client_message()
            if msg.type == p.F_SYNC:
                takeover.send_client(p.ready_for_query(b"I"))
                return
            if msg.type == p.F_TERMINATE:
                raise ConsoleClosed("terminate")

    # -- simple protocol ----------------------------------------------------------------------
    async def _simple(self, msg: Frame, takeover: Takeover) -> None:
        try:
            text = p.decode_query(msg.body).decode("utf-8", "replace")
        except PgError as err:
            takeover.send_client(p.error_response(err))
            takeover.send_client(p.ready_for_query(b"I"))
            return
        commands = [c.strip() for c in text.split(";")]
        commands = [c for c in commands if c] or [""]
        after: Callable[[], None] | None = None
        for command in commands:
            if not command:
                takeover.send_client(p.empty_query_response())
                continue
            try:
                result = await self._run(command)
            except PgError as err:
                takeover.send_client(p.error_response(err))
                break
            takeover.send_client(self._result_messages(result, (), describe=True))
            after = result.after or after
        takeover.send_client(p.ready_for_query(b"I"))
        if after is not None:
            after()

    async def _run(self, command: str) -> Result:
        found = find_command(command)
        return await found.run(self.commands, command.strip().rstrip(";").strip())

    # -- extended protocol ---------------------------------------------------------------------
    async def _extended(self, msg: Frame, takeover: Takeover, state: _SessionState) -> None:
        body = msg.body
        if msg.type == p.F_PARSE:
            parsed = p.decode_parse(body)
            text = parsed.query.decode("utf-8", "replace").strip().rstrip(";").strip()
            if text:
                find_command(text)  # an unknown command is refused at Parse, as a syntax error
            if parsed.types:
                raise PgError(errors.SYNTAX_ERROR, "admin console commands take no parameters")
            state.statements[parsed.name] = text
            takeover.send_client(p.parse_complete())
        elif msg.type == p.F_BIND:
            bind = p.decode_bind(body)
            text = self._statement(state, bind.statement)
            if bind.values:
                raise PgError(errors.PROTOCOL_VIOLATION,
                              f"bind message supplies {len(bind.values)} parameters, but prepared "
                              f"statement \"{bind.statement.decode(errors='replace')}\" requires 0")
            result = await self._run(text) if text else Result.empty()
            state.portals[bind.portal] = _Portal(result, bind.result_formats)
            takeover.send_client(p.bind_complete())
        elif msg.type == p.F_DESCRIBE:
            kind, name = p.decode_target(body)
            if kind == b"S":
                text = self._statement(state, name)
                columns = find_command(text).columns if text else ()
                takeover.send_client(p.message(b"t", b"\x00\x00"))
                takeover.send_client(p.row_description(columns) if columns else p.no_data())
            else:
                portal = self._portal(state, name)
                columns = portal.result.columns
                takeover.send_client(p.row_description(columns, _formats(portal.formats, len(columns)))
                                     if columns else p.no_data())
        elif msg.type == p.F_EXECUTE:
            name, limit = p.decode_execute(body)
            portal = self._portal(state, name)
            self._execute(portal, limit, takeover)
        elif msg.type == p.F_CLOSE:
            kind, name = p.decode_target(body)
            (state.statements if kind == b"S" else state.portals).pop(name, None)
            takeover.send_client(p.message(b"3"))

    @staticmethod
    def _statement(state: _SessionState, name: bytes) -> str:
        text = state.statements.get(name)
        if text is None:
            raise PgError("26000", f'prepared statement "{name.decode(errors="replace")}" does not exist')
        return text

    @staticmethod
    def _portal(state: _SessionState, name: bytes) -> _Portal:
        portal = state.portals.get(name)
        if portal is None:
            raise PgError("34000", f'portal "{name.decode(errors="replace")}" does not exist')
        return portal

    def _execute(self, portal: _Portal, limit: int, takeover: Takeover) -> None:
        result = portal.result
        if result.tag is None:
            takeover.send_client(p.empty_query_response())
            return
        formats = _formats(portal.formats, len(result.columns))
        rows = result.rows[portal.sent:]
        if portal.done:
            rows = []
        if limit > 0 and len(rows) > limit:
            takeover.send_client(b"".join(_data_row(r, result.columns, formats) for r in rows[:limit]))
            portal.sent += limit
            takeover.send_client(p.message(b"s"))
            return
        portal.done = True
        takeover.send_client(b"".join(_data_row(r, result.columns, formats) for r in rows)
                             + p.command_complete(result.command_tag(len(rows))))
        if result.after is not None:
            result.after()

    def _result_messages(self, result: Result, formats: tuple[int, ...], describe: bool) -> bytes:
        out = []
        for notice in result.notices:
            out.append(notice)
        if result.columns and describe:
            out.append(p.row_description(result.columns))
        codes = _formats(formats, len(result.columns))
        out.extend(_data_row(row, result.columns, codes) for row in result.rows)
        out.append(p.command_complete(result.command_tag(len(result.rows))))
        return b"".join(out)


def _formats(codes: tuple[int, ...] | list[int], count: int) -> list[int]:
    """One format code per column from a Bind's result-format section."""
    if not codes:
        return [0] * count
    if len(codes) == 1:
        return [codes[0]] * count
    if len(codes) != count:
        raise PgError(errors.PROTOCOL_VIOLATION,
                      f"bind message has {len(codes)} result formats but query has {count} columns")
    return list(codes)


def _data_row(row: tuple, columns: tuple[tuple[str, int], ...], formats: list[int]) -> bytes:
    values: list[str | bytes | None] = []
    for value, (_, oid), code in zip(row, columns, formats):
        if value is None:
            values.append(None)
        elif code == 1 and oid == _INT8:
            values.append(struct.pack("!q", int(value)))
        elif code == 1 and oid == _FLOAT8:
            values.append(struct.pack("!d", float(value)))
        elif oid == _FLOAT8:
            values.append(repr(float(value)))
        else:
            values.append(str(value))
    return p.data_row(values)
