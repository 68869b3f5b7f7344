"""Shared fixtures: one embedded Postgres per test run, mlproxy processes in front."""

from __future__ import annotations

import pytest

from proxy.config import Upstream

from tests.support.servers import ProxyProcess, start_embedded, start_proxy


@pytest.fixture(scope="session")
def pg(tmp_path_factory):
    """The embedded Postgres (pgserver), with auth-method roles set up."""
    server = start_embedded(tmp_path_factory.mktemp("pg"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def upstream(pg) -> Upstream:
    """The upstream's address (a unix socket directory and port)."""
    return Upstream.from_url(pg.uri)


@pytest.fixture(scope="session")
def proxy(pg) -> ProxyProcess:
    """A `mlproxy serve` process shared by tests that do not stop it."""
    process = start_proxy(pg.uri)
    yield process
    process.stop()


@pytest.fixture
def fresh_proxy(pg):
    """A proxy of the test's own, for tests that stop or break it."""
    started: list[ProxyProcess] = []

    def start(*args: str, env: dict | None = None) -> ProxyProcess:
        process = start_proxy(pg.uri, *args, env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.alive():
            process.stop()
