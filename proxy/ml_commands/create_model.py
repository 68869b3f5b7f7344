"""CREATE MODEL: describe and export the training data on the client's own session,
register the model (stub function + catalog row, atomically, as the client), and
hand the job to the training runner. Answers once the data is exported; training
goes on in the background, as in Redshift.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import uuid
from dataclasses import dataclass, replace
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .. import errors, protocol as p
from ..catalog.store import CatalogStore
from ..errors import PgError
from ..intercept import Takeover
from ..ml_statements import CreateModel, CreateRemoteModel, DropModel, ModelName, SourceQuery
from ..ml_statements import hyperparameters as hp
from ..ml_statements.literals import quote_identifier
from ..training.jobs import JobRunner
from ..training import precheck
from ..training.snapshot import JobDir, base_type, convert_csv, export_expression
from ..training.snapshot_store import SnapshotStore
from . import forecast_checks
from .upstream_ops import collect, error_from_fields, sql_literal, sql_text_array

log = logging.getLogger("mlproxy.ml")

# Redshift ML's defaults for the SETTINGS a statement leaves out.
DEFAULT_MAX_CELLS = 1_000_000
DEFAULT_MAX_RUNTIME = 5400  # seconds; the search stops earlier once scores stop improving
# mlproxy's own setting: at most this many feature columns unless SETTINGS (MAX_FEATURES n).
DEFAULT_MAX_FEATURES = 256
# Rows with a non-NULL target the trainer needs to train and validate a model
# (automl.validation.MIN_ROWS; tests/ml/test_early_errors.py holds them equal).
MIN_TRAINING_ROWS = 20
# Postgres' FUNC_MAX_ARGS as shipped; the server's own value is read when it matters.
PG_FUNC_MAX_ARGS = 100
# Target types the trainer cannot predict (dates and times are exported as Arrow
# date/timestamp columns, which it expands into features only).
_UNPREDICTABLE_TARGETS = ("date", "timestamp without time zone", "timestamp with time zone")

AUTOCOMMIT_HINT = ("Run CREATE MODEL outside BEGIN ... COMMIT, in autocommit mode: psql runs it so "
                   "by default (\\set AUTOCOMMIT on); JDBC: connection.setAutoCommit(true); psycopg: "
                   "conn.autocommit = True; SQLAlchemy: "
                   "engine.connect().execution_options(isolation_level=\"AUTOCOMMIT\").")

_WRAP_PREFIX = "SELECT * FROM ("
_WRITE_BATCH = 4 << 20


@dataclass
class MLServices:
    """What ML statements need besides the session: the catalog and the job runner."""

    catalog: CatalogStore
    jobs: JobRunner
    data_dir: Path
    # Awaited after a committed CREATE/DROP MODEL with the database's name: brings
    # the proxy's own model registry up to date (set by MLRuntime).
    models_changed: Callable[[str], Awaitable[object]] | None = None
    # Bring your own model: where FROM 'path' may read (None: nowhere), and how big
    # a model file may be.
    import_dir: Path | None = None
    import_urls: tuple[str, ...] = ()
    import_max_bytes: int = 256 << 20
    # The operator's inference endpoints (inference/remote.py): CREATE MODEL ...
    # SAGEMAKER names one of them.
    endpoints: Any = None


class _Abort(Exception):
    """Stop the statement; the error has been (or is) reported to the client."""

    def __init__(self, error: PgError | None) -> None:
        super().__init__(error.message if error else "aborted")
        self.error = error


async def create_model(services: MLServices, takeover: Takeover, stmt: CreateModel | CreateRemoteModel) -> bool:
    """Carry out CREATE MODEL (trained, imported, or remote); returns False after
    reporting an error to the client."""
    try:
        if isinstance(stmt, CreateRemoteModel):  # an inference endpoint's model
            from .remote_model import create_remote_model  # (it imports this module)

            await create_remote_model(services, takeover, stmt)
        elif stmt.imported:  # bring your own model: imported, not trained
            from .import_model import import_model  # (it imports this module)

            await import_model(services, takeover, stmt)
        else:
            await _create(services, takeover, stmt)
        return True
    except _Abort as abort:
        if abort.error is not None:
            takeover.send_client(p.error_response(abort.error))
        return False


async def begin_create(services: MLServices, takeover: Takeover, catalog_hint: str | None = None) -> str:
    """What every CREATE MODEL checks first: no transaction block around it, and the
    database's catalog reachable. Returns the database."""
    session = takeover.session
    if session.txstatus != b"I":
        raise _Abort(PgError(errors.ACTIVE_SQL_TRANSACTION,
                             "CREATE MODEL cannot run inside a transaction block", hint=AUTOCOMMIT_HINT))
    database = session.startup.database
    try:
        await services.catalog.pool(database)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the catalog
        raise _catalog_unavailable(database, exc, hint=catalog_hint) from exc
    return database


