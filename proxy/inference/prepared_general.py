"""The general path under the extended protocol: predictions at every execution.

A prepared statement's model inputs depend on its Bind parameters (and on the data
at the time it runs), so the predictions are computed when it is bound, not when it
is parsed. The statement Postgres prepares is the *lookup form* (every call replaced
by a lookup in a temporary table, general.py), so Describe reports the right row
type (the lookup's column has the function's declared return type) and Execute,
row limits, PortalSuspended and result formats are Postgres's own: the rows pass
through untouched.

Parse (intercepted; `prepare`): owed replies are relayed, then in one batch of
mlproxy's own messages (extended_session.py; no Sync, so they share the client's
transaction) a DO block makes sure the steps' temporary tables and lookup functions
exist, and each step's input query is parsed and described: Postgres checks the
call there (a wrong arity or argument type is its own 42883, pointed at the
client's text) and says which types the parameters have. The client's Parse then
goes upstream with the lookup form, its parameters typed as the input queries
typed them (so a binary parameter value means the same in both).

Bind of such a statement (the tracker hands it over; `execute`): the models are
checked again in the registry (a model dropped since the Parse is a clear 42883 at
this execution), then one batch runs the DO block (EXECUTE privilege checked by
Postgres, as a call of the stub would; tables emptied, or made again if a rolled
back transaction took them), each step's input query with the client's own
parameter values and format codes (one round trip), and the COPY of the predicted
rows, sent right before the client's Bind without waiting: the tracker drops its
replies ahead of the client's. Everything runs in the client's transaction (its
block, or the implicit one its Sync ends): an error in mlproxy's part is the error
of the client's Bind, and the server skips to Sync as it would. A Bind of the
unnamed statement that came with its Parse is served in the Parse's takeover (one
batch: the input queries are described and run together), once the session knows
its role may execute the model functions (asked once per role: for a role that may
not, Postgres answers the Parse and fails the Bind, and so does mlproxy). If that
execution fails once the input queries have parsed (a parameter value Postgres
refuses, an error as they run), Postgres would have made the statement and failed
only the Bind: the client gets the ParseComplete before the error, and the Parse,
which the server skipped to Sync, goes upstream before the statement's next Bind or
Describe (`_parse_later`), in whatever transaction that is.

Why not at Parse, or on a connection of mlproxy's own: the inputs depend on the
parameters and on the data when the statement runs, and they must be read with the
client's role, snapshot, temporary tables and uncommitted rows.

The tables are named per statement text and stay for the session (emptied with
DELETE at each execution: a portal still open keeps seeing the rows of its own
snapshot), unless the transaction that made them fails or rolls back: a Bind makes
them again, and so does a Describe of the statement (`describe`). Cursor plans
(DECLARE) make them ON COMMIT DROP; the next execution makes them again, and
Postgres re-plans the prepared statement against the new tables.

Figures (pgbench, one client, 2000 transactions of `SELECT id FROM houses WHERE
id = :id AND predict_price(...) > 0`, proxy CPU from /proc, load average ~3.7):
-M prepared 0.62 ms of proxy CPU per transaction (1.2 ms latency), -M extended
0.77 ms; the call in the select list instead (streaming) 0.54 / 0.56 ms; no model
call 0.04 / 0.05 ms.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import errors, protocol as p
from ..errors import PgError
from ..framing import Frame
from ..intercept import Takeover
from ..ml_commands.upstream_ops import decode_data_row, error_from_fields, sql_literal
from . import small_batch
from .call_log import CALLS
from .pgfloat import pg_float_text
from .pgvalues import canonical_type
from .evaluate import (BoundModel, argument_columns, copy_data_messages, copy_rows, is_remote, predict,
                       typed_arguments)
from .extended_session import (Batch, BindValues, Outcome, fail, parse_message, relay_owed,
                               skip_to_sync)
from .rewrite import ArgColumn, ExplainPlan, GeneralPlan, InferenceStep
from .rows import DataRowBatch
from .tracked_relay import start_tracking
from .tracker import statement_error
from .workers import THREAD_MIN_ROWS

_ENSURE = "ensure"
_COPY = "copy"
_GRANTED = "granted"
_PARSE = "parse"


@dataclass
class Granted:
    """Whether the session's role may execute a statement's model functions, as the
    served Bind needs to know before its batch (see `prepare`): `sql`, an expression
    that says so without an error, and `cache`, the session's answers (only yes is
    kept; the interceptor empties it when a statement may change the role or a
    privilege)."""

    sql: str
    cache: dict[str, bool]


async def predicted_copy_off_loop(rows: list[bytes], step: InferenceStep, bound: BoundModel) -> bytes:
    """predicted_copy, on a worker thread when the run is long enough for the hand-off
    to pay (the streaming path's rule, workers.THREAD_MIN_ROWS): the event loop never
    computes a large batch of predictions or Shapley values itself. A remote model's
    rows wait for its endpoint: a few on the loop, awaited (remote.call_on_loop), more
    on a thread."""
    if is_remote(bound) and len(rows) <= small_batch.SMALL_BATCH:
        from .remote import call_on_loop

        return await call_on_loop(lambda: predicted_copy(rows, step, bound))
    if len(rows) >= THREAD_MIN_ROWS or is_remote(bound):
        return await asyncio.to_thread(predicted_copy, list(rows), step, bound)
    return predicted_copy(rows, step, bound)


def predicted_copy(rows: list[bytes], step: InferenceStep, bound: BoundModel) -> bytes:
    """COPY text rows (arguments, prediction) for a run of an input query's DataRows.
    A few rows (a single-row lookup) go per row in Python: the vectorized codec's
    fixed cost (about a millisecond) would dominate an execution."""
    if len(rows) <= small_batch.SMALL_BATCH:
        split = small_batch.split_rows(b"".join(rows))
        decoded = [small_batch.column(split, a.index, a.kind) for a in step.args]
        values = predict(bound, typed_arguments(decoded, step.args, bound.entry))
        return small_copy_rows(split, step.args, np.asarray(values), step.function.return_type)
    batch = DataRowBatch.from_frames(rows)
    values = predict(bound, argument_columns(batch, step.args, bound.entry))
    return copy_rows(batch, step.args, values, step.function.return_type)


_COPY_ESCAPES = {ord("\\"): "\\\\", ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}


def small_copy_rows(rows: list[list[bytes | None]], args: Sequence[ArgColumn], predictions: np.ndarray,
                    return_type: str) -> bytes:
    """evaluate.copy_rows for a few rows split by small_batch.split_rows: the same bytes."""
    encoded = _small_encode(predictions, return_type)
    lines = []
    for fields, prediction in zip(rows, encoded):
        cells = [fields[a.index] for a in args] + [prediction]
        lines.append("\t".join("\\N" if c is None else c.decode().translate(_COPY_ESCAPES) for c in cells))
    return "".join(line + "\n" for line in lines).encode()


_FLOAT_BITS = {"double precision": 64, "real": 32}


def _small_encode(values: np.ndarray, return_type: str) -> list[bytes | None]:
    """Text of a few predictions; floats one by one (the array path costs ~0.2 ms)."""
    bits = _FLOAT_BITS.get(canonical_type(return_type))
    if bits is None:
        return small_batch.encode(values, return_type, 0)
    # NaN is NULL, as encode_values has it
    return [None if v is None or v != v else pg_float_text(float(v), bits).encode() for v in values.tolist()]


def ensure_tables(steps: Sequence[InferenceStep], check: str | None) -> str | None:
    """A DO block that checks EXECUTE (`check`) and makes each step's table and
    lookup function exist, empty."""
    body = [f"PERFORM {check};"] if check else []
    for step in steps:
        create = " ".join(f"{sql};" for sql in step.create + step.index)
        body.append(f"IF to_regclass({sql_literal(step.table)}) IS NULL THEN {create} "
                    f"ELSE DELETE FROM {step.table}; END IF;")
    if not body:
        return None
    return "DO $mlproxy_do$BEGIN " + " ".join(body) + " END$mlproxy_do$"


@dataclass
class PreparedGeneral:
    """A client's prepared statement on the general path (tracker.StatementPlan):
    its Binds go to `interceptor` first; its results need no rewriting."""

    interceptor: object
    plan: GeneralPlan | ExplainPlan
    types: list[int]  # the parameter types the statement was prepared with
    check: str | None  # SQL that raises 42501 unless the role may execute the calls
    # False while the server has not had the statement's Parse, which mlproxy answered
    # (see _fill): it goes upstream before the statement's next Bind or Describe
    on_server: bool = True

    @property
    def fill(self) -> bool:
        """Does an execution need the predictions (EXPLAIN without ANALYZE does not)?"""
        return not isinstance(self.plan, ExplainPlan) or self.plan.analyze

    @property
    def notice(self) -> str | None:
        return self.plan.description if isinstance(self.plan, ExplainPlan) else None

    def learn_types(self, outcome: Outcome) -> None:
        """Unspecified parameter types: those Postgres gave the input queries."""
        for k, step in enumerate(self.plan.steps):
            for number, oid in zip(step.input.params, outcome.parameter_types.get(k, ())):
                if self.types[number - 1] == 0:
                    self.types[number - 1] = oid

    def bind(self, bind_body: bytes) -> tuple[bytes, None]:
        return bind_body, None

    def describe(self) -> None:
        return None


def client_error(plan: GeneralPlan | ExplainPlan, outcome: Outcome) -> PgError:
    """The error of one of mlproxy's commands as the client should see it."""
    err = outcome.error
    err.fields.pop("W", None)  # the context would show mlproxy's DO block
    tag = outcome.failed
    if isinstance(tag, int):  # a step's input query: the client's own expressions
        if err.position is not None:
            err.position = plan.map_position(err.position, tag)
        if err.sqlstate == errors.UNDEFINED_COLUMN and not err.hint:
            err.hint = plan.steps[tag].hint
        return err
    if tag == _PARSE:  # the client's statement, its calls replaced by lookups
        if err.position is not None:
            err.position = plan.map_position(err.position)
        return err
    err.position = None
    if isinstance(tag, tuple) and tag[0] == _COPY:
        return PgError(errors.INTERNAL_ERROR, f"mlproxy could not store predictions: {err.message}")
    return err


async def prepare(interceptor: object, frame: Frame, plan: GeneralPlan | ExplainPlan,
                  models: dict[tuple[int, str], BoundModel], check: str | None, takeover: Takeover,
                  granted: Granted | None = None) -> None:
    """A client's Parse of a general-path statement (see the module docstring).

    When the client's Bind of the unnamed statement has come with the Parse (drivers
    that do not prepare send Parse/Bind/Describe/Execute/Sync at once), that
    execution is served here too: its input queries are parsed, described and run
    in the same batch, saving a takeover and two round trips. (Not for a named
    statement: if that execution fails, the statement must exist all the same, as
    Postgres would have prepared it before the Bind failed. Nor for a role that may
    not execute the model functions (`granted`, asked once per role): Postgres
    answers its Parse and fails its Bind, so the Parse goes upstream first and the
    Bind fails in its own takeover, with the check before any prediction.)"""
    session = takeover.session
    parsed = p.decode_parse(frame.body)
    name, declared = parsed.name, list(parsed.types)
    if not await relay_owed(takeover):
        await skip_to_sync(takeover)  # Postgres ignores the Parse: so does mlproxy
        return
    types = declared + [0] * (len(plan.sql.params) - len(declared))
    prepared = PreparedGeneral(interceptor, plan, types, check)
    bind = takeover.peek_client() if not name else None
    values = _bind_values(bind) if bind is not None and bind.type == p.F_BIND else None
    if values is not None:  # (a Bind Postgres would refuse is left for it to answer)
        may = (values.statement == name and len(values.values) == len(types)
               and await _may_execute(granted, plan, takeover))
        if may is None:
            return  # the question failed: its error is the client's, and the server skips to Sync
        if may:
            await takeover.client_message()  # the Bind, served now
            if await _fill(prepared, models, values, takeover, parse=name):
                session.relay_frame(bind)
            return
    if await _describe_inputs(prepared, takeover):
        _forward_parse(name, prepared, takeover)


async def _describe_inputs(prepared: PreparedGeneral, takeover: Takeover) -> bool:
    """The statement's tables made, and its input queries parsed and described with
    the parameter types known so far: Postgres checks the calls as it would check
    the client's statement, and says which types the other parameters have. False:
    the client has the error, as its Parse's."""
    plan, types = prepared.plan, prepared.types
    batch = Batch()
    ensure = ensure_tables(plan.steps, None)
    if ensure is not None:
        batch.run(_ENSURE, ensure)
    for k, step in enumerate(plan.steps):
        batch.describe(k, str(step.input), [types[n - 1] for n in step.input.params])
    outcome = await batch.send(takeover) if batch else Outcome()
    if outcome.error is not None:
        await fail(takeover, client_error(plan, outcome), server_failed=True)
        return False
    prepared.learn_types(outcome)
    return True


async def _may_execute(granted: Granted | None, plan: GeneralPlan | ExplainPlan, takeover: Takeover) -> bool | None:
    """Whether the session's role may execute the model functions (always, with no
    check to make): asked in a batch of its own (no Sync: the client's pipeline and
    transaction go on) unless the session already knows it may. None when asking
    failed (the client has the error)."""
    if granted is None or granted.cache.get(granted.sql):
        return True
    batch = Batch()
    batch.run(_GRANTED, f"SELECT {granted.sql}")
    outcome = await batch.send(takeover)
    if outcome.error is not None:
        await fail(takeover, client_error(plan, outcome), server_failed=True)
        return None
    rows = outcome.rows.get(_GRANTED) or []
    yes = len(rows) == 1 and decode_data_row(rows[0][5:]) == ["t"]
    if yes:
        granted.cache[granted.sql] = True
    return yes


def _bind_values(frame: Frame) -> BindValues | None:
    """The client's Bind, or None if Postgres would refuse it: it then goes upstream
    as sent, for Postgres' own error (the statement there has the same parameters),
    after the ParseComplete of a Parse that came with it. Refused: a malformed
    message, or a parameter format code other than text (0) and binary (1) (22023
    "unsupported format code", exec_bind_message)."""
    try:
        values = BindValues.parse(frame.body)
    except p.MalformedMessage:
        return None
    return values if all(f == 0 or f == 1 for f in values.formats) else None


def _forward_parse(name: bytes, prepared: PreparedGeneral, takeover: Takeover) -> None:
    """The client's Parse, of the lookup form, under its name and typed."""
    plan = prepared.plan
    tracker = start_tracking(takeover.session)
    tracker.add_statement(name, prepared, map_position=plan.map_position)
    takeover.session.forward_request(parse_message(name, str(plan.sql), prepared.types))


def _parse_later(name: bytes, prepared: PreparedGeneral, takeover: Takeover) -> None:
    """The client's Parse of `name`, served with an execution that failed after the
    input queries parsed: Postgres would have made the statement, then failed the
    Bind. The client has the ParseComplete (the caller sends it); the server, which
    skipped to Sync, gets the Parse before the statement's next use
    (`_parse_upstream`). It replaces the session's statement of that name, as a
    Parse does."""
    prepared.on_server = False
    start_tracking(takeover.session).add_unsent_statement(name, prepared)


async def _parse_upstream(name: bytes, prepared: PreparedGeneral, takeover: Takeover) -> bool:
    """The Parse `_parse_later` kept, sent now, in the client's transaction: the
    tables made and the input queries described (the parameter types, as at a
    Parse), then the Parse itself, its ParseComplete mlproxy's. False: the client
    has the error (as this Bind's or Describe's; 25P02 in a failed block, where
    Postgres refuses both) and the session skips to Sync."""
    if not await _describe_inputs(prepared, takeover):
        return False
    batch = Batch()
    batch.prepare(_PARSE, name, str(prepared.plan.sql), prepared.types)
    outcome = await batch.send(takeover)
    if outcome.error is not None:
        await fail(takeover, client_error(prepared.plan, outcome), server_failed=True)
        return False
    prepared.on_server = True
    return True


async def execute(prepared: PreparedGeneral, models: dict[tuple[int, str], BoundModel] | PgError,
                  frame: Frame, takeover: Takeover) -> None:
    """A client's Bind of a general-path statement: the predictions for its
    parameters into the tables, then the Bind goes on. `models`: the calls' models
    as the registry has them now, or the error that they are not usable."""
    session = takeover.session
    if not await relay_owed(takeover):
        await skip_to_sync(takeover)
        return
    if isinstance(models, PgError):
        await fail(takeover, models)
        return
    if not prepared.on_server and not await _parse_upstream(p.bind_names(frame.body)[1], prepared, takeover):
        return
    values = _bind_values(frame)
    if values is None or len(values.values) != len(prepared.types):
        session.relay_frame(frame)  # Postgres reports the malformed Bind itself
        return
    if await _fill(prepared, models, values, takeover):
        session.relay_frame(frame)


async def describe(prepared: PreparedGeneral, frame: Frame, takeover: Takeover) -> None:
    """A client's Describe of a general-path statement: its tables made again first
    if they are gone. They were made in the client's transaction (at the Parse or an
    execution), and a transaction that failed or rolled back since took them; the
    statement stays, and Postgres, describing it, plans it again against tables that
    do not exist (42P01 where Postgres describes the client's own statement). Not in
    a failed block, where Postgres refuses to describe it anyway (25P02)."""
    session = takeover.session
    if not await relay_owed(takeover):
        await skip_to_sync(takeover)
        return
    if not prepared.on_server:  # (its tables made on the way)
        if await _parse_upstream(p.decode_target(frame.body)[1], prepared, takeover):
            session.relay_frame(frame)
        return
    ensure = ensure_tables(prepared.plan.steps, None)
    if ensure is not None and session.txstatus != b"E":
        batch = Batch()
        batch.run(_ENSURE, ensure)
        outcome = await batch.send(takeover)
        if outcome.error is not None:
            await fail(takeover, client_error(prepared.plan, outcome), server_failed=True)
            return
    session.relay_frame(frame)


async def _fill(prepared: PreparedGeneral, models: dict[tuple[int, str], BoundModel], values: BindValues,
                takeover: Takeover, *, parse: bytes | None = None) -> bool:
    """Predictions for one execution into the tables (the last COPY deferred: its
    replies come ahead of the client's). False: the client has its error and the
    session skips to Sync.

    `parse`: the client's Parse of the statement, under this name, came with this
    execution (`prepare`): the input queries run with the client's declared
    parameter types and say what the others are, and the Parse goes upstream, typed
    so, ahead of the last COPY. If the execution fails once the input queries have
    parsed, Postgres would have made the statement and failed the Bind: the client
    gets the ParseComplete before the error, and the server gets the Parse later
    (`_parse_later`). (A failure before a later step's input query has parsed is
    taken as the Bind's, not the Parse's.)"""
    plan = prepared.plan
    describe = parse is not None

    async def failed(err: PgError, *, parsed: bool, server_failed: bool = True) -> bool:
        if parse is not None and parsed:
            takeover.send_client(p.parse_complete())
            _parse_later(parse, prepared, takeover)
        await fail(takeover, err, server_failed=server_failed)
        return False

    started, predicted = time.perf_counter(), [0]
    if prepared.notice:
        takeover.send_client(p.notice_response(prepared.notice))
    batch = Batch()
    ensure = ensure_tables(plan.steps, prepared.check)
    if ensure is not None:
        batch.run(_ENSURE, ensure)
    failures: list[BaseException] = []
    copies: dict[object, list[bytes]] = {}

    async def on_rows(tag: object, rows: list[bytes]) -> None:
        if failures or not isinstance(tag, int):
            return
        step = plan.steps[tag]
        predicted[0] += len(rows)
        try:
            copies.setdefault(tag, []).append(await predicted_copy_off_loop(
                rows, step, models[(step.function.model_id, step.function.kind)]))
        except Exception as exc:  # noqa: BLE001 - this execution's error
            failures.append(exc)

    for k, step in enumerate(plan.steps if prepared.fill else ()):
        formats, params = values.select(step.input.params)
        batch.run(k, str(step.input), [prepared.types[n - 1] for n in step.input.params], formats, params,
                  describe=describe)
        outcome = await batch.send(takeover, on_rows)
        if outcome.error is not None:  # after its input query parsed, or a COPY's
            tag = outcome.failed
            return await failed(client_error(plan, outcome),
                                parsed=tag in outcome.parsed if isinstance(tag, int) else tag != _ENSURE)
        if failures:
            return await failed(statement_error(failures[0]), parsed=True, server_failed=False)
        prepared.learn_types(outcome)
        batch = Batch()
        data = b"".join(copies.pop(k, ()))
        if data:
            batch.run((_COPY, k), step.copy, copy_in=copy_data_messages(data))
    if describe and not prepared.fill:  # EXPLAIN: the types from a describe of the inputs
        for k, step in enumerate(plan.steps):
            batch.describe(k, str(step.input), [prepared.types[n - 1] for n in step.input.params])
        outcome = await batch.send(takeover)
        if outcome.error is not None:
            return await failed(client_error(plan, outcome), parsed=False)
        prepared.learn_types(outcome)
        batch = Batch()
    if parse is not None:
        _forward_parse(parse, prepared, takeover)
    if batch:

        def error(raw: bytes) -> bytes:
            failure = Outcome(error=error_from_fields(p.parse_fields(memoryview(raw)[5:])), failed=batch.first)
            return p.error_response(client_error(plan, failure))

        batch.defer(takeover, error)
    if prepared.fill:  # predictions made (the rows then pass through as Postgres sends them)
        CALLS.finished((b.entry.model_name for b in models.values()), predicted[0], started,
                       "general")
    return True
