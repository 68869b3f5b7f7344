"""The interceptor for queries that call model functions.

`wants()` is a regex over the statement bytes, built from the database's model
function names (most traffic stops there). A hit is taken over: the statement is
planned (pglast), the session's privilege on each called function is checked on its
own upstream session (like Postgres, EXECUTE is required), the predictors are loaded,
and then

- streaming plan: the rewritten statement goes upstream and the session's response
  tracker rewrites its results as they stream by (simple and extended protocol);
- general plan, simple protocol: predictions are computed into temporary tables on
  the same session, inside one transaction, then the rewritten statement runs and
  the tables are dropped, also on error (a cursor's stay until COMMIT);
- general plan, extended protocol: the lookup form is prepared, and the predictions
  are computed at every Bind, with its parameters (prepared_general.py);
- EXPLAIN: the upstream plan of the rewritten statement, plus a notice that says
  which path mlproxy takes.
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import replace
from typing import Any

from pglast.parser import ParseError, scan

from .. import errors, protocol as p
from ..errors import CHARACTER_NOT_IN_REPERTOIRE, UTF8_HINT, PgError
from ..framing import Frame
from ..intercept import Takeover
from ..ml_commands.upstream_ops import collect, error_from_fields, relay, sql_literal, sql_text_array
from ..ml_statements.literals import quote_identifier
from . import prepared_general
from .call_log import CALLS
from .explain_model import original_position, qualify_explain_model
from .evaluate import BoundModel, StreamingRewriter, copy_data_messages
from .extended_session import fail, relay_owed, skip_to_sync
from .registry import (EXPLAIN_SUFFIX, PROBABILITY_SUFFIXES, DatabaseModels, ModelEntry, ModelRegistry,
                       function_signature)
from .rewrite import ExplainPlan, GeneralPlan, ModelFunction, StreamingPlan, plan_query
from .rowdesc import parse_row_description
from .tracked_relay import start_tracking, tracker_of
from .tracker import format_codes, result_formats, statement_error

log = logging.getLogger("mlproxy.inference")

_BATCH = 4096
_PLAN_CACHE_SIZE = 512
_BIND_FORMATS_CACHED = 16
_UNPLANNED = object()
# Statements that may change what a session may execute or which functions a name
# resolves to: cached privileges and search path are dropped when one is seen.
_INVALIDATING = (b"role", b"authorization", b"grant", b"revoke", b"search_path")


def _invalidates(lowered: bytes) -> bool:
    """Might this statement change the role, privileges or search_path the session's
    cached privilege checks and name resolution depend on?"""
    return any(word in lowered for word in _INVALIDATING)


class PreparedStreaming:
    """A prepared statement with streaming model calls (tracker.StatementPlan)."""

    def __init__(self, plan: StreamingPlan, models: dict[tuple[int, str], BoundModel]) -> None:
        self.plan = plan
        self.models = models
        # per result-format section of the client's Binds (drivers send the same one
        # at every execution): the section to send instead, and the portal's rewriter
        self._binds: dict[bytes, tuple[bytes, StreamingRewriter]] = {}

    def bind(self, bind_body: bytes) -> tuple[bytes, StreamingRewriter]:
        start, _, end = result_formats(bind_body)
        new_section, rewriter = self.bind_section(bind_body[start:end])
        return bind_body[:start] + new_section + bind_body[end:], rewriter

    def bind_section(self, section: bytes) -> tuple[bytes, StreamingRewriter]:
        """For a Bind's result-format section (count and codes, well formed): the
        section to send instead, and the portal's rewriter (tracker.client_pipeline
        finds the section itself)."""
        known = self._binds.get(section)
        if known is None:
            if len(self._binds) >= _BIND_FORMATS_CACHED:
                self._binds.clear()
            codes = list(struct.unpack_from(f"!{len(section) // 2 - 1}h", section, 2))
            known = self._binds[section] = self._formats(codes)
        return known

    def _formats(self, codes: list[int]) -> tuple[bytes, StreamingRewriter]:
        users = self.plan.user_columns
        if len(codes) == 1:
            codes = codes * users
        elif len(codes) not in (0, users):
            codes = codes[:users]  # the server reports the count mismatch itself
        # the appended argument columns come in binary (cheap to send and decode)
        new_codes = (codes or [0] * users) + [1] * self.plan.appended_columns
        rewriter = StreamingRewriter(self.plan, self.models, codes, binary_args=True)
        return format_codes(new_codes), rewriter

    def describe(self) -> StreamingRewriter:
        return StreamingRewriter(self.plan, self.models)


class InferenceInterceptor:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def triggers(self, database: str) -> tuple[bytes, ...]:
        """The database's model function names (a "(" while they are being loaded),
        and the words of statements that may change the role, privileges or
        search_path that a session's cached checks depend on."""
        models = self.registry.models(database)
        names = (b"(",) if models is None else tuple(sorted(models.names))
        return names + _INVALIDATING

    def subscribe(self, changed) -> None:
        self.registry.subscribe(changed)

    # -- on every Query/Parse that has a trigger ---------------------------------------
    def wants(self, frame: Frame, sql: bytes, session) -> bool:
        state = session.inference_state
        if state is not None and _invalidates(sql.lower()):
            state["privileges"].clear()
            state["search_path"] = None
            state["identity_changed"] = True
        models = self.registry.models(session.database)
        if models is None:  # still loading: decide once loaded
            return b"(" in sql
        return models.mentions_call(sql)

    # -- with the session to ourselves ----------------------------------------------
    async def handle(self, frame: Frame, takeover: Takeover) -> None:
        if frame.type == p.F_BIND:  # of a prepared statement on the general path
            await self._bind_general(frame, takeover)
            return
        if frame.type == p.F_DESCRIBE:  # of a prepared statement on the general path
            await self._describe_general(frame, takeover)
            return
        try:
            outcome = await self._prepare(frame, takeover)
        except PgError as err:
            await self._after_error(frame, takeover, err)
            return
        if outcome is None:  # no model call after all
            await self._plain(frame, takeover)
            return
        plan, models = outcome
        if frame.type == p.F_QUERY:
            await self._run_query(plan, models, takeover, frame)
        else:
            await self._prepare_statement(frame, plan, models, takeover)

    async def _plain(self, frame: Frame, takeover: Takeover) -> None:
        """A statement without model calls goes on unchanged, except that Redshift's
        unqualified explain_model() is pointed at mlproxy's."""
        session = takeover.session
        sql = _statement_sql(frame)
        qualified = qualify_explain_model(sql)
        if qualified is None:
            session.relay_frame(frame)
            return
        text, inserted = qualified
        if frame.type == p.F_QUERY:
            await relay(takeover, text, position=lambda pos: original_position(pos, inserted))
            takeover.send_client(p.ready_for_query(session.txstatus))
            return
        name, _sql, tail = p.parse_message_parts(frame.body)
        session.relay_frame(Frame(p.F_PARSE, p.message(b"P", name + b"\x00" + p.cstr(text) + tail)))

    async def _prepare(self, frame: Frame, takeover: Takeover):
        database = takeover.session.startup.database
        models = self.registry.models(database)
        planned = None
        if models is not None:  # the loaded models and their cached plans
            try:
                planned = await self._planned(frame, takeover, models)
            except PgError:
                planned = None
        if planned is None:
            # no call, or a model not (yet) usable: the registry hears of catalog
            # changes by NOTIFY, which may lag behind what the client saw (SHOW MODEL
            # says READY): decide on the catalog as it is now
            planned = await self._planned(frame, takeover, await self.registry.wait_loaded(database))
        if planned is None:
            return None
        plan, entries = planned
        if not isinstance(plan, StreamingPlan) and frame.type == p.F_QUERY:
            await self._check_privileges(takeover, entries)
        bound = await self._load(database, entries)
        if isinstance(plan, StreamingPlan):
            plan = _guarded(plan, entries)
        return plan, bound

    async def _planned(self, frame: Frame, takeover: Takeover, models: DatabaseModels):
        """(plan, the called models) of the statement, or None when it calls none."""
        database = takeover.session.startup.database
        if models.entries:  # rewritten statements use the catalog's current functions
            await self.registry.catalog.pool(database)
        sql = _statement_sql(frame)
        search_path = await self._search_path(takeover, models)
        # a prepared statement's temporary tables outlive it: not those of a Query
        key = (sql, tuple(search_path), frame.type)
        plan = models.plans.get(key, _UNPLANNED)
        if plan is _UNPLANNED:
            plan = plan_query(sql, _functions(models), search_path=search_path)
            if len(models.plans) >= _PLAN_CACHE_SIZE:
                models.plans.pop(next(iter(models.plans)))
            models.plans[key] = plan
        if plan is None:
            return None
        return plan, self._entries(models, _called(plan))

    @staticmethod
    def _entries(models: DatabaseModels, calls: list[ModelFunction]) -> dict[ModelFunction, ModelEntry]:
        """The called functions' models, each READY (else the statement's error)."""
        entries = {}
        for function in calls:
            entry = models.entries.get(function.model_id)
            if entry is None:
                raise PgError(errors.UNDEFINED_FUNCTION, f"model function {function.name} no longer exists")
            if entry.state != "READY":
                detail = f"SHOW MODEL {entry.model_name} reports its progress."
                if entry.state == "FAILED":
                    detail = f"Training failed: {entry.failure_reason}"
                raise PgError(errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                              f'model "{entry.model_name}" is not ready: its state is {entry.state}',
                              detail=detail)
            if function.kind == "prob" and entry.endpoint is not None:
                raise PgError(errors.FEATURE_NOT_SUPPORTED,
                              f"{function.name} is not defined for remote models; "
                              f'model "{entry.model_name}" is served by an inference endpoint')
            if function.kind == "prob" and entry.problem_type not in _CLASSIFICATION:
                raise PgError(errors.FEATURE_NOT_SUPPORTED,
                              f"{function.name} is only defined for classification models; "
                              f'model "{entry.model_name}" is {entry.problem_type}')
            entries[function] = entry
        return entries

    async def _load(self, database: str, entries: dict[ModelFunction, ModelEntry]
                    ) -> dict[tuple[int, str], BoundModel]:
        bound: dict[tuple[int, str], BoundModel] = {}
        for function, entry in entries.items():
            try:
                predictor = await self.registry.predictor(database, entry)
            except Exception as exc:  # noqa: BLE001 - a model that cannot load is an error for this query
                log.exception("predictor load failed model=%s", entry.model_name)
                raise PgError(errors.INTERNAL_ERROR,
                              f'model "{entry.model_name}" could not be loaded: {exc}') from exc
            background = self.registry.shap_background(entry) if function.kind == "explain" else None
            bound[(function.model_id, function.kind)] = BoundModel(entry, predictor, function.kind, background)
        return bound

    async def _search_path(self, takeover: Takeover, models: DatabaseModels) -> list[str]:
        state = _session_state(takeover.session)
        if state["search_path"] is None and takeover.session.unsynced:
            # Mid-pipeline no query of ours fits in (see Session.unsynced): resolve
            # names as the default search path would, then any schema with models.
            schemas = ["pg_catalog", takeover.session.startup.user, "public"]
            schemas += sorted({e.function_schema for e in models.entries.values()})
            return list(dict.fromkeys(schemas))
        if state["search_path"] is None:
            result = await collect(takeover, "SELECT unnest(current_schemas(false))::text")
            if result.error is not None:
                raise result.error
            state["search_path"] = [row[0] for row in result.rows]
        return state["search_path"]

    async def _check_privileges(self, takeover: Takeover, entries: dict[ModelFunction, ModelEntry]) -> None:
        """EXECUTE on each called function, asked on the session itself (its current
        role) for every statement: a GRANT or REVOKE anywhere applies at once."""
        result = await collect(takeover, f"SELECT {_check_execute(entries)}")
        if result.error is not None:
            result.error.position = None
            result.error.fields.pop("W", None)
            raise result.error

    # -- simple protocol ----------------------------------------------------------------
    async def _run_query(self, plan, models, takeover: Takeover, frame: Frame) -> None:
        session = takeover.session
        if isinstance(plan, StreamingPlan):
            tracker = start_tracking(session)
            tracker.add_query(StreamingRewriter(plan, models), map_position=plan.map_position)
            session.forward_request(p.message(b"Q", p.cstr(str(plan.sql))))
            return
        if isinstance(plan, ExplainPlan):
            await self._explain(plan, models, takeover)
        elif plan.cursor == "transaction" and session.txstatus == b"I":
            # Postgres refuses DECLARE outside a block (25P01) before it runs anything
            await relay(takeover, _statement_sql(frame))
        else:
            started, counted = time.perf_counter(), [0]
            if await self._general(plan, models, takeover, counted=counted):
                CALLS.finished((b.entry.model_name for b in models.values()), counted[0],
                               started, "general")
        takeover.send_client(p.ready_for_query(session.txstatus))

    async def _explain(self, plan: ExplainPlan, models, takeover: Takeover) -> None:
        takeover.send_client(p.notice_response(plan.description))
        inner = plan.inner
        if isinstance(inner, GeneralPlan):
            await self._general(inner, models, takeover, final=plan, fill=plan.analyze)
        else:
            await relay(takeover, str(plan.sql), position=plan.map_position)

    async def _general(self, plan: GeneralPlan, models, takeover: Takeover, *,
                       final: Any = None, fill: bool = True,
                       counted: list[int] | None = None) -> bool:
        """Predictions into temporary tables, then the rewritten statement, in one
        transaction of our own unless the client already has one open; whether it
        all succeeded. `counted[0]` adds up the rows predicted."""
        session = takeover.session
        final = final or plan
        own_transaction = session.txstatus == b"I"
        if own_transaction and not await self._quiet(takeover, "BEGIN"):
            return False
        created = []
        ok = True
        try:
            for index, step in enumerate(plan.steps):
                for sql in step.create:
                    ok = await self._quiet(takeover, sql)
                    if not ok:
                        break
                if not ok:
                    break
                created.append(step)
                if fill:
                    ok = await self._fill(takeover, plan, index, step, models, counted)
                else:  # EXPLAIN without ANALYZE: check the call, compute nothing
                    probe = await collect(takeover, str(step.probe))
                    if probe.error is not None:
                        if probe.error.position is not None:
                            probe.error.position = plan.map_position(probe.error.position, index)
                        takeover.send_client(p.error_response(probe.error))
                        ok = False
                if not ok:
                    break
                for sql in step.finish:
                    await self._quiet(takeover, sql)
            if ok:
                ok = await relay(takeover, str(final.sql), position=final.map_position)
        finally:
            # a cursor reads its tables at every FETCH: they go at COMMIT (ON COMMIT DROP)
            if session.txstatus == b"T" and plan.cursor is None:
                for step in reversed(created):
                    for sql in step.drop:
                        await self._quiet(takeover, sql)
            if own_transaction:
                ok = await self._quiet(takeover, "COMMIT" if ok and session.txstatus == b"T"
                                       else "ROLLBACK") and ok
        return ok

    async def _fill(self, takeover: Takeover, plan: GeneralPlan, index: int, step, models,
                    counted: list[int] | None = None) -> bool:
        """Run a step's input query, predict its rows batch by batch, COPY them in."""
        bound = models[(step.function.model_id, step.function.kind)]
        takeover.send_server(p.message(b"Q", p.cstr(str(step.input))))
        copy: list[bytes] = []
        rows: list[bytes] = []
        error = None

        failure: list[BaseException] = []

        async def flush() -> None:
            if rows and not failure:
                if counted is not None:
                    counted[0] += len(rows)
                try:
                    copy.append(await prepared_general.predicted_copy_off_loop(rows, step, bound))
                except Exception as exc:  # noqa: BLE001 - reported as this statement's error
                    failure.append(exc)
            rows.clear()

        while True:
            msg = await takeover.server_message()
            if msg.type == p.B_DATA_ROW:
                rows.append(bytes(msg.raw))
                if len(rows) >= _BATCH:
                    await flush()
            elif msg.type == p.B_ERROR:
                error = error_from_fields(p.parse_fields(msg.body))
            elif msg.type == p.B_READY_FOR_QUERY:
                break
        if error is not None:
            if error.position is not None:
                error.position = plan.map_position(error.position, index)
            if error.sqlstate == errors.UNDEFINED_COLUMN and step.hint and not error.hint:
                error.hint = step.hint
            error.fields.pop("W", None)
            takeover.send_client(p.error_response(error))
            return False
        await flush()
        if failure:
            takeover.send_client(p.error_response(statement_error(failure[0])))
            return False
        takeover.send_server(p.message(b"Q", p.cstr(step.copy)))
        started = False
        while True:
            msg = await takeover.server_message()
            if msg.type == p.B_COPY_IN and not started:
                started = True
                for message in copy_data_messages(b"".join(copy)):
                    takeover.send_server(message)
                takeover.send_server(p.message(b"c"))
            elif msg.type == p.B_ERROR:
                error = error_from_fields(p.parse_fields(msg.body))
            elif msg.type == p.B_READY_FOR_QUERY:
                break
        if error is not None:
            takeover.send_client(p.error_response(PgError(
                errors.INTERNAL_ERROR, f"mlproxy could not store predictions: {error.message}")))
            return False
        return True

    async def _quiet(self, takeover: Takeover, sql: str) -> bool:
        """Run one of mlproxy's own statements; its errors go to the client."""
        result = await collect(takeover, sql)
        if result.error is not None:
            result.error.position = None
            takeover.send_client(p.error_response(result.error))
            return False
        return True

    # -- extended protocol ----------------------------------------------------------
    async def _prepare_statement(self, frame: Frame, plan, models, takeover: Takeover) -> None:
        session = takeover.session
        if session.unsynced and session.failed_since_sync:
            await skip_to_sync(takeover)  # an earlier message failed: Postgres skips this one
            return
        if not isinstance(plan, StreamingPlan):
            entries = {f: models[(f.model_id, f.kind)].entry for f in _called(plan)}
            check = granted = None
            if plan.steps:
                check = _check_execute(entries)
                granted = prepared_general.Granted(_granted(entries), _session_state(session)["privileges"])
            await prepared_general.prepare(self, frame, plan, models, check, takeover, granted)
            return
        name, _sql, tail = p.parse_message_parts(frame.body)
        if plan.has_star:
            if session.unsynced:
                plan = await self._resolve_star_aside(plan, takeover)
            else:
                plan = await self._resolve_star(plan, name, tail, takeover)
            if plan is None:
                return
        tracker = start_tracking(session)
        tracker.add_statement(name, PreparedStreaming(plan, models), map_position=plan.map_position)
        session.forward_request(p.message(b"P", name + b"\x00" + p.cstr(str(plan.sql)) + tail))

    async def _resolve_star_aside(self, plan: StreamingPlan, takeover: Takeover):
        """Mid-pipeline, learn the width of `*` from a prepare on the service
        connection (nothing is executed); if that cannot see what the client sees,
        refuse rather than guess."""
        pool = await self.registry.catalog.pool(takeover.session.database, migrate_catalog=False)
        try:
            async with pool.acquire() as conn:
                total = len((await conn.prepare(str(plan.sql))).get_attributes())
        except Exception as exc:  # noqa: BLE001 - any failure means we cannot know
            takeover.send_client(p.error_response(PgError(
                errors.FEATURE_NOT_SUPPORTED,
                "mlproxy: SELECT * with a model call cannot be prepared in the middle of a "
                f"pipeline here ({exc})", hint="Name the columns instead of *.")))
            await takeover.discard_until_sync()
            return None
        return plan.resolve(total)

    async def _resolve_star(self, plan: StreamingPlan, name: bytes, tail: bytes, takeover: Takeover):
        """Learn how many columns `*` expands to: Parse + Describe + Flush of the
        rewritten text under a scratch name (no Sync: the client's pipeline and
        implicit transaction stay as they are)."""
        probe = b"__mlproxy_probe"
        takeover.send_server(p.message(b"P", probe + b"\x00" + p.cstr(str(plan.sql)) + tail)
                             + p.message(b"D", b"S" + probe + b"\x00")
                             + p.message(b"C", b"S" + probe + b"\x00") + p.message(b"H"))
        total = None
        while True:
            msg = await takeover.server_message()
            if msg.type == p.B_ERROR:
                err = error_from_fields(p.parse_fields(msg.body))
                if err.position is not None:
                    err.position = plan.map_position(err.position)
                takeover.send_client(p.error_response(err))
                return None  # the server now skips to the client's Sync, as it would have
            if msg.type == p.B_ROW_DESCRIPTION:
                total = len(parse_row_description(msg.raw))
            if msg.type == p.B_CLOSE_COMPLETE:
                break
        return plan.resolve(total) if total is not None else plan

    async def _after_error(self, frame: Frame, takeover: Takeover, err: PgError) -> None:
        """`err` answers the statement; the session goes on in sync."""
        if frame.type == p.F_QUERY:
            takeover.send_client(p.error_response(err))
            takeover.send_client(p.ready_for_query(takeover.session.txstatus))
        elif await relay_owed(takeover):
            await fail(takeover, err)
        else:  # an earlier message of the pipeline failed: Postgres ignores this one
            await skip_to_sync(takeover)

    async def _bind_general(self, frame: Frame, takeover: Takeover) -> None:
        """A Bind of a prepared general-path statement: its models as they are now
        (one dropped or retrained since the Parse is this execution's error)."""
        session = takeover.session
        tracker = tracker_of(session)
        names = p.bind_names(frame.body)  # the tracker handed over a Bind it decoded
        prepared = tracker.statements.get(names[1]) if tracker is not None else None
        if not isinstance(prepared, prepared_general.PreparedGeneral):
            # its Parse failed meanwhile (Postgres answers the Bind), or a Close and a
            # Parse of the same name in between made it another statement (the Bind
            # is that statement's, relayed as any Bind of it)
            session.relay_frame(frame)
            return
        database = session.startup.database
        calls = _called(prepared.plan)
        try:
            models = self.registry.models(database)
            try:
                entries = self._entries(models, calls) if models is not None else None
            except PgError:
                entries = None
            if entries is None:  # as in _prepare: the catalog as it is now
                entries = self._entries(await self.registry.wait_loaded(database), calls)
            bound: dict | PgError = await self._load(database, entries)
        except PgError as err:
            bound = err
        await prepared_general.execute(prepared, bound, frame, takeover)


    @staticmethod
    async def _describe_general(frame: Frame, takeover: Takeover) -> None:
        """A Describe of a prepared general-path statement (see prepared_general.describe)."""
        session = takeover.session
        tracker = tracker_of(session)
        prepared = tracker.statements.get(p.decode_target(frame.body)[1]) if tracker is not None else None
        if not isinstance(prepared, prepared_general.PreparedGeneral):
            session.relay_frame(frame)  # it became another statement meanwhile
            return
        await prepared_general.describe(prepared, frame, takeover)