async def _create(services: MLServices, takeover: Takeover, stmt: CreateModel) -> None:
    database = await begin_create(services, takeover, catalog_hint="The proxy's service user needs "
                                  "CREATE on the database to create schema mlproxy.")

    source = _Source(stmt)
    columns, current_schema = await _describe(takeover, source)
    names = [c[0] for c in columns]
    types = [c[1] for c in columns]
    _check_unique(names, stmt)
    target = stmt.target
    if target is not None and target not in names:
        raise _Abort(PgError(errors.UNDEFINED_COLUMN,
                             f'column "{target}" does not exist in the training data',
                             position=stmt.positions.get("target"),
                             hint="Training data columns: " + ", ".join(names)))
    if stmt.function is None:  # MODEL_TYPE FORECAST: its stub takes no arguments
        await _forecast_checks(takeover, stmt, source, names, types)
        stmt = replace(stmt, function=forecast_checks.stub_function(stmt.name))
        features, feature_types = [], []
    else:
        if target is not None and base_type(types[names.index(target)]) in _UNPREDICTABLE_TARGETS:
            raise _Abort(PgError(errors.FEATURE_NOT_SUPPORTED,
                                 f'target column "{target}" has type {types[names.index(target)]}, '
                                 "which cannot be predicted", position=stmt.positions.get("target"),
                                 hint="Use a numeric, boolean or text target (a date can be a feature)."))
        features = [n for n in names if n != target]
        feature_types = [t for n, t in zip(names, types) if n != target]
    if not features and stmt.function.arg_types != ():
        raise _Abort(PgError(errors.INVALID_PARAMETER_VALUE,
                             "the training data has no feature columns besides the target",
                             position=stmt.positions.get("source")))
    await _check_feature_count(takeover, stmt, features)
    arg_types = list(stmt.function.arg_types) if stmt.function.arg_types is not None else feature_types
    if len(arg_types) != len(features):
        raise _Abort(PgError(
            errors.INVALID_PARAMETER_VALUE,
            f"FUNCTION {stmt.function.name.name} lists {len(arg_types)} argument types, but the "
            f"training data has {len(features)} feature columns ({', '.join(features)})",
            position=stmt.positions.get("function")))
    if stmt.function.returns is not None:  # (FORECAST's stub: double precision)
        return_type = stmt.function.returns
    elif target is None:
        return_type = "integer"  # KMEANS: the cluster id
    else:
        return_type = types[names.index(target)]

    model_schema = stmt.name.schema or current_schema
    if model_schema is None:
        raise _Abort(PgError(errors.INVALID_SCHEMA_NAME, "no schema has been selected to create in"))
    function_schema = stmt.function.name.schema or current_schema  # as CREATE FUNCTION's
    if function_schema is None:
        raise _Abort(PgError(errors.INVALID_SCHEMA_NAME, "no schema has been selected to create in"))
    await _check_allowed(services, takeover, stmt, database, model_schema, function_schema,
                         len(features), return_type)

    target_type = None if target is None else types[names.index(target)]
    loss = _xgboost_loss(stmt)
    counts = await _count(takeover, source, target, target_type, distinct=_needs_distinct(stmt, loss))
    is_forecast = stmt.options.get("model_type") == "FORECAST"
    # a forecast is never sampled (a sample would cut holes in its series) and has
    # its own data rules (forecast_checks.py, above)
    limit = max(1, counts.rows) if is_forecast else _row_limit(stmt, len(names))
    if not is_forecast:
        _check_training_data(stmt, counts, limit, len(names))
        _check_xgboost_objective(stmt, loss, counts, target_type)
    settings = stmt.options.get("settings", {})
    bucket = settings.get("s3_bucket")
    store = services.jobs.store
    try:  # a store the proxy cannot write to: said now, before any data is exported
        await asyncio.to_thread(store.check_writable, bucket)
    except OSError as exc:
        error = errors.file_error(exc, "write to the snapshot store", store.base_url(bucket))
        error.hint = "The proxy's --snapshot-store must be writable by the proxy's user."
        raise _Abort(error) from exc
    staging = JobDir(services.data_dir / "jobs" / "staging" / uuid.uuid4().hex)
    options = _train_options(stmt)
    try:
        rows, sampled = await _export(takeover, source, stmt, names, types, staging, counts.rows, limit)
        if not is_forecast:
            await _check_features(stmt, staging, names, types, features, rows)
        # The whole job is on disk before the model is registered: a snapshot that
        # cannot be written (read-only or full data directory) leaves no model behind.
        await _write_spec(staging, {
            "database": database, "model": stmt.name.name,
            "schema": model_schema, "options": options, "column_names": names,
            "column_types": types, "rows_exported": rows, "sampled": sampled,
            # S3_GARBAGE_COLLECT OFF: the snapshot stays in the store after training
            "garbage_collect": settings.get("s3_garbage_collect", True),
            "s3_bucket": bucket,
        })
        model_id = await _register(services, takeover, stmt, source, model_schema,
                                   function_schema, features, arg_types, return_type)
        job = services.jobs.job_dir(database, model_id)
        snapshot = store.url_for(database, model_id, bucket)
        try:
            await asyncio.to_thread(_promote, staging, job)
            await asyncio.to_thread(_publish, store, job, snapshot)
        except _Abort:  # the job cannot be put in place: undo the registration
            await _unregister(takeover, model_schema, stmt)
            await asyncio.to_thread(job.remove)
            raise
    except BaseException:
        await asyncio.to_thread(staging.remove)
        raise
    _notify_progress(services, takeover, database, model_id, stmt.name.name)
    try:
        await services.jobs.enqueue(database, model_id, snapshot)
    except Exception as exc:  # noqa: BLE001 - the recovery sweep queues it from the job directory
        log.warning("training job of model id=%s not queued yet: %s", model_id, exc)
    log.info("model created model=%s.%s id=%s rows=%s sampled=%s", model_schema,
             stmt.name.name, model_id, rows, sampled)
    note = f"model \"{stmt.name.name}\" is training in the background on {rows} rows"
    if sampled:
        note += f" (a sample within MAX_CELLS {options['max_cells']})"
    takeover.send_client(p.notice_response(note + f"; SHOW MODEL {stmt.name} reports its state"))
    takeover.send_client(p.command_complete("CREATE MODEL"))


