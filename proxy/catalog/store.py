"""The proxy's service connections to the model catalog, one pool per database.

Clients' statements run on their own sessions; this store is for what the proxy does
on its own behalf: migrating the catalog, recording training progress and results,
and listening for model changes made through any proxy replica (LISTEN/NOTIFY).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from ..config import Upstream
from .schema import NOTIFY_CHANNEL, migrate

log = logging.getLogger("mlproxy.catalog")

Listener = Callable[[str, dict[str, Any]], Awaitable[None] | None]


class CatalogStore:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self._pools: dict[str, asyncpg.Pool] = {}
        self._listeners: dict[str, asyncpg.Connection] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._subscribers: list[Listener] = []
        self._migrated: set[str] = set()

    def subscribe(self, callback: Listener) -> None:
        """Call `callback(database, event)` for every catalog change notification."""
        self._subscribers.append(callback)

    def _connect_kwargs(self, database: str) -> dict[str, Any]:
        up = self.upstream
        kwargs: dict[str, Any] = dict(host=up.host, port=up.port, user=up.user,
                                      database=database, password=up.password)
        if not up.is_unix and up.sslmode != "disable":
            kwargs["ssl"] = up.sslmode
        return kwargs

    async def pool(self, database: str, *, migrate_catalog: bool = True) -> asyncpg.Pool:
        """The pool for `database`, created on first use, with the catalog created or
        migrated unless `migrate_catalog` is false (reading a database that may have
        no models must not create a schema in it)."""
        lock = self._opening.setdefault(database, asyncio.Lock())
        async with lock:
            pool = self._pools.get(database)
            if pool is None:
                kwargs = self._connect_kwargs(database)
                pool = await asyncpg.create_pool(min_size=1, max_size=3, **kwargs)
                listener = await asyncpg.connect(**kwargs)
                await listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
                self._pools[database] = pool
                self._listeners[database] = listener
            if migrate_catalog and database not in self._migrated:
                async with pool.acquire() as conn:
                    await migrate(conn)
                self._migrated.add(database)
                log.info("catalog ready database=%s", database)
            return pool

    async def fetch_models(self, database: str) -> list[asyncpg.Record]:
        """Every model of `database` (no artifacts); empty if it has no catalog."""
        pool = await self.pool(database, migrate_catalog=False)
        async with pool.acquire() as conn:
            if not await conn.fetchval("SELECT to_regclass('mlproxy.models') IS NOT NULL"):
                return []
            return await conn.fetch(
                "SELECT id, schema_name, model_name, function_schema, function_name,"
                " function_signature, arg_names, arg_types, return_type, state, failure_reason,"
                " problem_type, artifact_sha256 FROM mlproxy.models")

    def _on_notify(self, conn, pid, channel, payload) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            return
        database = next((db for db, c in self._listeners.items() if c is conn), None)
        if database is None:
            return
        for callback in self._subscribers:
            result = callback(database, event)
            if asyncio.iscoroutine(result):
                asyncio.ensure_future(result)

    async def fetchrow(self, database: str, sql: str, *args: Any) -> asyncpg.Record | None:
        pool = await self.pool(database)
        return await pool.fetchrow(sql, *args)

    async def fetch(self, database: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        pool = await self.pool(database)
        return await pool.fetch(sql, *args)

    async def execute(self, database: str, sql: str, *args: Any) -> str:
        pool = await self.pool(database)
        return await pool.execute(sql, *args)

    async def model(self, database: str, model_id: int) -> asyncpg.Record | None:
        return await self.fetchrow(database, "SELECT * FROM mlproxy.models WHERE id = $1", model_id)

    async def set_progress(self, database: str, model_id: int, progress: dict[str, Any],
                           job_owner: str) -> bool:
        """Record progress and a heartbeat; False when the model is gone (dropped)."""
        status = await self.execute(
            database,
            "UPDATE mlproxy.models SET progress = $2::jsonb, heartbeat = now(), job_owner = $3,"
            " updated_at = now() WHERE id = $1 AND state = 'TRAINING'",
            model_id, json.dumps(progress), job_owner)
        return status.endswith(" 1")

    async def mark_ready(self, database: str, model_id: int, result: dict[str, Any],
                         artifact: bytes) -> bool:
        status = await self.execute(
            database,
            """UPDATE mlproxy.models SET state = 'READY', failure_reason = NULL,
                   problem_type = $2, model_type = $3, objective = $4, metrics = $5::jsonb,
                   leaderboard = $6::jsonb, feature_importances = $7::jsonb, artifact = $8,
                   artifact_sha256 = $9, rows_used = $10, training_seconds = $11,
                   progress = $12::jsonb, explanations = $13::jsonb, heartbeat = now(), updated_at = now()
               WHERE id = $1 AND state = 'TRAINING'""",
            model_id, result["problem_type"], result["model_type"], result["objective"],
            json.dumps(result["metrics"]), json.dumps(result["leaderboard"]),
            json.dumps(result["feature_importances"]), artifact, result["artifact_sha256"],
            result["rows_used"], result["training_seconds"], json.dumps(result["progress"]),
            json.dumps(result.get("explanations")))
        if status.endswith(" 1"):
            await self.notify(database, {"event": "ready", "id": model_id})
            return True
        return False

    async def mark_failed(self, database: str, model_id: int, reason: str) -> bool:
        status = await self.execute(
            database,
            "UPDATE mlproxy.models SET state = 'FAILED', failure_reason = $2, updated_at = now(),"
            " heartbeat = now() WHERE id = $1 AND state = 'TRAINING'", model_id, reason)
        if status.endswith(" 1"):
            await self.notify(database, {"event": "failed", "id": model_id})
            return True
        return False

    async def notify(self, database: str, event: dict[str, Any]) -> None:
        await self.execute(database, "SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, json.dumps(event))

    async def databases_with_catalog(self) -> list[str]:
        """Databases of the upstream that hold a model catalog (for job recovery)."""
        conn = await asyncpg.connect(**self._connect_kwargs("postgres"))
        try:
            names = await conn.fetch(
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate")
        finally:
            await conn.close()
        found = []
        for row in names:
            try:
                conn = await asyncpg.connect(**self._connect_kwargs(row["datname"]))
            except (OSError, asyncpg.PostgresError):
                continue
            try:
                if await conn.fetchval("SELECT to_regclass('mlproxy.models') IS NOT NULL"):
                    found.append(row["datname"])
            finally:
                await conn.close()
        return found

    async def close(self) -> None:
        for conn in self._listeners.values():
            await conn.close()
        for pool in self._pools.values():
            await pool.close()
        self._listeners.clear()
        self._pools.clear()
