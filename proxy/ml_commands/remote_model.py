"""CREATE MODEL ... SAGEMAKER: register a model served by an inference endpoint.

Nothing is trained or exported: the endpoint must be one the operator configured
(or a URL, if the operator allows them), the privileges and names are checked as
for any CREATE MODEL, and one statement on the client's session makes the stubs
(owned by the client, private) and the catalog row, READY with its endpoint
(catalog function register_remote_model).
"""

from __future__ import annotations

import json
import logging

from .. import errors, protocol as p
from ..errors import PgError
from ..inference.remote import EndpointError, return_type_of
from ..intercept import Takeover
from ..ml_statements import CreateRemoteModel
from .create_model import MLServices, _Abort, _check_allowed, _relay_notices, begin_create
from .upstream_ops import collect, sql_literal, sql_text_array

log = logging.getLogger("mlproxy.ml")


async def create_remote_model(services: MLServices, takeover: Takeover, stmt: CreateRemoteModel) -> None:
    """Carry out CREATE MODEL ... SAGEMAKER; raises _Abort with the statement's error
    (create_model.create_model reports it)."""
    database = await begin_create(services, takeover)
    position = stmt.positions.get("sagemaker")
    if services.endpoints is None:
        raise _Abort(PgError(errors.FEATURE_NOT_SUPPORTED, "this proxy has no inference endpoints",
                             position=position))
    try:
        services.endpoints.resolve(stmt.endpoint)
    except EndpointError as exc:
        raise _Abort(PgError(exc.sqlstate, exc.message, hint=exc.hint, position=position)) from None
    try:
        return_type = return_type_of(stmt.function.returns)
    except PgError as err:
        err.position = stmt.positions.get("function")
        raise _Abort(err) from None
    found = await collect(takeover, "SELECT current_schema()::text")
    if found.error is not None:
        raise _Abort(found.error)
    current_schema = found.rows[0][0]
    model_schema = stmt.name.schema or current_schema
    function_schema = stmt.function.name.schema or current_schema
    if model_schema is None or function_schema is None:
        raise _Abort(PgError(errors.INVALID_SCHEMA_NAME, "no schema has been selected to create in"))
    arg_types = list(stmt.function.arg_types or ())
    await _check_allowed(services, takeover, stmt, database, model_schema, function_schema,
                         len(arg_types), return_type)
    # the endpoint takes its inputs by position: the stub's arguments are named so
    arg_names = [f"arg{i}" for i in range(1, len(arg_types) + 1)]
    sql = ("SELECT mlproxy.register_remote_model("
           f"{sql_literal(model_schema)}, {sql_literal(stmt.name.name)}, "
           f"{sql_literal(function_schema)}, {sql_literal(stmt.function.name.name)}, "
           f"{sql_text_array(arg_names)}, {sql_text_array(arg_types)}, {sql_literal(return_type)}, "
           f"{sql_literal(stmt.text)}, {sql_literal(json.dumps(stmt.options, default=str))}::jsonb, "
           f"{sql_literal(stmt.endpoint)})")
    result = await collect(takeover, sql)
    _relay_notices(takeover, result.notices)
    if result.error is not None:
        err = result.error
        if err.sqlstate == errors.DUPLICATE_OBJECT:
            err.position = stmt.positions.get("name")
        elif err.sqlstate in (errors.DUPLICATE_FUNCTION, errors.NAME_TOO_LONG, errors.UNDEFINED_OBJECT):
            err.position = stmt.positions.get("function")
        else:
            err.position = None
        err.fields.pop("W", None)
        raise _Abort(err)
    log.info("remote model created model=%s.%s id=%s endpoint=%s", model_schema, stmt.name.name,
             result.rows[0][0], stmt.endpoint)
    takeover.send_client(p.command_complete("CREATE MODEL"))