def _catalog_unavailable(database: str, exc: BaseException, hint: str | None = None) -> _Abort:
    return _Abort(PgError(errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                          f"the model catalog of database \"{database}\" is not available: {exc}",
                          hint=hint))


class _Source:
    """The training query, and how error positions in it map to the client's text."""

    def __init__(self, stmt: CreateModel) -> None:
        self.is_query = isinstance(stmt.source, SourceQuery)
        self.sql = stmt.source.text if self.is_query else f"SELECT * FROM {stmt.source}"
        self.position = stmt.positions.get("source", 1)

    def wrapped(self, suffix: str = "") -> str:
        return f"{_WRAP_PREFIX}{self.sql}\n) AS mlproxy_source{suffix}"

    def map_position(self, pos: int, prefix_len: int = len(_WRAP_PREFIX)) -> int:
        index = pos - prefix_len - 1
        if self.is_query and 0 <= index < len(self.sql):
            return self.position + index
        return self.position

    def upstream_error(self, err: PgError | None, prefix_len: int = len(_WRAP_PREFIX)) -> _Abort:
        if err is not None and err.position is not None:
            err.position = self.map_position(err.position, prefix_len)
        return _Abort(err)


async def _describe(takeover: Takeover, source: _Source) -> tuple[list[tuple[str, str]], str | None]:
    """Column names and Postgres type names of the training query, and the
    session's current schema (where an unqualified model goes)."""
    result = await collect(takeover, source.wrapped(" LIMIT 0"))
    _relay_notices(takeover, result.notices)
    if result.error is not None:
        raise source.upstream_error(result.error)
    cols = result.columns
    oids = ", ".join(str(c[1]) for c in cols) or "0"
    mods = ", ".join(str(c[2]) for c in cols) or "0"
    info = await collect(
        takeover,
        "SELECT 0, current_schema()::text UNION ALL "
        "SELECT n, format_type(o, nullif(m, -1)) FROM unnest("
        f"ARRAY[{oids}]::oid[], ARRAY[{mods}]::int[]) WITH ORDINALITY AS u(o, m, n) ORDER BY 1")
    if info.error is not None:
        raise _Abort(info.error)
    schema = info.rows[0][1]
    type_names = [row[1] for row in info.rows[1:len(cols) + 1]]
    return [(c[0], t) for c, t in zip(cols, type_names)], schema


