"""The ML side of a running proxy: model catalog, training jobs, statement interceptor.

Built once per `serve`, from the config: the catalog store (service connections per
database), the job runner (worker processes, recovery of interrupted jobs), the model
registry (known model functions, loaded predictors), and the interceptors that the
sessions consult for every Query and Parse.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from .catalog.store import CatalogStore
from .config import Config
from .ml_commands.create_model import MLServices
from .inference.interceptor import InferenceInterceptor
from .inference.registry import ModelRegistry
from .inference.remote import Endpoints, EndpointSettings
from .ml_commands.interceptor import MLInterceptor
from .ml_commands.forecast_results import ForecastInterceptor
from .ml_commands.system_views import SystemViewInterceptor
from .training.jobs import JobRunner
from .training.snapshot_store import SnapshotStore

log = logging.getLogger("mlproxy.ml")


class MLRuntime:
    def __init__(self, config: Config) -> None:
        assert config.upstream is not None and config.data_dir is not None
        self.catalog = CatalogStore(config.upstream)
        data_dir, cache_dir = self.directories(config)
        self.jobs = JobRunner(self.catalog, data_dir, cache_dir,
                              store=SnapshotStore(config.snapshot_store, data_dir),
                              workers=config.training_workers, lease=config.job_lease,
                              worker_threads=config.training_threads,
                              cluster=config.training_cluster and {
                                  "address": config.training_cluster,
                                  "fallback": config.training_cluster_fallback})
        self.services = MLServices(self.catalog, self.jobs, config.data_dir, import_dir=config.import_dir,
                                   import_urls=config.import_urls, import_max_bytes=config.import_max_bytes)
        self.endpoints = Endpoints(endpoint_settings(config))
        self.services.endpoints = self.endpoints
        self.registry = ModelRegistry(self.catalog, cache_dir, self.endpoints)
        self.services.models_changed = self.registry.reload
        # ML statements first: a CREATE MODEL's query may mention a model function.
        # The system views' names are qualified before model calls are looked for.
        inference = InferenceInterceptor(self.registry)
        self.interceptors = [MLInterceptor(self.services),
                             SystemViewInterceptor(self.catalog, then=inference),
                             ForecastInterceptor(self.catalog, then=inference), inference]
        self._sweeper: asyncio.Task | None = None
        self._claimer: asyncio.Task | None = None
        self._sweep_interval = config.job_sweep_interval
        # After a LISTEN connection comes back, notifications may have been missed:
        # the registry reloads that database's models and the runner re-checks its jobs.
        self.catalog.on_resync(self.registry.reload)
        self.catalog.on_resync(self._recheck_jobs)

    @staticmethod
    def directories(config: Config) -> tuple[Path, Path]:
        """The directories the ML side writes: the data directory (training jobs'
        snapshots and state) and the cache of compiled model libraries."""
        assert config.data_dir is not None
        return config.data_dir, config.data_dir / "cache" / "models"

    async def _recheck_jobs(self, database: str) -> None:
        if await self.catalog.has_catalog(database):  # (a database without models keeps none)
            await self.jobs.recover_database(database)

    async def _check_store(self) -> None:
        """Say at startup when the snapshot store cannot be written (CREATE MODEL
        will refuse until it can)."""
        store = self.jobs.store
        try:
            await asyncio.to_thread(store.check_writable)
        except OSError as exc:
            log.warning("cannot write to the snapshot store %s: %s", store.describe(), exc)
        else:
            if store.shared:
                log.info("snapshot store %s", store.describe())

    def start(self) -> None:
        """Resume interrupted training jobs now, and look again periodically (a
        failed look is logged and retried: see JobRunner.sweep_forever)."""
        async def run() -> None:
            await self._check_store()
            await self.jobs.recover()
            await self.jobs.sweep_forever(self._sweep_interval)
        self._sweeper = asyncio.ensure_future(run())
        self._sweeper.add_done_callback(_sweeper_done)
        self._claimer = asyncio.ensure_future(self.jobs.claim_forever())
        self._claimer.add_done_callback(_sweeper_done)

    async def close(self) -> None:
        for task in (self._sweeper, self._claimer):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.jobs.close()
        await self.endpoints.close()
        await self.catalog.close()


def endpoint_settings(config: Config) -> EndpointSettings:
    return EndpointSettings(urls=dict(config.endpoints), allow_urls=config.allow_endpoint_urls,
                            timeout=config.endpoint_timeout, connections=config.endpoint_connections)


def _sweeper_done(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("job recovery sweep ended", exc_info=task.exception())
