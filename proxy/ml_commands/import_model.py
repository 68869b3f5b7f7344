"""CREATE MODEL of a model trained elsewhere (bring your own model, local).

`CREATE MODEL m FROM 'location' | ( query ) FUNCTION f (type, ...) RETURNS type`
reads the model file (model_bytes.py), has a worker process recognise, read and
check it against the declared function and turn it into the same artifact a trained
tree model has (compiler/importer.py), builds its native library (compiler.build,
in its own process), and only then registers it as CREATE MODEL registers a trained
model: the stubs as the client and the catalog row (register_model, on the client's
session), READY at once. Anything refused before registration leaves nothing
behind; a failure to store the artifact after it drops the model again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import errors, protocol as p
from ..errors import PgError
from ..intercept import Takeover
from ..ml_statements import CreateModel, ModelLocation
from .create_model import (MLServices, _Abort, _check_allowed, begin_create,
                           _describe, _register, _relay_notices, _Source, _unregister)
from .model_bytes import bytea_query, bytea_rows, read_path, read_url
from .upstream_ops import collect

log = logging.getLogger("mlproxy.ml")

#: how long the import worker may take to read and check a model
IMPORT_TIMEOUT = 600.0
#: what the catalog stores as an imported model's "target": not NULL, so that a
#: classifier gets <function>_probabilities (and every model <function>_explain),
#: as a trained one does; SHOW MODEL shows it as an empty Target Column
IMPORTED_TARGET = ""
_BYTEA = "bytea"


@dataclass
class _Origin:
    """Stands for the training source in the registration: the location as written
    (the catalog's source query, shown to the model's owner only)."""

    sql: str
    is_query: bool = True


async def import_model(services: MLServices, takeover: Takeover, stmt: CreateModel) -> None:
    """Carry out an importing CREATE MODEL; raises _Abort with the statement's error."""
    database = await begin_create(services, takeover)
    assert stmt.function is not None and stmt.function.arg_types is not None and stmt.function.returns
    stmt = replace(stmt, target=IMPORTED_TARGET)
    arg_types = list(stmt.function.arg_types)
    return_type = stmt.function.returns
    schema = await _current_schema(takeover)
    model_schema = stmt.name.schema or schema
    function_schema = stmt.function.name.schema or schema
    if model_schema is None or function_schema is None:
        raise _Abort(PgError(errors.INVALID_SCHEMA_NAME, "no schema has been selected to create in"))
    await _check_allowed(services, takeover, stmt, database, model_schema, function_schema,
                         len(arg_types), return_type)

    started = time.monotonic()
    data, origin = await _model_bytes(services, takeover, stmt)
    info, artifact = await _import(services, stmt, data, arg_types, return_type)
    del data
    build = await _build(services, artifact)
    options = {**stmt.options, "imported": {k: info["summary"][k] for k in ("format", "family", "trees",
                                                                              "features", "classes")}}
    model_id = await _register(services, takeover, replace(stmt, options=options), _Origin(origin),
                               model_schema, function_schema, info["arg_names"], arg_types, return_type)
    try:
        stored = await services.catalog.mark_ready(database, model_id, _result(info, artifact.sha256, build,
                                                                                time.monotonic() - started),
                                                   artifact.data)
    except Exception as exc:  # noqa: BLE001 - the catalog went away: nothing may stay half-made
        log.warning("imported model %s not stored: %s", stmt.name, exc)
        stored = False
    if not stored:
        await _unregister(takeover, model_schema, stmt)
        raise _Abort(PgError(errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                             f"the imported model \"{stmt.name.name}\" could not be stored in the catalog",
                             hint="Try again; the model was not created."))
    summary = info["summary"]
    log.info("model imported model=%s.%s id=%s format=%s trees=%s", model_schema, stmt.name.name, model_id,
             summary["format"], summary["trees"])
    takeover.send_client(p.notice_response(
        f"model \"{stmt.name.name}\" imported and READY: {summary['format']}, {summary['trees']} trees, "
        f"{summary['features']} features, {info['problem_type']}"))
    takeover.send_client(p.command_complete("CREATE MODEL"))


async def _current_schema(takeover: Takeover) -> str | None:
    found = await collect(takeover, "SELECT pg_catalog.current_schema()::text")
    if found.error is not None:
        raise _Abort(found.error)
    return found.rows[0][0] if found.rows else None


