"""CREATE MODEL ... SAGEMAKER 'endpoint'[:'model']: a model behind an inference endpoint.

Redshift's BYOM remote inference. The statement has no training data: FUNCTION with
its argument types and RETURNS (SUPER allowed) say what the endpoint takes and
gives; IAM_ROLE is accepted and ignored; SETTINGS takes MAX_BATCH_ROWS (rows per
request) and Redshift's S3_BUCKET, KMS_KEY_ID, TAGS, S3_GARBAGE_COLLECT (accepted,
meaningless here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxy.errors import INVALID_PARAMETER_VALUE, PgError

from .lexer import PUNCT, STRING
from .reader import TokenReader
from .literals import string_value
from .statements import CreateRemoteModel, ModelName

if TYPE_CHECKING:
    from .create_model import _CreateModelParser

_ALLOWED = ("sagemaker", "function", "iam_role", "settings")
_IGNORED_SETTINGS = ("s3_bucket", "kms_key_id", "tags", "s3_garbage_collect")
_MAX_BATCH_ROWS = 2**31 - 1


def sagemaker_clause(r: TokenReader) -> tuple[str, str | None]:
    """`'endpoint'[:'model_name']` after SAGEMAKER."""
    token = r.peek()
    if token.kind != STRING:
        raise r.error(token, "Expected a quoted endpoint name after SAGEMAKER.")
    endpoint = string_value(r.take(), r.offset, r.standard_conforming_strings)
    model = None
    if r.peek().kind == PUNCT and r.peek().text == ":":
        r.take()
        token = r.peek()
        if token.kind != STRING:
            raise r.error(token, "Expected a quoted model name after SAGEMAKER 'endpoint':.")
        model = string_value(r.take(), r.offset, r.standard_conforming_strings)
    if not endpoint:
        raise PgError(INVALID_PARAMETER_VALUE, "the SAGEMAKER endpoint name is empty", position=r.position(token))
    return endpoint, model or None


def remote_model(p: _CreateModelParser, name: ModelName) -> CreateRemoteModel:
    """The statement, once every clause is read (p: the CREATE MODEL parser)."""
    r = p.r
    for word, token in p.seen.items():
        if word not in _ALLOWED:
            raise r.error(token, f"CREATE MODEL ... SAGEMAKER takes no {word.upper()} "
                          "(a remote model is trained elsewhere): only FUNCTION, RETURNS, IAM_ROLE and SETTINGS.")
    end = r.peek()
    r.finish()
    function = p.function
    if function is None:
        raise r.error(end, "CREATE MODEL ... SAGEMAKER requires FUNCTION name (argument types) RETURNS type.")
    if function.arg_types is None or function.returns is None:
        raise PgError(INVALID_PARAMETER_VALUE,
                      f"FUNCTION {function.name.name} of a remote model needs its argument types and RETURNS",
                      position=p.positions.get("function"),
                      hint="The endpoint's inputs and output are not known to mlproxy: write "
                           "FUNCTION f (type, ...) RETURNS type.")
    if not function.arg_types:
        raise PgError(INVALID_PARAMETER_VALUE, f"FUNCTION {function.name.name} of a remote model needs at least "
                      "one argument", position=p.positions.get("function"),
                      hint="An endpoint is sent one CSV line of arguments per row.")
    assert p.endpoint is not None
    settings, given = _settings(p)
    options: dict[str, Any] = {
        "iam_role": None if p.raw.iam_role is None else p.raw.iam_role.value,
        "settings": settings,
        "given": given,
    }
    endpoint, target_model = p.endpoint
    return CreateRemoteModel(name=name, function=function, endpoint=endpoint, target_model=target_model,
                             options=options, text=r.sql, offset=r.offset, positions=p.positions)


def _settings(p: _CreateModelParser) -> tuple[dict[str, Any], dict[str, Any]]:
    settings: dict[str, Any] = {}
    for key, value in p.raw.settings:
        name = key.value.lower()
        if name in settings:
            raise PgError(INVALID_PARAMETER_VALUE, f"setting {name.upper()} is given more than once",
                          position=key.position)
        if name == "max_batch_rows":
            try:
                rows = int(value.value) if value.kind == "number" else None
            except ValueError:
                rows = None
            if rows is None or not 1 <= rows <= _MAX_BATCH_ROWS:
                raise PgError(INVALID_PARAMETER_VALUE, f"MAX_BATCH_ROWS must be an integer from 1 to "
                              f"{_MAX_BATCH_ROWS}, not {value.text}", position=value.position)
            settings[name] = rows
        elif name in _IGNORED_SETTINGS:
            settings[name] = value.value
        else:
            raise PgError(INVALID_PARAMETER_VALUE, f"unknown setting {key.text} for a remote model",
                          position=key.position,
                          hint="A remote model takes MAX_BATCH_ROWS (and S3_BUCKET, KMS_KEY_ID, TAGS, "
                               "S3_GARBAGE_COLLECT, which mean nothing here).")
    endpoint, target_model = p.endpoint if p.endpoint else (None, None)
    given: dict[str, Any] = {"sagemaker": endpoint}
    if target_model:
        given["target_model"] = target_model
    if "max_batch_rows" in settings:
        given["max_batch_rows"] = settings["max_batch_rows"]
    return settings, given
