"""Which model functions exist, per database, and their loaded predictors.

Every session consults the registry on every Query/Parse, so the hot part is
`DatabaseModels.mentions_call`: text that calls no function named like a model
function is forwarded without further thought. The registry is filled from the
catalog on first use of a database (without creating the catalog: a database with
no models costs one cheap query) and refreshed whenever any proxy replica changes a
model (LISTEN/NOTIFY through the catalog store).

Predictors are loaded on demand: the artifact comes from the catalog (verified
against its sha256), the native library from the local build cache (built in a
worker process if missing), and the result is kept in memory per artifact hash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog.store import CatalogStore
from ..ml_statements.literals import quote_identifier
from ..observe.stats import STATS

log = logging.getLogger("mlproxy.inference")


# A model's function names for its probabilities (kind "prob"): Redshift's
# `<function>_probabilities`, and `<function>_prob`, mlproxy's earlier name for it,
# kept as an alias with the same answer.
PROBABILITY_SUFFIXES = ("_probabilities", "_prob")
# A model's per-row Shapley values (kind "explain"), for models whose catalog row
# has an explain_signature (created after catalog migration 7).
EXPLAIN_SUFFIX = "_explain"


@dataclass(frozen=True)
class ModelEntry:
    """One model as the proxy needs it to recognise and evaluate its functions."""

    model_id: int
    schema: str
    model_name: str
    function_schema: str
    function_name: str
    function_signature: str
    arg_names: tuple[str, ...]
    arg_types: tuple[str, ...]
    return_type: str
    state: str
    failure_reason: str | None
    problem_type: str | None
    artifact_sha256: str | None
    explain_signature: str | None = None
    # a remote model (CREATE MODEL ... SAGEMAKER): its endpoint, the model of a
    # multi-model endpoint, rows per request (None: the default)
    endpoint: str | None = None
    target_model: str | None = None
    max_batch_rows: int | None = None


@dataclass
class DatabaseModels:
    """The models of one database, with the prefilter for their function names."""

    entries: dict[int, ModelEntry]
    by_function: dict[str, list[ModelEntry]]
    # Lower-cased UTF-8 names of every function the interceptor evaluates.
    names: frozenset[bytes]
    # Plans of statements seen, keyed by (text, search path): planning parses with
    # pglast and costs milliseconds, and drivers send the same statements again and
    # again. A reload of the models starts an empty cache.
    plans: dict[tuple[str, tuple[str, ...]], object] = field(default_factory=dict)

    @classmethod
    def build(cls, entries: list[ModelEntry]) -> "DatabaseModels":
        by_function: dict[str, list[ModelEntry]] = {}
        for entry in entries:
            by_function.setdefault(entry.function_name, []).append(entry)
            for suffix in PROBABILITY_SUFFIXES:
                by_function.setdefault(entry.function_name + suffix, []).append(entry)
            if entry.explain_signature is not None:
                by_function.setdefault(entry.function_name + EXPLAIN_SUFFIX, []).append(entry)
        names = frozenset(n.encode().lower() for n in (*by_function, "explain_model"))
        return cls({e.model_id: e for e in entries}, by_function, names)

    def mentions_call(self, sql: bytes) -> bool:
        """True if `sql` (a statement's bytes, any ASCII-compatible encoding) has an
        identifier named like one of our functions right before a "(" (after blanks
        or a closing quote), compared case-insensitively: no false negatives for
        calls; pglast decides the rest. Most statements have no "(" at all, and the
        rest few, so the cost follows the parentheses, not the number of models."""
        if b"(" not in sql:
            return False
        names = self.names
        for match in _CALL_REVERSED.finditer(sql[::-1]):
            if match.group(1)[::-1].lower() in names:
                return True
        return False


def function_signature(entry: ModelEntry, name: str) -> str:
    """`schema.name(argument types)` of one of the model's functions (`name`: the
    function's or its _probabilities'/_prob's), as regprocedure and has_function_privilege
    read it."""
    return f"{quote_identifier(entry.function_schema)}.{quote_identifier(name)}({', '.join(entry.arg_types)})"


# An identifier, optionally quoted, then blanks, then "(": written for the reversed
# statement, so the regex starts with a literal "(" and the engine jumps from one
# parenthesis to the next instead of trying a name at every position.
_CALL_REVERSED = re.compile(rb'\([ \t\n\r\f\v]*"?([A-Za-z0-9_$\x80-\xff]+)')


class ModelRegistry:
    def __init__(self, catalog: CatalogStore, cache_dir: Path, endpoints: Any = None) -> None:
        self.catalog = catalog
        self.endpoints = endpoints  # remote.Endpoints: the predictors of remote models call them
        self.cache_dir = Path(cache_dir)
        self._databases: dict[str, DatabaseModels] = {}
        self._loading: dict[str, asyncio.Task] = {}
        # Loads asked for while one runs: the running load's task does one more
        # afterwards, however many were asked for (a flood of notifications, which
        # any role can send, costs at most one load at a time, HINT_INTERVAL apart).
        self._again: set[str] = set()
        self._subscribers: list[Callable[[str], None]] = []
        self._predictors: dict[str, Any] = {}
        # per artifact hash, a linear model's Shapley background (1 x features), the
        # feature means EXPLAIN_MODEL's values are relative to (training details)
        self._backgrounds: dict[str, Any] = {}
        self._predictor_locks: dict[str, asyncio.Lock] = {}
        catalog.subscribe(self._on_catalog_event)

    # -- the per-query part -----------------------------------------------------------
    def models(self, database: str) -> DatabaseModels | None:
        """The loaded models of `database`, or None while they are being loaded."""
        models = self._databases.get(database)
        if models is None:
            self.load_soon(database)
        return models

    def subscribe(self, changed: Callable[[str], None]) -> None:
        """Call `changed(database)` after the models of `database` were (re)loaded."""
        self._subscribers.append(changed)

    def _publish(self, database: str, models: DatabaseModels) -> None:
        self._databases[database] = models
        for changed in self._subscribers:
            changed(database)

    def load_soon(self, database: str) -> None:
        if database not in self._loading:
            self._loading[database] = asyncio.ensure_future(self._load_until_current(database))

    async def reload(self, database: str) -> None:
        """Load the models of `database` afresh: a load already in flight may have
        read the catalog before the change the caller just committed, so the task
        in flight is asked for one more load, and that one is waited for."""
        in_flight = self._loading.get(database)
        if in_flight is None:
            await self.wait_loaded(database)
            return
        self._again.add(database)
        await asyncio.shield(in_flight)

    async def wait_loaded(self, database: str) -> DatabaseModels:
        """The models of `database` as the catalog has them now: joins a load in
        flight, or starts one (callers use it when what they hold may be stale)."""
        self.load_soon(database)
        task = self._loading[database]
        await asyncio.shield(task)
        return self._databases.get(database) or DatabaseModels.build([])

    # -- loading --------------------------------------------------------------------------
    HINT_INTERVAL = 0.2  # seconds between the loads that notifications ask for

    async def _load_until_current(self, database: str) -> None:
        """Load, then load again while more loads were asked for meanwhile."""
        try:
            while True:
                self._again.discard(database)
                await self._load(database)
                if database not in self._again:
                    return
                await asyncio.sleep(self.HINT_INTERVAL)
        finally:
            self._loading.pop(database, None)

    async def _load(self, database: str) -> None:
        try:
            rows = await self.catalog.fetch_models(database)
            entries = [ModelEntry(
                model_id=r["id"], schema=r["schema_name"], model_name=r["model_name"],
                function_schema=r["function_schema"], function_name=r["function_name"],
                function_signature=r["function_signature"], arg_names=tuple(r["arg_names"]),
                arg_types=tuple(r["arg_types"]), return_type=r["return_type"], state=r["state"],
                failure_reason=r["failure_reason"], problem_type=r["problem_type"],
                artifact_sha256=r["artifact_sha256"],
                explain_signature=r["explain_signature"], endpoint=r["endpoint"],
                target_model=r["target_model"], max_batch_rows=r["max_batch_rows"]) for r in rows]
            self._publish(database, DatabaseModels.build(entries))
            log.debug("model registry loaded database=%s models=%d", database, len(entries))
        except Exception as exc:  # noqa: BLE001 - no models is the safe reading
            log.warning("model registry could not load database=%s error=%s", database, exc)
            if database not in self._databases:
                self._publish(database, DatabaseModels.build([]))

    def _on_catalog_event(self, database: str, event: dict[str, Any]) -> None:
        """A notification is only a hint to read the catalog again (its content is
        not trusted: any role can send one); loads coalesce (see `_again`)."""
        if database in self._loading:
            self._again.add(database)
        elif database in self._databases:
            self.load_soon(database)

    # -- predictors -------------------------------------------------------------------
    async def predictor(self, database: str, entry: ModelEntry) -> Any:
        """The loaded predictor of a READY model (cached per artifact hash)."""
        if entry.endpoint is not None:
            return self._remote_predictor(entry)
        sha = entry.artifact_sha256
        assert sha is not None, "only READY models have predictors"
        cached = self._predictors.get(sha)
        if cached is not None:
            STATS.predictor_used(database, entry)
            return cached
        lock = self._predictor_locks.setdefault(sha, asyncio.Lock())
        async with lock:
            if sha in self._predictors:
                return self._predictors[sha]
            row = await self.catalog.fetchrow(
                database, "SELECT artifact, details -> 'shap_background' AS background"
                " FROM mlproxy.models WHERE id = $1 AND artifact_sha256 = $2",
                entry.model_id, sha)
            if row is None:
                raise LookupError(f"model {entry.model_name} has no stored artifact")
            started = time.perf_counter()
            predictor = await asyncio.to_thread(_load_predictor, bytes(row["artifact"]), sha,
                                                self.cache_dir)
            STATS.predictor_loaded(database, entry, getattr(predictor, "info", None),
                                   time.perf_counter() - started)
            background = row["background"]
            if isinstance(background, str):
                background = json.loads(background)
            self._backgrounds[sha] = np.asarray(background, dtype=np.float64)[None, :] if background else None
            self._predictors[sha] = predictor
            log.info("predictor loaded model=%s sha=%s info=%s", entry.model_name, sha[:12],
                     getattr(predictor, "info", None))
            return predictor

    def _remote_predictor(self, entry: ModelEntry) -> Any:
        """A remote model's predictor: cheap to make (the endpoint is resolved at each
        call), kept per model and endpoint."""
        from .remote import RemotePredictor

        if self.endpoints is None:
            raise LookupError("this proxy has no inference endpoints")
        self.endpoints.bind_loop()
        key = f"remote:{entry.model_id}:{entry.endpoint}:{entry.target_model}:{entry.max_batch_rows}"
        predictor = self._predictors.get(key)
        if predictor is None:
            predictor = self._predictors[key] = RemotePredictor(
                self.endpoints, entry.endpoint, entry.target_model, entry.arg_names, entry.return_type,
                entry.max_batch_rows)
        return predictor

    def shap_background(self, entry: ModelEntry) -> Any:
        """The background of a loaded model's per-row Shapley values (None: none stored)."""
        return self._backgrounds.get(entry.artifact_sha256 or "")


def _load_predictor(data: bytes, sha256: str, cache_dir: Path) -> Any:
    """Verify the artifact and load its predictor (blocking: runs in a thread; the
    native build, if still needed, runs in a compiler worker process)."""
    from compiler.artifact import load
    from compiler.predictor import load_predictor

    from .rows import warm_up

    predictor = load_predictor(load(data, expected_sha256=sha256), cache_dir)
    warm_up()
    return predictor