def _statement_sql(frame: Frame) -> str:
    """The statement's text. mlproxy parses and rewrites it as UTF-8 (and sends the
    rewritten text as UTF-8), so another client_encoding's bytes get Postgres' error
    for an invalid byte sequence, not a garbled statement."""
    text = p.statement_text(frame.type, frame.raw)
    try:
        return text.decode()
    except UnicodeDecodeError as exc:
        raise PgError(CHARACTER_NOT_IN_REPERTOIRE,
                      f'invalid byte sequence for encoding "UTF8": {_bad_sequence(text, exc.start)}',
                      hint=UTF8_HINT) from None


def _bad_sequence(text: bytes, start: int) -> str:
    """The bytes Postgres names in its error for invalid UTF-8 (report_invalid_encoding):
    the sequence its lead byte announces, as far as the text goes."""
    lead = text[start]
    length = 2 if lead & 0xE0 == 0xC0 else 3 if lead & 0xF0 == 0xE0 else 4 if lead & 0xF8 == 0xF0 else 1
    return " ".join(f"0x{b:02x}" for b in text[start:start + length])


def _session_state(session) -> dict[str, Any]:
    if session.inference_state is None:
        session.inference_state = {"privileges": {}, "search_path": None, "identity_changed": False}
    return session.inference_state


