"""Running training jobs in worker processes, and recording their outcome.

The event loop never trains: each job runs `python -m proxy.training.worker` in its
own process (at most `workers` at once), so a job can be killed when its model is
dropped, and a crash in native code cannot take the proxy down. The runner polls the
job's progress file, writes progress and a heartbeat to the catalog, and stores the
result (READY) or the reason (FAILED) when the process ends.

Jobs survive restarts: the job directory keeps the snapshot until the outcome is
stored; `recover()` resumes interrupted jobs whose snapshot this proxy has, stores
finished ones, and fails (with the reason) jobs that no proxy has heartbeated for
`orphan_after` seconds, so no model stays TRAINING forever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import errors
from ..catalog.store import Backoff, CatalogStore, CatalogUnavailable, describe_error
from .snapshot import JobDir
from .worker import PARENT_ENV

log = logging.getLogger("mlproxy.training")

ProgressListener = Callable[[str, dict[str, Any]], None]


class JobRunner:
    def __init__(self, catalog: CatalogStore, data_dir: Path, cache_dir: Path, *,
                 workers: int = 1, poll_interval: float = 1.0, orphan_after: float = 300.0,
                 worker_threads: int | None = None) -> None:
        self.catalog = catalog
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir)
        self.workers = max(1, workers)
        self.poll_interval = poll_interval
        self.orphan_after = orphan_after
        self.worker_threads = worker_threads
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self._slots = asyncio.Semaphore(self.workers)
        self._retired: list[asyncio.Task] = []  # slots taken out by set_workers
        self._tasks: dict[tuple[str, int], asyncio.Task] = {}
        self._procs: dict[tuple[str, int], asyncio.subprocess.Process] = {}
        self._listeners: dict[tuple[str, int], list[ProgressListener]] = {}
        self._drop_checks: set[tuple[str, int]] = set()
        catalog.subscribe(self._on_catalog_event)

    # -- public ---------------------------------------------------------------------
    def job_dir(self, database: str, model_id: int) -> JobDir:
        return JobDir.for_model(self.data_dir, database, model_id)

    def submit(self, database: str, model_id: int) -> None:
        key = (database, model_id)
        if key in self._tasks:
            return
        task = asyncio.ensure_future(self._run(database, model_id))
        self._tasks[key] = task
        task.add_done_callback(lambda _t, key=key: self._tasks.pop(key, None))

    def set_workers(self, workers: int) -> None:
        """Run at most `workers` jobs at once from now on (SIGHUP): running jobs go on;
        a slot given up is taken out as soon as its job ends."""
        workers = max(1, workers)
        for _ in range(workers - self.workers):
            retired = self._retired.pop() if self._retired else None
            if retired is not None and not retired.done():
                retired.cancel()  # still waiting to take its slot out: it never will
            else:
                self._slots.release()
        for _ in range(self.workers - workers):
            self._retired.append(asyncio.ensure_future(self._slots.acquire()))
        self.workers = workers

    def listen(self, database: str, model_id: int, listener: ProgressListener) -> None:
        """Tell `listener(kind, info)` about progress ("progress") and the outcome
        ("ready" / "failed") of one job (for NOTICEs to the creating session)."""
        self._listeners.setdefault((database, model_id), []).append(listener)

    def cancel(self, database: str, model_id: int) -> None:
        proc = self._procs.get((database, model_id))
        if proc is not None and proc.returncode is None:
            proc.kill()
        task = self._tasks.get((database, model_id))
        if task is not None and proc is None:
            task.cancel()

    async def recover(self) -> bool:
        """Resume, store or fail the TRAINING models of every database with a catalog;
        False if the catalog of some database could not be read (logged: a database
        that fails does not keep the others from being recovered)."""
        try:
            databases = await self.catalog.databases_with_catalog()
        except Exception as exc:  # noqa: BLE001 - recovery retries on the next sweep
            log.warning("job recovery could not list databases: %s", describe_error(exc))
            return False
        ok = True
        for database in databases:
            try:
                await self.recover_database(database)
            except Exception as exc:  # noqa: BLE001 - retried, see sweep_forever
                log.warning("job recovery failed database=%s: %s", database, describe_error(exc))
                ok = False
        return ok

    async def recover_database(self, database: str) -> None:
        rows = await self.catalog.fetch(
            database,
            "SELECT id, model_name, job_owner, extract(epoch FROM now() - heartbeat) AS idle"
            " FROM mlproxy.models WHERE state = 'TRAINING'")
        for row in rows:
            key = (database, row["id"])
            if key in self._tasks:
                continue
            job = self.job_dir(database, row["id"])
            idle = float(row["idle"] or 0.0)
            owner_gone = row["job_owner"] is None or self._owner_is_dead(row["job_owner"])
            if job.result_file.exists() or job.error_file.exists() or job.has_snapshot():
                if owner_gone or idle > max(5 * self.poll_interval, 10.0):
                    log.info("resuming training job model=%s id=%s", row["model_name"], row["id"])
                    self.submit(database, row["id"])
            elif idle > self.orphan_after:
                await self.catalog.mark_failed(
                    database, row["id"],
                    f"training was interrupted and its data snapshot is not available "
                    f"(last heard of {int(idle)} s ago from {row['job_owner']}); "
                    f"drop the model and create it again")

    def _owner_is_dead(self, owner: str) -> bool:
        """True when `owner` is this instance or a proxy process on this host that no
        longer runs (a crashed or killed predecessor): its jobs can be taken at once."""
        if owner == self.instance:
            return True
        host, _, pid = owner.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    async def sweep_forever(self, interval: float = 30.0) -> None:
        """Recover jobs every `interval` seconds, and sooner (with backoff) after a
        sweep that failed: nothing the catalog does ends the sweep."""
        backoff = Backoff(first=min(1.0, interval), cap=interval)
        delay = interval
        while True:
            await asyncio.sleep(delay)
            try:
                ok = await self.recover()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever it was, the sweep goes on
                log.warning("job recovery sweep failed: %s", describe_error(exc))
                ok = False
            if ok:
                backoff.reset()
                delay = interval
            else:
                delay = backoff.delay()
                log.warning("job recovery sweep retries in %.1f s", delay)

    async def close(self) -> None:
        for retired in self._retired:
            retired.cancel()
        for key, proc in list(self._procs.items()):
            if proc.returncode is None:
                proc.terminate()  # the snapshot stays: the job resumes on next start
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # -- the job lifecycle ---------------------------------------------------------------
    async def _run(self, database: str, model_id: int) -> None:
        key = (database, model_id)
        job = self.job_dir(database, model_id)
        try:
            await self.catalog.set_progress(database, model_id, {"phase": "queued"}, self.instance)
            async with self._slots:
                if not (job.result_file.exists() or job.error_file.exists()):
                    if not await self._train(database, model_id, job):
                        return
                await self._store_outcome(database, model_id, job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - record, never lose the job silently
            if isinstance(exc, CatalogUnavailable):
                # The job directory stays: the recovery sweep (or the catalog's resync
                # once the upstream is back) resumes the job or stores its outcome.
                log.warning("training job model_id=%s waits for the catalog, which is "
                            "unreachable: %s", model_id, describe_error(exc))
                return
            log.exception("training job failed model_id=%s", model_id)
            reason = (errors.file_error(exc).message if isinstance(exc, OSError)
                      else f"internal error: {exc}")
            try:
                await self.catalog.mark_failed(database, model_id, reason)
            except Exception as failed:  # noqa: BLE001 - the sweep fails it later
                log.warning("training job model_id=%s: failure not recorded: %s", model_id,
                            describe_error(failed))
            self._tell(key, "failed", {"message": reason})
            job.remove()

    async def _train(self, database: str, model_id: int, job: JobDir) -> bool:
        """Run the worker process; False if the model went away meanwhile."""
        key = (database, model_id)
        if not job.has_snapshot():
            await self.catalog.mark_failed(database, model_id, "training data snapshot is missing")
            return False
        spec = job.read_json(job.spec_file) or {}
        spec["cache_dir"] = str(self.cache_dir)
        spec["n_jobs"] = self.worker_threads
        job.write_json(job.spec_file, spec)
        log_path = job.path / "worker.log"
        with open(log_path, "ab") as log_file:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "proxy.training.worker", str(job.path),
                stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                cwd=str(Path(__file__).resolve().parents[2]),
                env={**os.environ, PARENT_ENV: str(os.getpid())})
        self._procs[key] = proc
        log.info("training started model_id=%s database=%s pid=%s", model_id, database, proc.pid)
        last_progress = None
        unreachable = False
        try:
            while True:
                try:
                    await asyncio.wait_for(proc.wait(), self.poll_interval)
                    break
                except TimeoutError:
                    pass
                progress = await asyncio.to_thread(job.read_json, job.progress_file)
                progress = progress or {"phase": "starting"}
                try:
                    alive = await self.catalog.set_progress(database, model_id, progress,
                                                            self.instance)
                except CatalogUnavailable as exc:  # the worker goes on; so do we
                    if not unreachable:
                        log.warning("training progress of model_id=%s not recorded, the "
                                    "catalog is unreachable: %s", model_id, describe_error(exc))
                    unreachable = True
                    continue
                unreachable = False
                if not alive:  # dropped (or finished elsewhere): stop working on it
                    proc.kill()
                    await proc.wait()
                    job.remove()
                    return False
                if progress != last_progress:
                    self._tell(key, "progress", progress)
                    last_progress = progress
        finally:
            self._procs.pop(key, None)
        if proc.returncode != 0 and not job.error_file.exists():
            job.write_json(job.error_file, {
                "sqlstate": "XX000",
                "message": f"training process ended unexpectedly (exit code {proc.returncode})"})
        return True

    async def _store_outcome(self, database: str, model_id: int, job: JobDir) -> None:
        key = (database, model_id)
        error = await asyncio.to_thread(job.read_json, job.error_file)
        if error is not None:
            reason = error.get("message") or "training failed"
            if error.get("hint"):
                reason += f" (hint: {error['hint']})"
            await self.catalog.mark_failed(database, model_id, reason)
            log.info("training failed model_id=%s reason=%s", model_id, reason)
            self._tell(key, "failed", {"message": reason})
            job.remove()
            return
        result = await asyncio.to_thread(job.read_json, job.result_file)
        artifact = await asyncio.to_thread(job.artifact_file.read_bytes)
        stored = await self.catalog.mark_ready(database, model_id, result, artifact)
        log.info("training done model_id=%s stored=%s seconds=%.1f", model_id, stored,
                 result.get("training_seconds", 0.0))
        self._tell(key, "ready", result)
        job.remove()

    def _tell(self, key: tuple[str, int], kind: str, info: dict[str, Any]) -> None:
        for listener in self._listeners.get(key, []):
            try:
                listener(kind, info)
            except Exception:  # noqa: BLE001 - a gone session must not break the job
                log.debug("progress listener failed", exc_info=True)
        if kind in ("ready", "failed"):
            self._listeners.pop(key, None)

    def _on_catalog_event(self, database: str, event: dict[str, Any]) -> None:
        """A notification is a hint (any role can send one): a job of ours is
        cancelled only once the catalog, read again, no longer has its model."""
        model_id = event.get("id")
        if event.get("event") != "dropped" or not isinstance(model_id, int):
            return
        key = (database, model_id)
        if key not in self._tasks or key in self._drop_checks:
            return  # not our job, or a check of it already under way (a flood coalesces)
        self._drop_checks.add(key)
        asyncio.ensure_future(self._cancel_if_dropped(database, model_id))

    async def _cancel_if_dropped(self, database: str, model_id: int) -> None:
        key = (database, model_id)
        try:
            row = await self.catalog.fetchrow(
                database, "SELECT 1 FROM mlproxy.models WHERE id = $1 AND state = 'TRAINING'",
                model_id)
        except Exception as exc:  # noqa: BLE001 - set_progress notices a drop anyway
            log.warning("could not check a dropped-model notice model_id=%s error=%s", model_id, exc)
            return
        finally:
            self._drop_checks.discard(key)
        if row is None:
            log.info("training cancelled: model dropped model_id=%s", model_id)
            self.cancel(database, model_id)
            self._listeners.pop(key, None)
