"""The ML side of a running proxy: model catalog, training jobs, statement interceptor.

Built once per `serve`, from the config: the catalog store (service connections per
database), the job runner (worker processes, recovery of interrupted jobs), the model
registry (known model functions, loaded predictors), and the interceptors that the
sessions consult for every Query and Parse.
"""

from __future__ import annotations

import asyncio
import logging

from .catalog.store import CatalogStore
from .config import Config
from .ml_commands.create_model import MLServices
from .inference.interceptor import InferenceInterceptor
from .inference.registry import ModelRegistry
from .ml_commands.interceptor import MLInterceptor
from .ml_commands.system_views import SystemViewInterceptor
from .training.jobs import JobRunner

log = logging.getLogger("mlproxy.ml")


class MLRuntime:
    def __init__(self, config: Config) -> None:
        assert config.upstream is not None and config.data_dir is not None
        self.catalog = CatalogStore(config.upstream)
        self.jobs = JobRunner(self.catalog, config.data_dir, config.data_dir / "cache" / "models",
                              workers=config.training_workers,
                              worker_threads=config.training_threads)
        self.services = MLServices(self.catalog, self.jobs, config.data_dir)
        self.registry = ModelRegistry(self.catalog, config.data_dir / "cache" / "models")
        self.services.models_changed = self.registry.reload
        # ML statements first: a CREATE MODEL's query may mention a model function.
        # The system views' names are qualified before model calls are looked for.
        inference = InferenceInterceptor(self.registry)
        self.interceptors = [MLInterceptor(self.services),
                             SystemViewInterceptor(self.catalog, then=inference), inference]
        self._sweeper: asyncio.Task | None = None

    def start(self) -> None:
        """Resume interrupted training jobs now, and look again every 30 s."""
        async def run() -> None:
            await self.jobs.recover()
            await self.jobs.sweep_forever()
        self._sweeper = asyncio.ensure_future(run())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.jobs.close()
        await self.catalog.close()
