"""The proxy's service connections to the model catalog, one pool per database.

Clients' statements run on their own sessions; this store is for what the proxy does
on its own behalf: migrating the catalog, recording training progress and results,
and listening for model changes made through any proxy replica (LISTEN/NOTIFY).

The upstream may go away and come back at any time: the pools replace connections
that died (and are expired when the LISTEN connection is lost), the LISTEN connection
of each database is re-established with backoff, and after it is, `on_resync`
callbacks re-read what they keep, since notifications sent meanwhile are lost. What
cannot reach the catalog raises CatalogUnavailable, within bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from ..config import Upstream
from .schema import NOTIFY_CHANNEL, migrate

log = logging.getLogger("mlproxy.catalog")

Listener = Callable[[str, dict[str, Any]], Awaitable[None] | None]
Resync = Callable[[str], Awaitable[object]]


#: Bounds on what a client session may wait for on the catalog: connecting, and any
#: one statement of the proxy's service connections.
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 30.0

#: Errors that mean the catalog cannot be reached (the upstream, or the way to it,
#: went away, is starting or stopping, or refuses the service identity), as opposed
#: to a statement that failed. The store does no file IO: any OSError is the network.
_UNREACHABLE = (OSError, TimeoutError, asyncpg.InterfaceError,
                asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
                asyncpg.TooManyConnectionsError, asyncpg.InvalidAuthorizationSpecificationError,
                asyncpg.InvalidPasswordError, asyncpg.InvalidCatalogNameError)


class CatalogUnavailable(Exception):
    """The catalog could not be reached; its text is the cause's. Whoever waits on
    the catalog (a training job's runner) waits for it to come back, rather than
    taking it for a failure of its own."""




class Backoff:
    """Capped exponential delays with jitter: a replica set that lost its upstream
    does not hammer it in step when it comes back."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def reset(self) -> None:
        self._next = self.first

    def delay(self) -> float:
        """The next delay: uniformly in [d/2, d] for d doubling up to the cap."""
        current = self._next
        self._next = min(self.cap, current * 2)
        return random.uniform(current / 2, current)


class CatalogStore:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self._pools: dict[str, asyncpg.Pool] = {}
        self._listeners: dict[str, asyncpg.Connection] = {}
        # One task per database keeps its LISTEN connection open, reconnecting after a loss.
        self._listening: dict[str, asyncio.Task] = {}
        # Set once the LISTEN connection of a database was up, or given up waiting for:
        # any later (re)connection may have missed notifications and resyncs.
        self._listen_ready: dict[str, asyncio.Event] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._subscribers: list[Listener] = []
        self._resync: list[Resync] = []
        self._migrated: set[str] = set()

    def subscribe(self, callback: Listener) -> None:
        """Call `callback(database, event)` for every catalog change notification."""
        self._subscribers.append(callback)

    def on_resync(self, callback: Resync) -> None:
        """Await `callback(database)` whenever the LISTEN connection of `database` is
        re-established: notifications sent while it was down are lost, so whatever
        the callback keeps from the catalog must be read afresh."""
        self._resync.append(callback)

    def _connect_kwargs(self, database: str) -> dict[str, Any]:
        up = self.upstream
        kwargs: dict[str, Any] = dict(host=up.host, port=up.port, user=up.user,
                                      database=database, password=up.password,
                                      timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT)
        if not up.is_unix and up.sslmode != "disable":
            kwargs["ssl"] = up.sslmode
        return kwargs

    @contextlib.contextmanager
    def _reaching(self):
        """Turns the errors of an unreachable catalog into CatalogUnavailable."""
        try:
            yield
        except _UNREACHABLE as exc:
            if isinstance(exc, OSError) and exc.strerror:
                cause = f"could not connect to {self.upstream.describe()}: {exc.strerror}"
            else:
                cause = str(exc) or type(exc).__name__
            raise CatalogUnavailable(cause) from exc

    async def pool(self, database: str, *, migrate_catalog: bool = True) -> asyncpg.Pool:
        """The pool for `database`, created on first use, with the catalog created or
        migrated unless `migrate_catalog` is false (reading a database that may have
        no models must not create a schema in it). Its LISTEN connection is kept
        open from then on (see `_listen_forever`). Raises (within CONNECT_TIMEOUT per
        attempt) when the upstream cannot be reached: the next call tries again."""
        lock = self._opening.setdefault(database, asyncio.Lock())
        async with lock:
            with self._reaching():
                return await self._open(database, migrate_catalog)

    async def _open(self, database: str, migrate_catalog: bool) -> asyncpg.Pool:
        pool = self._pools.get(database)
        if pool is None:
            pool = await asyncpg.create_pool(min_size=1, max_size=3,
                                             **self._connect_kwargs(database))
            self._pools[database] = pool
            self._listen_ready.setdefault(database, asyncio.Event())
            self._listening[database] = asyncio.ensure_future(self._listen_forever(database))
        ready = self._listen_ready[database]
        if not ready.is_set():
            # Wait for LISTEN before anyone reads the catalog through this pool,
            # so no change falls between a read and the first notification; if it
            # takes too long, its connection counts as a reconnection (resync).
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await ready.wait()
            except TimeoutError:
                ready.set()
        if migrate_catalog and database not in self._migrated:
            async with pool.acquire() as conn:
                await migrate(conn)
            self._migrated.add(database)
            log.info("catalog ready database=%s", database)
        return pool

    async def _listen_forever(self, database: str) -> None:
        """Keep a connection LISTENing on the catalog channel of `database`: when it is
        lost (asyncpg's termination listener: the upstream went away or ended it, or
        TCP keepalive gave up on a silent peer), reconnect with backoff; after every
        reconnection expire the pool's connections (they went with it) and tell the
        `on_resync` callbacks. Nothing but cancellation ends this task."""
        backoff = Backoff()
        ready = self._listen_ready[database]
        while True:
            try:
                up_since = await self._listen_once(database, ready)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever failed, try again later
                delay = backoff.delay()
                log.warning("catalog listener cannot connect database=%s (retrying in %.1f s): %s",
                            database, delay, describe_error(exc))
                await asyncio.sleep(delay)
                continue
            # a connection that stayed up a while starts the backoff afresh; one lost
            # at once (a flapping upstream) waits longer each time
            if asyncio.get_running_loop().time() - up_since > backoff.cap:
                backoff.reset()
            delay = backoff.delay()
            log.warning("catalog listener lost its connection database=%s: reconnecting "
                        "in %.1f s", database, delay)
            await self._expire_pool(database)
            await asyncio.sleep(delay)

    async def _listen_once(self, database: str, ready: asyncio.Event) -> float:
        """Connect, LISTEN, resync if this is a reconnection, and wait until the
        connection is lost; returns when it came up (loop time)."""
        conn = await asyncpg.connect(**self._connect_kwargs(database))
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn: lost.set())
            _keep_alive(conn)
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            self._listeners[database] = conn
            up_since = asyncio.get_running_loop().time()
            if ready.is_set():
                log.info("catalog listener reconnected database=%s: re-reading the catalog",
                         database)
                await self._expire_pool(database)
                await self._tell_resync(database)
            ready.set()
            await lost.wait()
            return up_since
        finally:
            if self._listeners.get(database) is conn:
                del self._listeners[database]
            if not conn.is_closed():
                conn.terminate()

    async def _expire_pool(self, database: str) -> None:
        pool = self._pools.get(database)
        if pool is not None:
            await pool.expire_connections()

    async def _tell_resync(self, database: str) -> None:
        for callback in self._resync:
            try:
                await callback(database)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the others still resync
                log.warning("catalog resync failed database=%s: %s", database, describe_error(exc))

    async def has_catalog(self, database: str) -> bool:
        """Whether `database` holds a model catalog (asking creates none)."""
        pool = await self.pool(database, migrate_catalog=False)
        with self._reaching():
            return await pool.fetchval("SELECT to_regclass('mlproxy.models') IS NOT NULL")

    async def fetch_models(self, database: str) -> list[asyncpg.Record]:
        """Every model of `database` with a model function (no artifacts, no
        FORECAST models); empty if it has no catalog."""
        pool = await self.pool(database, migrate_catalog=False)
        with self._reaching():
            async with pool.acquire() as conn:
                if not await conn.fetchval("SELECT to_regclass('mlproxy.models') IS NOT NULL"):
                    return []
                # explain_signature: catalog migration 7 (a catalog not yet migrated
                # reads as models without <function>_explain)
                explain = ("explain_signature" if await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'mlproxy.models'::regclass"
                    " AND attname = 'explain_signature' AND NOT attisdropped)") else "NULL::text")
                # endpoint: BYOM remote inference (catalog migration "remote")
                remote = ("endpoint, options -> 'given' ->> 'target_model' AS target_model,"
                          " (options -> 'settings' ->> 'max_batch_rows')::bigint AS max_batch_rows"
                          if await conn.fetchval(
                              "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'mlproxy.models'::regclass"
                              " AND attname = 'endpoint' AND NOT attisdropped)")
                          else "NULL::text AS endpoint, NULL::text AS target_model, NULL::bigint AS max_batch_rows")
                return await conn.fetch(
                    "SELECT id, schema_name, model_name, function_schema, function_name,"
                    " function_signature, arg_names, arg_types, return_type, state,"
                    " failure_reason, problem_type, artifact_sha256,"
                    f" {explain} AS explain_signature, {remote} FROM mlproxy.models"
                    # a FORECAST model's stub is no model function: read through FORECAST(m)
                    " WHERE options->>'model_type' IS DISTINCT FROM 'FORECAST'")

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
        with self._reaching():
            return await pool.fetchrow(sql, *args)

    async def fetch(self, database: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        pool = await self.pool(database)
        with self._reaching():
            return await pool.fetch(sql, *args)

    async def execute(self, database: str, sql: str, *args: Any) -> str:
        pool = await self.pool(database)
        with self._reaching():
            return await pool.execute(sql, *args)

    async def model(self, database: str, model_id: int) -> asyncpg.Record | None:
        return await self.fetchrow(database, "SELECT * FROM mlproxy.models WHERE id = $1", model_id)

    # -- the training job queue (catalog migration 9) ------------------------------
    async def enqueue_job(self, database: str, model_id: int, snapshot: str) -> None:
        """Put the job of a TRAINING model in the queue (its snapshot published), and
        wake the proxies that listen (a hint: they also look periodically)."""
        await self.execute(
            database,
            "INSERT INTO mlproxy.training_jobs (model_id, snapshot) VALUES ($1, $2)"
            " ON CONFLICT (model_id) DO NOTHING", model_id, snapshot)
        await self.notify(database, {"event": "queued", "id": model_id})

    async def claim_job(self, database: str, instance: str, lease: float,
                        prefixes: list[str]) -> asyncpg.Record | None:
        """The next queued job this proxy can read, leased to it for `lease` seconds:
        (job_model_id, job_snapshot, job_attempts, job_previous_owner), or None."""
        return await self.fetchrow(
            database, "SELECT * FROM mlproxy.claim_training_job($1, $2, $3::text[])",
            instance, lease, prefixes)

    async def announce(self, database: str, instance: str, prefixes: list[str]) -> None:
        await self.execute(database, "SELECT mlproxy.announce_training_proxy($1, $2::text[])",
                           instance, prefixes)

    async def renew_lease(self, database: str, model_id: int, instance: str, lease: float,
                          progress: dict[str, Any]) -> bool:
        """Renew this proxy's lease on a job and record its progress; False when the
        job is not this proxy's any more (taken over, dropped or finished)."""
        return bool(await self.fetchval(
            database, "SELECT mlproxy.renew_training_lease($1, $2, $3, $4::jsonb)",
            model_id, instance, lease, json.dumps(progress)))

    async def release_job(self, database: str, model_id: int, instance: str,
                          graceful: bool = False) -> None:
        """Give a job `instance` holds back to the queue at once (it cannot run it, or
        it died). A `graceful` give-back (a proxy shutting down) does not count as an
        interrupted attempt: rolling restarts of a fleet never fail a job."""
        await self.execute(
            database, "UPDATE mlproxy.training_jobs SET lease_until = NULL, claimed_by = NULL,"
            " attempts = CASE WHEN $3 THEN greatest(attempts - 1, 0) ELSE attempts END"
            " WHERE model_id = $1 AND claimed_by = $2", model_id, instance, graceful)
        await self.notify(database, {"event": "queued", "id": model_id})

    async def job_snapshot(self, database: str, model_id: int) -> str | None:
        return await self.fetchval(
            database, "SELECT snapshot FROM mlproxy.training_jobs WHERE model_id = $1", model_id)

    async def fail_unresumable(self, database: str, grace: float) -> list[int]:
        rows = await self.fetch(database, "SELECT * FROM mlproxy.fail_unresumable_jobs($1)", grace)
        return [r[0] for r in rows]

    async def fetchval(self, database: str, sql: str, *args: Any) -> Any:
        pool = await self.pool(database)
        with self._reaching():
            return await pool.fetchval(sql, *args)

    async def mark_ready(self, database: str, model_id: int, result: dict[str, Any],
                         artifact: bytes) -> bool:
        status = await self.execute(
            database,
            """WITH done AS (DELETE FROM mlproxy.training_jobs WHERE model_id = $1)
               UPDATE mlproxy.models SET state = 'READY', failure_reason = NULL,
                   problem_type = $2, model_type = $3, objective = $4, metrics = $5::jsonb,
                   leaderboard = $6::jsonb, feature_importances = $7::jsonb, artifact = $8,
                   artifact_sha256 = $9, rows_used = $10, training_seconds = $11,
                   progress = $12::jsonb, details = $13::jsonb, explanations = $14::jsonb,
                   heartbeat = now(), updated_at = now()
               WHERE id = $1 AND state = 'TRAINING'""",
            model_id, result["problem_type"], result["model_type"], result["objective"],
            json.dumps(result["metrics"]), json.dumps(result["leaderboard"]),
            json.dumps(result["feature_importances"]), artifact, result["artifact_sha256"],
            result["rows_used"], result["training_seconds"], json.dumps(result["progress"]),
            json.dumps(result.get("details")), json.dumps(result.get("explanations")))
        if status.endswith(" 1"):
            await self.notify(database, {"event": "ready", "id": model_id})
            return True
        return False

    async def mark_failed(self, database: str, model_id: int, reason: str) -> bool:
        status = await self.execute(
            database,
            "WITH done AS (DELETE FROM mlproxy.training_jobs WHERE model_id = $1)"
            " UPDATE mlproxy.models SET state = 'FAILED', failure_reason = $2, updated_at = now(),"
            " heartbeat = now() WHERE id = $1 AND state = 'TRAINING'", model_id, reason)
        if status.endswith(" 1"):
            await self.notify(database, {"event": "failed", "id": model_id})
            return True
        return False

    async def notify(self, database: str, event: dict[str, Any]) -> None:
        await self.execute(database, "SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, json.dumps(event))

    async def databases_with_catalog(self) -> list[str]:
        """Databases of the upstream that hold a model catalog (for job recovery)."""
        with self._reaching():
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
        for task in self._listening.values():
            task.cancel()
        await asyncio.gather(*self._listening.values(), return_exceptions=True)
        for conn in self._listeners.values():
            await conn.close()
        for pool in self._pools.values():
            await pool.close()
        self._listening.clear()
        self._listeners.clear()
        self._pools.clear()


def _keep_alive(conn: asyncpg.Connection) -> None:
    """TCP keepalive on a LISTEN connection, which otherwise only reads: a peer that
    vanished without a word (a host gone, a dropped route) is noticed in about a
    minute and the connection ends like any other lost one. Unix sockets need none."""
    transport = getattr(conn, "_transport", None)  # asyncpg exposes no public handle
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def describe_error(exc: BaseException) -> str:
    """An exception as a log line's cause: its type when its text says nothing."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