async def _forecast_checks(takeover: Takeover, stmt: CreateModel, source: _Source, names: list[str],
                           types: list[str]) -> None:
    """A FORECAST model's columns and data (forecast_checks.py)."""
    try:
        forecast_checks.check_columns(stmt, names, types)
        await forecast_checks.check_data(takeover, stmt, source.sql, names)
    except PgError as err:
        raise _Abort(err) from None


def _check_unique(names: list[str], stmt: CreateModel) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _Abort(PgError(errors.DUPLICATE_COLUMN, f'column "{name}" specified more than once in the training data',
                                 position=stmt.positions.get("source"),
                                 hint="Give every column of the FROM query a distinct name."))
        seen.add(name)


async def _check_feature_count(takeover: Takeover, stmt: CreateModel, features: list[str]) -> None:
    """At most MAX_FEATURES feature columns (256 unless raised), and no more than a
    function can take as arguments (Postgres' FUNC_MAX_ARGS, 100 as shipped)."""
    position = stmt.positions.get("source")
    limit = int(stmt.options.get("settings", {}).get("max_features", DEFAULT_MAX_FEATURES))
    if len(features) > limit:
        raise _Abort(PgError(errors.TOO_MANY_COLUMNS,
                             f"the training data has {len(features)} feature columns; at most {limit} are allowed",
                             position=position,
                             hint=f"Select fewer columns in FROM, or raise the limit with "
                                  f"SETTINGS (MAX_FEATURES {len(features)})."))
    if len(features) <= PG_FUNC_MAX_ARGS:
        return
    found = await collect(takeover, "SELECT current_setting('max_function_args')")
    if found.error is not None:
        raise _Abort(found.error)
    max_args = int(found.rows[0][0])
    if len(features) > max_args:
        raise _Abort(PgError(errors.TOO_MANY_ARGUMENTS, f"functions cannot have more than {max_args} arguments",
                             position=position,
                             detail=f"The model function takes one argument per feature column, and the "
                                    f"training data has {len(features)}.",
                             hint=f"Select at most {max_args} feature columns in FROM (Postgres' "
                                  "max_function_args, fixed when Postgres is built)."))


@dataclass
class _Counts:
    """What one pass over the training query tells before anything is exported."""

    rows: int
    target_rows: int | None = None      # rows with a non-NULL target (None: KMEANS)
    several_values: bool | None = None  # the target takes at least two values
    distinct: int | None = None         # distinct target values, when an objective needs them


async def _count(takeover: Takeover, source: _Source, target: str | None,
                 target_type: str | None, distinct: bool = False) -> _Counts:
    """Rows, non-NULL targets and whether the target varies, in one aggregate query
    on the client's session (Postgres does the scan; the event loop only waits)."""
    aggregates = "count(*)"
    if target is not None:
        assert target_type is not None
        # the target as it will be exported (NaN is NULL), compared as text byte by
        # byte (a nondeterministic collation's equal strings are two classes to train)
        value = (f"({export_expression(f'mlproxy_source.{quote_identifier(target)}', target_type)})::text "
                 'COLLATE "C"')
        aggregates += f", count({value}), min({value}) IS DISTINCT FROM max({value})"
        if distinct:
            aggregates += f", count(DISTINCT {value})"
    prefix = f"SELECT {aggregates} FROM ("
    counted = await collect(takeover, f"{prefix}{source.sql}\n) AS mlproxy_source")
    if counted.error is not None:
        raise source.upstream_error(counted.error, len(prefix))
    row = counted.rows[0]
    if target is None:
        return _Counts(int(row[0]))
    return _Counts(int(row[0]), int(row[1]), row[2] == "t", int(row[3]) if distinct else None)


_NUMERIC_TYPES = ("smallint", "integer", "bigint", "real", "double precision", "numeric", "decimal")


def _xgboost_loss(stmt: CreateModel) -> str | None:
    """The XGBoost objective MODEL_TYPE XGBOOST trains with, as the statement wrote it."""
    written = (stmt.options.get("given") or {}).get("objective")
    if stmt.options.get("model_type") != "XGBOOST" or not isinstance(written, str) or ":" not in written:
        return None
    return written.strip().lower()


def _needs_distinct(stmt: CreateModel, loss: str | None) -> bool:
    """Counting distinct targets costs a sort or hash of the target: only for the
    objectives whose classes must be checked."""
    return loss is not None and loss.startswith(("binary:", "multi:"))


