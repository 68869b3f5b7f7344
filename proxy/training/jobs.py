"""Running training jobs in worker processes, and recording their outcome.

The event loop never trains: each job runs `python -m proxy.training.worker` in its
own process (at most `workers` at once), so a job can be killed when its model is
dropped, and a crash in native code cannot take the proxy down. The runner polls the
job's progress file, writes progress and a heartbeat to the catalog, and stores the
result (READY) or the reason (FAILED) when the process ends.

Jobs are a queue in the catalog (catalog migration 9), shared by every proxy in front
of the database: CREATE MODEL publishes the job's snapshot to the snapshot store
(snapshot_store.py) and enqueues it; any proxy with a free worker claims the oldest
job whose snapshot it can read (SKIP LOCKED: exactly one proxy gets it), with a lease
it renews while the job trains. When a proxy dies its lease expires and another proxy
takes the job over, from the snapshot. A job is FAILED, with the reason, only when
nobody can resume it: its snapshot is gone, it was interrupted `max_attempts` times,
or no running proxy can read its snapshot for `orphan_after` seconds.

Nothing of a dropped model stays on disk: DROP MODEL (confirmed against the catalog;
the notification is only a hint) kills a running worker, and either way its
directory goes; `recover()` also removes the directories of models no catalog has
any more, and (once, at startup) exports an earlier process left half done.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import errors
from ..catalog.store import Backoff, CatalogStore, CatalogUnavailable, describe_error
from ..observe.stats import STATS
from .snapshot import JobDir
from .snapshot_store import SnapshotStore
from .worker import PARENT_ENV

log = logging.getLogger("mlproxy.training")

ProgressListener = Callable[[str, dict[str, Any]], None]


class JobRunner:
    def __init__(self, catalog: CatalogStore, data_dir: Path, cache_dir: Path, *,
                 store: SnapshotStore | None = None, workers: int = 1, poll_interval: float = 1.0,
                 orphan_after: float = 300.0, lease: float = 30.0, max_attempts: int = 3,
                 worker_threads: int | None = None, cluster: dict[str, Any] | None = None) -> None:
        self.catalog = catalog
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir)
        self.store = store or SnapshotStore(None, self.data_dir)
        self.workers = max(1, workers)
        self.poll_interval = min(poll_interval, lease / 3)  # renewals well within the lease
        self.orphan_after = orphan_after
        self.lease = lease
        self.max_attempts = max_attempts
        # how often an idle proxy looks at the queue besides when it hears of a job
        self.claim_interval = max(0.2, min(5.0, lease / 3))
        self.worker_threads = worker_threads
        self.cluster = cluster  # {"address", "fallback"}: see proxy/training/cluster.py
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self._slots = asyncio.Semaphore(self.workers)
        self._databases: set[str] = set()  # whose queues this proxy takes jobs from
        self._wake = asyncio.Event()
        self._claiming: set[str] = set()  # databases with a claim in flight
        self._retired: list[asyncio.Task] = []  # slots taken out by set_workers
        self._tasks: dict[tuple[str, int], asyncio.Task] = {}
        self._procs: dict[tuple[str, int], asyncio.subprocess.Process] = {}
        self._listeners: dict[tuple[str, int], list[ProgressListener]] = {}
        self._drop_checks: set[tuple[str, int]] = set()
        self._dropped: set[tuple[str, int]] = set()  # cancelled by DROP MODEL
        self._names: dict[tuple[str, int], str] = {}  # schema.name, for log lines
        self._staging_swept = False
        self._started_at = time.time()  # staging entries older than this are leftovers
        self._confirming: set[asyncio.Task] = set()
        self._training_since: dict[tuple[str, int], float] = {}  # for the statistics
        catalog.subscribe(self._on_catalog_event)

    # -- public ---------------------------------------------------------------------
    def job_dir(self, database: str, model_id: int) -> JobDir:
        return JobDir.for_model(self.data_dir, database, model_id)

    async def enqueue(self, database: str, model_id: int, snapshot: str) -> None:
        """Queue the job of a model just created (its snapshot published at
        `snapshot`); this proxy looks for a job to claim at once."""
        await self.catalog.enqueue_job(database, model_id, snapshot)
        self._databases.add(database)
        self.wake()

    def wake(self) -> None:
        """Look at the queues now (a job was queued, a worker became free)."""
        self._wake.set()

    async def claim_forever(self) -> None:
        """Claim jobs whenever a worker is free: when told of a queued job, when a job
        ends, and every `claim_interval` seconds (leases of dead proxies expire
        silently). Nothing the catalog does ends this loop."""
        while True:
            try:
                async with asyncio.timeout(self.claim_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            for database in sorted(self._databases):
                try:
                    await self._claim_in(database)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the next round tries again
                    log.warning("could not look for training jobs database=%s: %s", database,
                                describe_error(exc))

    async def _claim_in(self, database: str) -> None:
        prefixes = self.store.readable_prefixes()
        while True:
            if self._slots.locked():  # busy: still say that this proxy is alive
                await self.catalog.announce(database, self.instance, prefixes)
                return
            await self._slots.acquire()
            self._claiming.add(database)
            try:
                row = await self.catalog.claim_job(database, self.instance, self.lease, prefixes)
            except BaseException:
                self._slots.release()
                raise
            finally:
                self._claiming.discard(database)
            if row is None:
                self._slots.release()
                return
            model_id = int(row["job_model_id"])
            key = (database, model_id)
            if key in self._tasks:  # (cannot be: our lease was live) never two runs of a job
                self._slots.release()
                continue
            task = asyncio.ensure_future(self._run(database, model_id, row["job_snapshot"],
                                                   int(row["job_attempts"]), row["job_previous_owner"]))
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
        """Stop the job of a dropped model (running: kill its worker; queued: cancel
        its task); the job's own task then removes its directory."""
        key = (database, model_id)
        if key not in self._tasks:
            return
        self._dropped.add(key)
        proc = self._procs.get(key)
        if proc is not None and proc.returncode is None:
            _kill(proc)
        task = self._tasks.get(key)
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
        if not self._staging_swept:
            self._staging_swept = True
            await asyncio.to_thread(self._remove_staging)
        ok = True
        for database in databases:
            try:
                await self.recover_database(database)
                await self.remove_leftovers(database)
                await self.remove_stored_leftovers(database)
            except Exception as exc:  # noqa: BLE001 - retried, see sweep_forever
                log.warning("job recovery failed database=%s: %s", database, describe_error(exc))
                ok = False
        return ok

    def _remove_staging(self) -> None:
        """Exports an earlier process left half done (`jobs/staging/<hex>`), run once.
        Sessions may already be exporting when it runs (recovery starts with the
        server), so only entries made before this process started are removed. A
        database named "staging" has its job directories there too: only non-numeric
        entries are exports."""
        staging = self.data_dir / "jobs" / "staging"
        if not staging.is_dir():
            return
        for entry in staging.iterdir():
            try:
                earlier = entry.stat().st_mtime < self._started_at
            except OSError:  # gone meanwhile
                continue
            if earlier and not entry.name.isdigit():
                log.info("removing an unfinished training data export path=%s", entry)
                shutil.rmtree(entry, ignore_errors=True)

    async def remove_leftovers(self, database: str) -> None:
        """Remove the job directories of `database` whose model the catalog no longer
        has (dropped while this proxy was down, or a drop it did not hear of)."""
        root = JobDir.for_model(self.data_dir, database, 0).path.parent
        # listed before the catalog is read: a directory appears only after its
        # model's row is committed, so a listed id missing from the catalog is gone
        ids = await asyncio.to_thread(
            lambda: [int(p.name) for p in root.iterdir() if p.name.isdigit()] if root.is_dir() else [])
        ids = [i for i in ids if (database, i) not in self._tasks]
        if not ids:
            return
        try:
            rows = await self.catalog.fetch(
                database, "SELECT id, state FROM mlproxy.models WHERE id = ANY($1::bigint[])", ids)
        except Exception as exc:  # noqa: BLE001 - the next sweep tries again
            log.warning("job directories not checked database=%s: %s", database, exc)
            return
        states = {r["id"]: r["state"] for r in rows}
        for model_id in ids:
            state = states.get(model_id)
            job = self.job_dir(database, model_id)
            if state == "TRAINING" or (state is not None and not self.store.shared and await asyncio.to_thread(
                    lambda: (job.read_json(job.spec_file) or {}).get("garbage_collect") is False)):
                continue  # still to train (perhaps here), or the snapshot S3_GARBAGE_COLLECT OFF keeps
            log.info("removing the job directory of a %s model database=%s id=%s",
                     "dropped" if state is None else "finished", database, model_id)
            await asyncio.to_thread(job.remove)

    async def remove_stored_leftovers(self, database: str) -> None:
        """Snapshots in the shared store whose model is gone (dropped while queued, its
        creator gone too), unless S3_GARBAGE_COLLECT OFF keeps them."""
        try:
            ids = await asyncio.to_thread(self.store.stored, database)
            if not ids:
                return
            rows = await self.catalog.fetch(
                database, "SELECT id FROM mlproxy.models WHERE id = ANY($1::bigint[])", ids)
        except Exception as exc:  # noqa: BLE001 - the next sweep tries again
            log.warning("snapshot store not checked database=%s: %s", database, describe_error(exc))
            return
        for model_id in set(ids) - {r["id"] for r in rows}:
            url = self.store.url_for(database, model_id)
            if not await asyncio.to_thread(self.store.kept, url):
                log.info("removing the snapshot of a dropped model url=%s", url)
                await asyncio.to_thread(self.store.remove, url)

    async def recover_database(self, database: str) -> None:
        """Take jobs from the queue of `database` from now on; queue the interrupted
        jobs of earlier versions (no queue row) whose snapshot this proxy has, free at
        once the jobs of a dead proxy process of this host, and fail what nobody can
        resume."""
        self._databases.add(database)
        # said first: a proxy back after a long stop must not fail the jobs it resumes
        await self.catalog.announce(database, self.instance, self.store.readable_prefixes())
        rows = await self.catalog.fetch(
            database,
            "SELECT m.id, m.model_name, job_owner, extract(epoch FROM now() - m.heartbeat) AS idle,"
            " t.model_id IS NOT NULL AS queued, t.claimed_by"
            " FROM mlproxy.models m LEFT JOIN mlproxy.training_jobs t ON t.model_id = m.id"
            " WHERE m.state = 'TRAINING'")
        for row in rows:
            key = (database, row["id"])
            if key in self._tasks:
                continue
            if row["queued"]:
                # leased to a dead proxy process of this host, or to this proxy though no
                # task of it runs the job (it ended waiting for the catalog): free at once
                owner = row["claimed_by"]
                if owner == self.instance and database in self._claiming:
                    continue  # just claimed: its task is about to start
                if owner is not None and self._owner_is_dead(owner):
                    log.info("training job without a runner is free again model=%s id=%s owner=%s",
                             row["model_name"], row["id"], owner)
                    await self.catalog.release_job(database, row["id"], owner)
                continue
            job = self.job_dir(database, row["id"])
            idle = float(row["idle"] or 0.0)
            if job.result_file.exists() or job.error_file.exists() or job.has_snapshot():
                # (a model being created right now has its directory too: its creator
                # queues it; what is left idle that long was interrupted)
                if idle > max(5 * self.poll_interval, 10.0) or (
                        row["job_owner"] not in (None, self.instance) and self._owner_is_dead(row["job_owner"])):
                    log.info("queueing an interrupted training job model=%s id=%s", row["model_name"], row["id"])
                    await self.catalog.enqueue_job(database, row["id"], self.store.local_url(job.path))
            elif idle > self.orphan_after:
                await self.catalog.mark_failed(
                    database, row["id"],
                    f"training was interrupted and its data snapshot is not available "
                    f"(last heard of {int(idle)} s ago from {row['job_owner']}); "
                    f"drop the model and create it again")
        for model_id in await self.catalog.fail_unresumable(database, self.orphan_after):
            log.warning("training job failed id=%s database=%s: no running proxy can read its snapshot",
                        model_id, database)
        self.wake()

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
                proc.terminate()  # the snapshot stays: the job is resumed from it
        # the tasks are cancelled before anything is awaited: none may take its
        # terminated worker for a failed job
        held = list(self._tasks)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        # give the jobs back at once, rather than when their leases expire
        releases = [self.catalog.release_job(database, model_id, self.instance, graceful=True)
                    for database, model_id in held]
        if releases:
            try:
                async with asyncio.timeout(2.0):
                    await asyncio.gather(*releases, return_exceptions=True)
            except TimeoutError:
                pass
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the job lifecycle ---------------------------------------------------------------
    def _model(self, key: tuple[str, int], job: JobDir) -> str:
        """`schema.name` of the job's model for log lines (from its job.json)."""
        name = self._names.get(key)
        if name is None:
            spec = job.read_json(job.spec_file) or {}
            name = (f"{spec['schema']}.{spec['model']}" if spec.get("schema") and spec.get("model")
                    else f"id={key[1]}")
            self._names[key] = name
        return name

    async def _run(self, database: str, model_id: int, snapshot: str, attempt: int,
                   previous: str | None) -> None:
        """One claimed job, holding one of the slots (given back at the end)."""
        key = (database, model_id)
        job = self.job_dir(database, model_id)
        model = f"id={model_id}"
        try:
            if attempt > self.max_attempts:
                await self._fail(database, model_id, job, snapshot,
                                 f"training was interrupted {attempt - 1} times (last run by {previous}); "
                                 "drop the model and create it again")
                return
            try:
                await asyncio.to_thread(self.store.fetch, snapshot, job)
            except FileNotFoundError:
                await self._fail(database, model_id, job, snapshot,
                                 f"training was interrupted and its data snapshot is not available "
                                 f"(nothing at {snapshot}); drop the model and create it again")
                return
            except OSError as exc:  # this proxy cannot read it now: another may (attempts bound it)
                log.warning("training job id=%s database=%s: snapshot %s not readable here, "
                            "given back to the queue: %s", model_id, database, snapshot, exc)
                await asyncio.to_thread(self._remove_work, job, snapshot)
                await self.catalog.release_job(database, model_id, self.instance)
                return
            model = await asyncio.to_thread(self._model, key, job)
            if previous is not None and previous != self.instance:
                log.info("taking over training job model=%s id=%s database=%s from %s (attempt %s)",
                         model, model_id, database, previous, attempt)
            if not (job.result_file.exists() or job.error_file.exists()):
                if not await self._train(database, model_id, job, snapshot):
                    return
            await self._store_outcome(database, model_id, job, snapshot)
        except asyncio.CancelledError:
            if key in self._dropped:  # DROP MODEL before the worker started: nothing may stay
                log.info("training cancelled by DROP MODEL model=%s id=%s database=%s (starting)",
                         model, model_id, database)
                await asyncio.to_thread(self._collect, job, snapshot)
            raise
        except Exception as exc:  # noqa: BLE001 - record, never lose the job silently
            if isinstance(exc, CatalogUnavailable):
                # The job directory stays: once the catalog is back, the job's lease
                # has expired and it is claimed again (here or elsewhere).
                log.warning("training job model=%s id=%s waits for the catalog, which is "
                            "unreachable: %s", model, model_id, describe_error(exc))
                return
            log.warning("training job failed model=%s id=%s database=%s: internal error", model,
                        model_id, database, exc_info=True)
            reason = (errors.file_error(exc).message if isinstance(exc, OSError)
                      else f"internal error: {exc}")
            try:
                await self._fail(database, model_id, job, snapshot, reason)
            except Exception as failed:  # noqa: BLE001 - the sweep fails it later
                log.warning("training job model=%s id=%s: failure not recorded: %s", model, model_id,
                            describe_error(failed))
        finally:
            self._dropped.discard(key)
            self._names.pop(key, None)
            self._slots.release()
            self.wake()

    async def _fail(self, database: str, model_id: int, job: JobDir, snapshot: str, reason: str) -> None:
        await self.catalog.mark_failed(database, model_id, reason)
        log.warning("training failed id=%s database=%s reason=%s", model_id, database, reason)
        self._tell((database, model_id), "failed", {"message": reason})
        await asyncio.to_thread(self._collect, job, snapshot)

    def _is_snapshot(self, job: JobDir, snapshot: str) -> bool:
        """Whether the job directory is itself the snapshot (the local store)."""
        return snapshot == self.store.local_url(job.path)

    def _remove_work(self, job: JobDir, snapshot: str) -> None:
        """Remove what this proxy made of a job, never a snapshot it is working in."""
        if self._is_snapshot(job, snapshot):
            for f in (job.progress_file, job.result_file, job.error_file, job.artifact_file):
                f.unlink(missing_ok=True)
        else:
            job.remove()

    def _collect(self, job: JobDir, snapshot: str) -> None:
        """A job is over: remove its working directory, and its snapshot unless its
        model said S3_GARBAGE_COLLECT OFF (then job.json and the data stay where they
        were published, as Redshift keeps the S3 files)."""
        spec = job.read_json(job.spec_file) or {}
        keep = spec.get("garbage_collect") is False
        if self._is_snapshot(job, snapshot):
            if keep:
                keep_files = set(job.snapshot_files())
                for entry in job.path.iterdir() if job.path.is_dir() else ():
                    if entry not in keep_files:
                        entry.unlink(missing_ok=True)
            else:
                job.remove()
            return
        job.remove()
        if not keep:
            try:
                self.store.remove(snapshot)
            except OSError as exc:
                log.warning("training snapshot not removed url=%s: %s", snapshot, exc)

    async def _train(self, database: str, model_id: int, job: JobDir, snapshot: str) -> bool:
        """Run the worker process, renewing the job's lease; False if the model went
        away meanwhile or another proxy took the job over."""
        key = (database, model_id)
        spec = job.read_json(job.spec_file) or {}
        spec["cache_dir"] = str(self.cache_dir)
        spec["n_jobs"] = self.worker_threads
        spec["training_cluster"] = self.cluster
        # a cluster's workers read the data from the store themselves (worker.py)
        spec["data_url"] = self.store.data_url(snapshot, job) if self.cluster else None
        job.write_json(job.spec_file, spec)
        log_path = job.path / "worker.log"
        with open(log_path, "ab") as log_file:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "proxy.training.worker", str(job.path),
                stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                cwd=str(Path(__file__).resolve().parents[2]),
                env={**os.environ, PARENT_ENV: str(os.getpid())})
        self._procs[key] = proc
        self._training_since[key] = time.monotonic()
        STATS.job_started()
        model = self._model(key, job)
        log.info("training started model=%s id=%s database=%s pid=%s", model, model_id, database, proc.pid)
        last_progress = None
        unreachable = False
        try:
            while True:
                try:
                    async with asyncio.timeout(self.poll_interval):
                        await proc.wait()
                    break
                except TimeoutError:
                    pass
                progress = await asyncio.to_thread(job.read_json, job.progress_file)
                progress = progress or {"phase": "starting"}
                try:
                    alive = await self.catalog.renew_lease(database, model_id, self.instance,
                                                           self.lease, progress)
                except CatalogUnavailable as exc:  # the worker goes on; so do we
                    if not unreachable:
                        log.warning("training progress of model_id=%s not recorded, the "
                                    "catalog is unreachable: %s", model_id, describe_error(exc))
                    unreachable = True
                    continue
                unreachable = False
                if not alive:  # dropped, or taken over (this proxy was thought dead)
                    _kill(proc)
                    await proc.wait()
                    row = await self.catalog.fetchrow(
                        database, "SELECT 1 FROM mlproxy.models WHERE id = $1 AND state = 'TRAINING'",
                        model_id)
                    if row is None:
                        log.info("training cancelled model=%s id=%s database=%s: the model was "
                                 "dropped", model, model_id, database)
                        await asyncio.to_thread(self._collect, job, snapshot)
                    else:
                        log.warning("training stopped model=%s id=%s database=%s: the job's lease "
                                    "was lost and another proxy took it over", model, model_id, database)
                        await asyncio.to_thread(self._remove_work, job, snapshot)
                    return False
                if progress != last_progress:
                    self._tell(key, "progress", progress)
                    last_progress = progress
        finally:
            self._procs.pop(key, None)
        if key in self._dropped:  # killed by DROP MODEL: not a failure, and nothing stays
            log.info("training cancelled by DROP MODEL model=%s id=%s database=%s", model, model_id, database)
            await asyncio.to_thread(self._collect, job, snapshot)
            return False
        if proc.returncode != 0 and not job.error_file.exists():
            job.write_json(job.error_file, {
                "sqlstate": "XX000",
                "message": f"training process ended unexpectedly (exit code {proc.returncode})"})
        return True

    async def _store_outcome(self, database: str, model_id: int, job: JobDir, snapshot: str) -> None:
        key = (database, model_id)
        error = await asyncio.to_thread(job.read_json, job.error_file)
        if error is not None:
            reason = error.get("message") or "training failed"
            if error.get("hint"):
                reason += f" (hint: {error['hint']})"
            log.warning("training failed model=%s", self._model(key, job))
            await self._fail(database, model_id, job, snapshot, reason)
            return
        result = await asyncio.to_thread(job.read_json, job.result_file)
        artifact = await asyncio.to_thread(job.artifact_file.read_bytes)
        stored = await self.catalog.mark_ready(database, model_id, result, artifact)
        log.info("training done model=%s id=%s database=%s stored=%s seconds=%.1f", self._model(key, job),
                 model_id, database, stored, result.get("training_seconds", 0.0))
        self._tell(key, "ready", result)
        await asyncio.to_thread(self._collect, job, snapshot)

    def _tell(self, key: tuple[str, int], kind: str, info: dict[str, Any]) -> None:
        for listener in self._listeners.get(key, []):
            try:
                listener(kind, info)
            except Exception:  # noqa: BLE001 - a gone session must not break the job
                log.debug("progress listener failed", exc_info=True)
        if kind in ("ready", "failed"):
            self._listeners.pop(key, None)
            since = self._training_since.pop(key, None)
            STATS.job_ended(kind, time.monotonic() - since if since is not None else 0.0)

    def counts(self) -> dict[str, int]:
        """This proxy's jobs now: running (a worker process) and queued (waiting for
        a worker, or storing their outcome)."""
        running = sum(1 for key in self._tasks if key in self._procs)
        return {"running": running, "queued": len(self._tasks) - running}

    def _on_catalog_event(self, database: str, event: dict[str, Any]) -> None:
        """A notification is a hint (any role can send one): a job of ours is
        cancelled only once the catalog, read again, no longer has its model."""
        model_id = event.get("id")
        if event.get("event") == "queued":  # a job to claim, if a worker is free
            self._databases.add(database)
            self.wake()
            return
        if event.get("event") != "dropped" or not isinstance(model_id, int):
            return
        key = (database, model_id)
        if key in self._drop_checks:
            return  # a check of it already under way (a flood coalesces)
        self._drop_checks.add(key)
        task = asyncio.ensure_future(self._cancel_if_dropped(database, model_id))
        self._confirming.add(task)  # held until done (the loop keeps only weak references)
        task.add_done_callback(self._confirming.discard)

    async def _cancel_if_dropped(self, database: str, model_id: int) -> None:
        """Our running job of a dropped model is stopped; the directory of a job
        queued here (created through this proxy, not claimed yet) goes with its
        snapshot in the store. Anything else is none of ours: the catalog is not
        asked (a flood of forged notices costs a stat each)."""
        key = (database, model_id)
        job = self.job_dir(database, model_id)
        try:
            running = key in self._tasks
            if not running and not await asyncio.to_thread(job.spec_file.exists):
                return
            row = await self.catalog.fetchrow(
                database, "SELECT state FROM mlproxy.models WHERE id = $1", model_id)
        except Exception as exc:  # noqa: BLE001 - renewing the lease notices a drop anyway
            log.warning("could not check a dropped-model notice model_id=%s error=%s", model_id, exc)
            return
        finally:
            self._drop_checks.discard(key)
        if key in self._tasks:
            if row is None or row["state"] != "TRAINING":
                self.cancel(database, model_id)
                self._listeners.pop(key, None)
        elif row is None:
            model = await asyncio.to_thread(self._model, key, job)
            spec = await asyncio.to_thread(job.read_json, job.spec_file) or {}
            snapshot = self.store.url_for(database, model_id, spec.get("s3_bucket"))
            log.info("training cancelled by DROP MODEL model=%s id=%s database=%s (queued)",
                     model, model_id, database)
            await asyncio.to_thread(self._collect, job, snapshot)
            self._names.pop(key, None)
            self._listeners.pop(key, None)


def _kill(proc: asyncio.subprocess.Process) -> None:
    """Kill a worker that may have ended already (exited, not yet waited for)."""
    try:
        proc.kill()
    except ProcessLookupError:
        pass