async def _model_bytes(services: MLServices, takeover: Takeover, stmt: CreateModel) -> tuple[bytes, str]:
    """The model file's bytes, and the location as the catalog records it."""
    limit = services.import_max_bytes
    position = stmt.positions.get("source")
    source = stmt.source
    try:
        if isinstance(source, ModelLocation):
            origin = f"'{source.text}'"
            if source.kind == "url":
                return await read_url(source.text, services.import_urls, limit, position), origin
            return await read_path(source.text, services.import_dir, limit, position), origin
    except PgError as err:
        raise _Abort(err) from None
    # FROM ( query ): one bytea value, read on the client's session with its privileges
    query = _Source(stmt)
    columns, _ = await _describe(takeover, query)
    if len(columns) != 1 or columns[0][1] != _BYTEA:
        shape = ", ".join(f"{name} {type_}" for name, type_ in columns) or "no columns"
        raise _Abort(PgError(errors.INVALID_PARAMETER_VALUE,
                             f"the model query must return one bytea column; it returns {shape}",
                             position=position,
                             hint="FROM ( query ) imports the model file the query returns as its one bytea "
                                  "value; a training statement needs TARGET."))
    sql = bytea_query(query.sql, limit)
    result = await collect(takeover, sql)
    _relay_notices(takeover, result.notices)
    if result.error is not None:
        raise query.upstream_error(result.error, sql.index("FROM (") + len("FROM ("))
    try:
        return bytea_rows(result.rows, limit, position), query.sql
    except PgError as err:
        raise _Abort(err) from None


async def _import(services: MLServices, stmt: CreateModel, data: bytes, arg_types: list[str],
                  return_type: str) -> tuple[dict[str, Any], Any]:
    """Read and check the model in a worker process; (its description, the artifact)."""
    from compiler.artifact import load
    from compiler.errors import CompilerError

    work = services.data_dir / "imports" / uuid.uuid4().hex
    try:
        await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    except OSError as exc:
        raise _Abort(errors.file_error(exc, "create directory")) from exc
    try:
        info = await _run_importer(data, {"arg_types": arg_types, "return_type": return_type},
                                   services.import_max_bytes, work / "artifact.bin")
        if "error" in info:
            clause = "function" if info.get("clause") == "function" else "source"
            raise _Abort(PgError(info.get("sqlstate") or errors.INTERNAL_ERROR, info["error"],
                                 hint=info.get("hint"), position=stmt.positions.get(clause)))
        raw = await asyncio.to_thread((work / "artifact.bin").read_bytes)
        try:
            artifact = await asyncio.to_thread(load, raw, info["sha256"])
        except CompilerError as exc:
            raise _Abort(PgError(exc.sqlstate, exc.message)) from exc
        return info, artifact
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


async def _run_importer(data: bytes, declared: dict[str, Any], limit: int, out: Path) -> dict[str, Any]:
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(x for x in (package_root, env.get("PYTHONPATH")) if x)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "compiler.importer", "--declared", json.dumps(declared),
        "--max-bytes", str(limit), "--out", str(out),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env, cwd=package_root)
    try:
        async with asyncio.timeout(IMPORT_TIMEOUT):
            stdout, stderr = await proc.communicate(data)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise _Abort(PgError(errors.QUERY_CANCELED,
                             f"reading the model took longer than {IMPORT_TIMEOUT:g} s and was stopped")) from None
    except BaseException:  # cancelled (the client went away): no worker stays behind
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    for line in reversed(stdout.decode(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    log.warning("model import worker failed status=%s: %s", proc.returncode,
                stderr.decode(errors="replace")[-2000:])
    return {"error": f"the model could not be read: the import worker ended with status {proc.returncode}",
            "sqlstate": "XX001" if proc.returncode and proc.returncode < 0 else errors.INTERNAL_ERROR,
            "hint": "The file may be damaged or not a model mlproxy reads."}


async def _build(services: MLServices, artifact: Any) -> dict[str, Any]:
    """The native library, as a trained model gets it; Treelite's interpreter when
    it cannot be built (as for trained models: slower, same answers)."""
    from compiler.build import submit_build
    from compiler.errors import BuildError

    started = time.monotonic()
    try:
        library = await asyncio.wrap_future(submit_build(artifact, services.jobs.cache_dir))
    except BuildError as exc:
        log.warning("imported model's library not built: %s", exc)
        return {"backend": "gtil", "build_error": str(exc)}
    return {"backend": "native", "library": str(library), "build_seconds": round(time.monotonic() - started, 3)}


def _result(info: dict[str, Any], sha256: str, build: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The catalog's READY fields of an imported model (CatalogStore.mark_ready)."""
    summary = info["summary"]
    objective = info.get("objective") or None
    line = (f"imported, not trained by mlproxy: {summary['format']} ({summary['family']}), "
            f"{summary['trees']} trees, {summary['features']} features"
            + (f", objective {objective}" if objective else "")
            + (f", {summary['classes']} classes" if summary.get("classes") else "")
            + f"; read and compiled in {seconds:.1f} s")
    return {
        "problem_type": info["problem_type"], "model_type": info["model_type"], "objective": objective,
        "metrics": {}, "leaderboard": [], "feature_importances": None, "rows_used": None,
        "training_seconds": None, "artifact_sha256": sha256,
        "progress": {"phase": "imported", "elapsed": round(seconds, 3)},
        "details": {"imported": summary, "report": [line], "build": build,
                    "preprocessing": {name: "numeric, NULL as the model's missing value"
                                      for name in info["arg_names"]}},
        "explanations": None,
    }