def _check_xgboost_objective(stmt: CreateModel, loss: str | None, counts: _Counts, target_type: str | None) -> None:
    """An XGBoost objective that cannot fit the target, or a NUM_CLASS that does not
    match it, is 22023 now (the trainer checks the same, minutes later)."""
    if loss is None or stmt.target is None:
        return
    at = stmt.positions.get("target")
    num_class = stmt.options.get("hyperparameters", {}).get("num_class")
    if loss.startswith("reg:") and not (target_type or "").startswith(_NUMERIC_TYPES):
        raise _Abort(PgError(errors.INVALID_PARAMETER_VALUE,
                             f"OBJECTIVE '{loss}' is for REGRESSION, but target column \"{stmt.target}\" is "
                             f"{target_type}", position=at,
                             hint="Use binary:logistic, binary:hinge or multi:softmax for a class target."))
    if loss.startswith("binary:") and counts.distinct is not None and counts.distinct != 2:
        raise _Abort(PgError(errors.INVALID_PARAMETER_VALUE,
                             f"OBJECTIVE '{loss}' is for BINARY_CLASSIFICATION, but target column "
                             f"\"{stmt.target}\" has {counts.distinct} distinct values", position=at,
                             hint="Use multi:softmax for more classes, or a reg: objective for a numeric target."))
    if loss == "multi:softmax":
        if num_class is None:
            raise _Abort(PgError(errors.INVALID_PARAMETER_VALUE,
                                 "OBJECTIVE 'multi:softmax' needs the hyperparameter NUM_CLASS", position=at,
                                 hint=f"Add HYPERPARAMETERS DEFAULT EXCEPT (NUM_CLASS '{counts.distinct}')."))
        if counts.distinct is not None and num_class != counts.distinct:
            raise _Abort(PgError(errors.INVALID_PARAMETER_VALUE,
                                 f"NUM_CLASS is {num_class}, but target column \"{stmt.target}\" has "
                                 f"{counts.distinct} distinct values", position=at,
                                 hint=f"Give NUM_CLASS '{counts.distinct}'."))