_CLASSIFICATION = ("BINARY_CLASSIFICATION", "MULTICLASS_CLASSIFICATION")
_FLOAT_TYPES = ("double precision", "real", "numeric")


def _has_prob(entry: ModelEntry) -> bool:
    """Whether `<fn>_probabilities` (and its alias `<fn>_prob`) is the model's: the
    catalog makes their stubs for targets that may be classes (not float); once
    trained, only classifiers have them."""
    if entry.problem_type is not None:
        return entry.problem_type in _CLASSIFICATION
    return entry.return_type not in _FLOAT_TYPES


def _functions(models: DatabaseModels) -> dict[str, list[ModelFunction]]:
    out: dict[str, list[ModelFunction]] = {}
    for entry in models.entries.values():
        kinds = [("predict", entry.function_name, entry.return_type)]
        if _has_prob(entry):
            kinds += [("prob", entry.function_name + suffix, "jsonb") for suffix in PROBABILITY_SUFFIXES]
        if entry.explain_signature is not None:
            kinds.append(("explain", entry.function_name + EXPLAIN_SUFFIX, "jsonb"))
        for kind, name, returns in kinds:
            out.setdefault(name, []).append(ModelFunction(
                schema=entry.function_schema, name=name, arg_types=entry.arg_types,
                return_type=returns, model_id=entry.model_id, kind=kind))
    return out


