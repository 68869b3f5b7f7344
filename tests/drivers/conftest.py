"""Fixtures of the real-driver suite: every test talks to the embedded Postgres
through a real `mlproxy serve` process with an unmodified client library or program.

Direct connections (to the upstream's unix socket) are used only to set up, to
observe (pg_stat_activity) or to break things from outside, never to check results
the proxy should have delivered.
"""

from __future__ import annotations

import re
import uuid
import warnings

import psycopg
import pytest

from tests.support import toolchain


@pytest.fixture(scope="session")
def direct_dsn(upstream) -> str:
    """libpq conninfo straight to the upstream, bypassing the proxy."""
    return f"host={upstream.host} port={upstream.port} user=postgres dbname=postgres"


@pytest.fixture
def table(request, direct_dsn) -> str:
    """A table name of the test's own; the table is dropped after the test.

    Request it before any connection fixture, so that connection (and any lock it
    holds on the table) is gone by the time the table is dropped.
    """
    stem = re.sub(r"\W+", "_", request.node.name).lower()[:40]
    name = f"drv_{stem}_{uuid.uuid4().hex[:6]}"
    yield name
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '5s'")  # fail, not hang, if still locked
        conn.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture(scope="session")
def jdbc() -> toolchain.Jdbc:
    """java + pgjdbc, installed if missing; a loud skip (warning + summary) if not."""
    try:
        return toolchain.jdbc()
    except toolchain.ToolMissing as exc:
        message = f"pgjdbc driver tests NOT RUN: {exc}"
        toolchain.NOT_RUN.append(message)
        warnings.warn(pytest.PytestWarning(message), stacklevel=1)
        pytest.skip(message)


def pytest_terminal_summary(terminalreporter) -> None:
    if toolchain.NOT_RUN:
        terminalreporter.section("DRIVER TESTS NOT RUN", sep="!", red=True, bold=True)
        for line in toolchain.NOT_RUN:
            terminalreporter.line(line, red=True, bold=True)
