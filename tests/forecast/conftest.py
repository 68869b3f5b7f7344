"""A proxy with a data directory for training jobs, shared by the FORECAST tests."""

from __future__ import annotations

import pytest

from tests.support.servers import ProxyProcess, start_proxy


@pytest.fixture(scope="session")
def forecast_proxy(pg, tmp_path_factory) -> ProxyProcess:
    process = start_proxy(pg.uri, "--data-dir", str(tmp_path_factory.mktemp("forecast-data")),
                          "--workers", "1")
    yield process
    process.stop()