def _called(plan) -> list[ModelFunction]:
    inner = plan.inner if isinstance(plan, ExplainPlan) else plan
    if isinstance(inner, StreamingPlan):
        functions = [call.function for call in inner.calls]
    else:
        functions = [step.function for step in inner.steps]
    return list(dict.fromkeys(functions))


def _guarded(plan: StreamingPlan, entries: dict[ModelFunction, ModelEntry]) -> StreamingPlan:
    """The plan with Postgres checking EXECUTE on the model functions at every
    execution, where and as it checks a call of them: the rewritten SELECT becomes a
    subquery with one more column, a scalar subquery (an InitPlan) that holds a call
    of each function under a condition that is never true. Postgres never calls
    them, but it checks EXECUTE on every function of a plan when the executor starts
    (at the Bind of a prepared statement, before any row), with its own 42501 and
    words. The condition reads a column of an OFFSET 0 subquery, so that the planner
    cannot fold it, and the calls with it, away. Prepared statements, SET ROLE and a
    REVOKE in another session are all covered, with no round trip of the proxy's own."""
    calls = " AND ".join(f"{_never_called(f, e)} IS NULL" for f, e in entries.items())
    prefix = (f"SELECT *, (SELECT CASE WHEN __mlproxy_never THEN {calls} END "
              f"FROM (SELECT false AS __mlproxy_never OFFSET 0) AS __mlproxy_guard) AS \"__mlproxy_check\" FROM (\n")
    suffix = "\n) AS __mlproxy_rewritten"
    sql = plan.sql
    shift = len(prefix)
    guarded = replace(sql, text=prefix + _without_final_semicolon(sql.text) + suffix,
                      segments=tuple((out + shift, length, src, copied)
                                     for out, length, src, copied in sql.segments))
    return replace(plan, sql=guarded, appended_columns=plan.appended_columns + 1)