def _row_limit(stmt: CreateModel, columns: int) -> int:
    """Rows exported at most: MAX_CELLS over the number of columns."""
    max_cells = int(stmt.options.get("settings", {}).get("max_cells", DEFAULT_MAX_CELLS))
    return max(1, max_cells // max(1, columns))


def _check_training_data(stmt: CreateModel, counts: _Counts, limit: int, columns: int) -> None:
    """Data no model can be trained and validated on is an error now, not a FAILED
    model later (22000 data_exception, as the trainer reports the same problems)."""
    source = stmt.positions.get("source")
    target_at = stmt.positions.get("target")
    if counts.rows == 0:
        raise _Abort(PgError(errors.DATA_EXCEPTION, "the training query returned no rows", position=source,
                             hint="CREATE MODEL trains on the rows FROM returns; check its table and WHERE clause."))
    if counts.target_rows == 0:
        raise _Abort(PgError(errors.DATA_EXCEPTION, f'target column "{stmt.target}" is NULL in every row',
                             position=target_at, hint="A model learns from rows whose target is known."))
    if counts.several_values is False:
        raise _Abort(PgError(errors.DATA_EXCEPTION,
                             f'target column "{stmt.target}" has the same value in every row',
                             position=target_at,
                             hint="A model needs at least two different target values to learn from."))
    usable = counts.rows if counts.target_rows is None else counts.target_rows
    what = "rows" if counts.target_rows is None else "rows with a non-NULL target"
    if min(usable, limit) < MIN_TRAINING_ROWS:
        hint = "Train on more rows."
        if limit < usable:
            hint = (f"MAX_CELLS allows only {limit} rows of {columns} columns; raise it to at least "
                    f"{MIN_TRAINING_ROWS * columns}.")
        raise _Abort(PgError(errors.DATA_EXCEPTION,
                             f"the training data has {min(usable, limit)} {what}; at least {MIN_TRAINING_ROWS} "
                             "are needed to train and validate a model",
                             position=source, hint=hint))
    k = stmt.options.get("hyperparameters", {}).get("k") if stmt.target is None else None
    if k is not None and k > min(usable, limit):
        raise _Abort(PgError(errors.DATA_EXCEPTION,
                             f"K {k} is more clusters than the {min(usable, limit)} rows of the training data",
                             position=source, hint="Choose a smaller K, or train on more rows."))


async def _check_features(stmt: CreateModel, staging: JobDir, names: list[str], types: list[str],
                          features: list[str], rows: int) -> None:
    """Convert the exported CSV to Parquet (work the worker would do) in a thread and
    put it to the trainer's rules (training/precheck.py): what it would refuse is
    the statement's error now, at the clause it is about. The conversion streams;
    the check sees all rows up to SAMPLE_CELLS cells, a uniform sample of that size
    beyond (what a training cluster's search sees), so the proxy's memory does not
    grow with MAX_CELLS."""
    from automl.partitioned import SAMPLE_CELLS

    keep = min(1.0, SAMPLE_CELLS / max(1, rows * len(names)))
    try:
        table = await asyncio.to_thread(convert_csv, staging, names, types, keep)
    except OSError as exc:  # a read-only or full data directory: the statement's error
        raise _Abort(errors.file_error(exc, "write file")) from exc
    except Exception:  # noqa: BLE001 - the worker converts (and reports) it then
        log.warning("training data not converted at CREATE MODEL model=%s", stmt.name, exc_info=True)
        return
    objection = await asyncio.to_thread(precheck.check, table, features, _train_options(stmt))
    if objection is not None:
        position = stmt.positions.get(objection.clause, stmt.positions.get("source"))
        raise _Abort(PgError(objection.sqlstate, objection.message, position=position,
                             detail=objection.detail, hint=objection.hint))


async def _export(takeover: Takeover, source: _Source, stmt: CreateModel, names: list[str],
                  types: list[str], staging: JobDir, total: int, limit: int) -> tuple[int, bool]:
    """COPY the training data (`total` rows, at most `limit` of them) into the
    staging directory; returns (rows, sampled)."""
    sampled = total > limit
    exprs = ", ".join(export_expression(f"mlproxy_source.{quote_identifier(n)}", t)
                      for n, t in zip(names, types))
    # A reproducible sample: rows ordered by a hash of their content.
    tail = f" ORDER BY md5(mlproxy_source::text) LIMIT {limit}" if sampled else ""
    copy_prefix = f"COPY (SELECT {exprs} FROM ("
    copy_sql = f"{copy_prefix}{source.sql}\n) AS mlproxy_source{tail}) TO STDOUT WITH (FORMAT csv)"
    try:
        await asyncio.to_thread(staging.path.mkdir, parents=True, exist_ok=True)
    except OSError as exc:
        raise _Abort(errors.file_error(exc, "create directory")) from exc
    try:
        handle = await asyncio.to_thread(open, staging.csv_file, "wb")
    except OSError as exc:
        raise _Abort(errors.file_error(exc, "create file")) from exc
    takeover.send_server(p.own_query(copy_sql))  # (the client's unnamed statement stays)
    error: PgError | None = None
    # A write that fails (full disk) ends the snapshot, not the session: the rest of
    # the COPY is read and dropped, so the session stays in step with its server.
    write_error: PgError | None = None
    rows = 0

    async def write(data: bytes) -> None:
        nonlocal write_error
        if write_error is None:
            try:
                await asyncio.to_thread(handle.write, data)
            except OSError as exc:
                write_error = errors.file_error(exc, "write to file", staging.csv_file)

    try:
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await takeover.server_message()
            t = msg.type
            if t == p.B_COPY_DATA:
                chunks.append(bytes(msg.body))
                size += len(msg.raw) - 5
                if size >= _WRITE_BATCH:
                    await write(b"".join(chunks))
                    chunks, size = [], 0
            elif t == p.B_COMMAND_COMPLETE:
                rows = int(bytes(msg.body).rstrip(b"\x00").split()[-1])
            elif t == p.B_ERROR:
                error = error_from_fields(p.parse_fields(msg.body))
            elif t == p.B_NOTICE:
                takeover.send_client(msg.raw)
            elif t == p.B_READY_FOR_QUERY:
                break
        if chunks:
            await write(b"".join(chunks))
    finally:
        try:
            await asyncio.to_thread(handle.close)  # flushes: may find the disk full
        except OSError as exc:
            write_error = write_error or errors.file_error(exc, "write to file", staging.csv_file)
    if error is not None:
        raise source.upstream_error(error, len(copy_prefix))
    if write_error is not None:
        raise _Abort(write_error)
    return rows, sampled


async def _write_spec(job: JobDir, spec: dict[str, Any]) -> None:
    try:
        await asyncio.to_thread(job.write_json, job.spec_file, spec)
    except OSError as exc:
        raise _Abort(errors.file_error(exc, "write file")) from exc


async def _check_allowed(services: MLServices, takeover: Takeover, stmt: CreateModel,
                         database: str, model_schema: str, function_schema: str, arity: int,
                         return_type: str) -> None:
    """What registration would refuse, said before the data is exported: the CREATE
    MODEL privilege and CREATE on the schemas (asked on the client's session, as the
    client), a taken model name (42710), a function name another model's function
    has with as many arguments (42723), a name too long for its _probabilities.
    A catalog it cannot read is the statement's error too."""
    try:
        await _refusals(services, takeover, stmt, database, model_schema, function_schema, arity,
                        return_type)
    except _Abort:
        raise
    except Exception as exc:  # noqa: BLE001 - the upstream went away, or the service login
        raise _catalog_unavailable(database, exc) from exc


async def _refusals(services: MLServices, takeover: Takeover, stmt: CreateModel, database: str,
                    model_schema: str, function_schema: str, arity: int, return_type: str) -> None:
    checked = await collect(takeover, "SELECT mlproxy.check_create_model(current_user, "
                            f"{sql_literal(model_schema)}, {sql_literal(function_schema)})")
    _relay_notices(takeover, checked.notices)
    if checked.error is not None:
        checked.error.position = stmt.positions.get("name")
        checked.error.fields.pop("W", None)
        raise _Abort(checked.error)
    await _check_names_free(services, stmt, database, model_schema, function_schema, arity, return_type)


async def _check_names_free(services: MLServices, stmt: CreateModel, database: str, model_schema: str,
                            function_schema: str, arity: int, return_type: str) -> None:
    """A taken model name (42710), or model function name (42723), read from the
    catalog on mlproxy's own connection."""
    exists = await services.catalog.fetchrow(
        database, "SELECT 1 FROM mlproxy.models WHERE schema_name = $1 AND model_name = $2",
        model_schema, stmt.name.name)
    if exists:
        raise _Abort(PgError(errors.DUPLICATE_OBJECT, f'model "{stmt.name.name}" already exists',
                             position=stmt.positions.get("name")))
    name = stmt.function.name.name
    probabilities = stmt.target is not None and return_type.split("(")[0] not in _FLOAT_TYPES
    names = [name, name + "_prob", name + "_probabilities"] if probabilities else [name]
    if len(names[-1].encode()) >= 64:
        raise _Abort(PgError(errors.NAME_TOO_LONG, f'model function name "{name}" is too long',
                             position=stmt.positions.get("function"),
                             hint="Classification models also get <function>_probabilities, "
                                  "which must fit in 63 bytes."))
    taken = await services.catalog.fetchrow(
        database,
        "SELECT function_name FROM mlproxy.model_function_names WHERE function_schema = $1"
        " AND nargs = $2 AND function_name = ANY ($3::text[]) LIMIT 1",
        function_schema, arity, names)
    if taken:
        raise _Abort(PgError(
            errors.DUPLICATE_FUNCTION, f"model function {quote_identifier(function_schema)}.{quote_identifier(taken[0])} "
                     f"with {arity} arguments already exists",
            position=stmt.positions.get("function"),
            hint="Choose another FUNCTION name: calls of model functions are told apart by "
                 "schema, name and number of arguments."))


_FLOAT_TYPES = ("double precision", "real", "numeric")


async def _register(services: MLServices, takeover: Takeover, stmt: CreateModel, source: _Source,
                    model_schema: str, function_schema: str, features: list[str],
                    arg_types: list[str], return_type: str) -> int:
    """The stubs (as the client) and the catalog row (written by record_model, as the
    service identity, after its checks), in one statement: nothing is half-written."""
    fn = stmt.function.name
    options = stmt.options
    # what SHOW MODEL echoes: the clauses as written, and the table trained from
    given = {key: value for key, value in options["given"].items() if value not in (None, [])}
    if not source.is_query:
        given["from_table"] = str(stmt.source)
    max_runtime = int(options.get("settings", {}).get("max_runtime", DEFAULT_MAX_RUNTIME))
    sql = ("SELECT mlproxy.register_model("
           f"{sql_literal(model_schema)}, {sql_literal(stmt.name.name)}, "
           f"{sql_literal(function_schema)}, {sql_literal(fn.name)}, "
           f"{sql_text_array(features)}, {sql_text_array(arg_types)}, {sql_literal(return_type)}, "
           f"{sql_literal(stmt.text)}, "
           f"{sql_literal(json.dumps({**options, 'given': given}, default=str))}::jsonb, "
           f"{sql_literal(source.sql)}, {sql_literal(stmt.target)}, {max_runtime}, "
           f"{sql_literal(services.jobs.instance)})")
    result = await collect(takeover, sql)
    _relay_notices(takeover, result.notices)
    if result.error is not None and result.error.sqlstate in (errors.UNIQUE_VIOLATION, errors.DUPLICATE_FUNCTION):
        # a CREATE MODEL of the same name or function in another session won the race
        # for the stubs (Postgres' own 23505 from pg_proc's index while it ran, or its
        # 42723 once it had committed): say which name, the model's first
        await _check_names_free(services, stmt, takeover.session.startup.database, model_schema,
                                function_schema, len(arg_types), return_type)
    if result.error is not None:
        if result.error.sqlstate == errors.DUPLICATE_OBJECT:
            result.error.position = stmt.positions.get("name")
        elif result.error.sqlstate in (errors.DUPLICATE_FUNCTION, errors.NAME_TOO_LONG):
            result.error.position = stmt.positions.get("function")
        else:
            result.error.position = None
        result.error.fields.pop("W", None)  # the PL/pgSQL lines of the catalog's functions
        raise _Abort(result.error)
    return int(result.rows[0][0])


def _promote(staging: JobDir, job: JobDir) -> None:
    try:
        job.path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _Abort(errors.file_error(exc, "create directory")) from exc
    if job.path.exists():  # a leftover of a dropped model with a reused id
        job.remove()
    try:
        os.replace(staging.path, job.path)
    except OSError as exc:
        raise _Abort(errors.file_error(exc, "rename file")) from exc


def _publish(store: SnapshotStore, job: JobDir, url: str) -> None:
    """Put the snapshot where every proxy can read it (--snapshot-store)."""
    try:
        store.publish(job, url)
    except OSError as exc:
        raise _Abort(errors.file_error(exc, "write to the snapshot store", url)) from exc


async def _unregister(takeover: Takeover, model_schema: str, stmt: CreateModel) -> None:
    """Drop the model just registered, as its creator (DROP MODEL's own statement),
    when its job could not be set up: nothing stays half-created."""
    from .interceptor import drop_sql  # (the interceptor imports this module)

    name = ModelName(model_schema, stmt.name.name)
    result = await collect(takeover, drop_sql(DropModel(name, False, text=f"DROP MODEL {name}")))
    if result.error is not None:
        log.error("model %s registered without its training job, and could not be dropped: %s",
                  name, result.error.message)


def _train_options(stmt: CreateModel) -> dict[str, Any]:
    """CREATE MODEL's canonical options -> automl.train's option mapping."""
    o = stmt.options
    settings = o.get("settings", {})
    preprocessors = o.get("preprocessors")
    forecast = {"forecast": o["forecast"]} if o.get("forecast") else {}  # FORECAST only (forecast_options.py)
    objective = o.get("objective")
    written = (o.get("given") or {}).get("objective")
    if isinstance(written, str) and ":" in written:
        objective = written.strip().lower()  # an XGBoost objective: the loss XGBOOST trains with
    model_type = o.get("model_type")
    table = {key: dataclasses.asdict(spec) for key, spec in hp.HYPERPARAMETERS.get(model_type or "", {}).items()}
    return {
        **forecast,
        "target": stmt.target,
        "problem_type": o.get("problem_type"),
        "objective": objective,
        "hyperparameter_table": table or None,
        "model_type": o.get("model_type"),
        "auto": o.get("auto", True),
        "hyperparameters": o.get("hyperparameters") or {},
        "preprocessors": preprocessors if isinstance(preprocessors, list) else None,
        "max_runtime": int(settings.get("max_runtime", DEFAULT_MAX_RUNTIME)),
        "max_cells": int(settings.get("max_cells", DEFAULT_MAX_CELLS)),
    }


def _relay_notices(takeover: Takeover, notices: list[bytes]) -> None:
    for notice in notices:
        takeover.send_client(notice)


def _notify_progress(services: MLServices, takeover: Takeover, database: str, model_id: int,
                     name: str) -> None:
    """Send training progress and the outcome as NOTICEs to the creating session,
    for as long as it stays connected."""
    session = takeover.session
    last: list[Any] = [None]

    def listener(kind: str, info: dict[str, Any]) -> None:
        if kind == "progress":
            trials = info.get("trials")
            key = (info.get("phase"), trials)
            if key == last[0]:
                return
            last[0] = key
            text = f"model \"{name}\": {info.get('phase', 'training')}"
            if trials:
                text += f", {trials} trials"
            if info.get("best_score") is not None:
                # the metric by its name: "best F1 0.5200", "best MSE 12.3000"
                text += f", best {info.get('objective') or 'score'} {float(info['best_score']):.4f}"
        elif kind == "ready":
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in (info.get("metrics") or {}).items()
                                if isinstance(v, (int, float)))
            text = (f"model \"{name}\" is READY: {info.get('model_type')} "
                    f"({info.get('problem_type')}); {metrics}")
        else:
            text = f"model \"{name}\" FAILED: {info.get('message')}"
        session.send_async(p.notice_response(text))

    services.jobs.listen(database, model_id, listener)