def _without_final_semicolon(sql: str) -> str:
    """The statement without the `;` that may end it (it cannot stand inside a
    subquery); comments after it are kept, the closing text starts on a new line."""
    try:
        tokens = scan(sql)
    except ParseError:
        return sql
    for token in reversed(tokens):
        if token.name in ("SQL_COMMENT", "C_COMMENT"):
            continue
        if sql[token.start:token.end + 1] == ";":
            return sql[:token.start] + sql[token.end + 1:]
        break
    return sql


def _granted(entries: dict[ModelFunction, ModelEntry]) -> str:
    """An expression true when the current role may execute every one of these
    model functions (false, not an error, for one that is not there)."""
    return " AND ".join(f"coalesce(has_function_privilege(to_regprocedure({sql_literal(_signature(f, e))}), "
                        "'EXECUTE'), false)" for f, e in entries.items())


def _check_execute(entries: dict[ModelFunction, ModelEntry]) -> str:
    """A call that raises 42501, as a call of a stub would, unless the current role
    may execute every one of these model functions."""
    sigs = [_signature(f, e) for f, e in entries.items()]
    names = [f.name for f in entries]
    return f"mlproxy.check_execute({sql_text_array(sigs)}, {sql_text_array(names)})"


def _signature(function: ModelFunction, entry: ModelEntry) -> str:
    return function_signature(entry, function.name)


def _never_called(function: ModelFunction, entry: ModelEntry) -> str:
    """A call of the model function with NULL of each argument type: it resolves to
    the stub itself (no other overload), and a stub is not STRICT, so the planner
    keeps it."""
    args = ", ".join(f"NULL::{t}" for t in entry.arg_types)
    return f"{quote_identifier(entry.function_schema)}.{quote_identifier(function.name)}({args})"
