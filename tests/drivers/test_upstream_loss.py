"""An upstream backend dies under a running query: that client gets an error, and
the proxy goes on serving every other session and new ones."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from psycopg import errors

from tests.support.clients import wait_until_running


@pytest.mark.timeout(60)
def test_backend_terminated_mid_query(fresh_proxy, direct_dsn):
    proxy = fresh_proxy()
    bystander = psycopg.connect(proxy.dsn(), autocommit=True)
    victim = psycopg.connect(proxy.dsn(), autocommit=True)
    pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
    outcome: dict = {}

    def sleep() -> None:
        started = time.monotonic()
        try:
            victim.execute("SELECT pg_sleep(10), 'drv-terminated'")
        except psycopg.Error as exc:
            outcome["error"] = exc
        outcome["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=sleep)
    worker.start()
    assert wait_until_running(direct_dsn, "drv-terminated") == pid
    with psycopg.connect(direct_dsn, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    worker.join(15)
    assert not worker.is_alive()
    error = outcome.get("error")
    assert error is not None, "the client must see the backend die"
    # The backend's own FATAL (57P01) is relayed before the connection closes.
    assert isinstance(error, errors.AdminShutdown), repr(error)
    assert error.sqlstate == "57P01"
    assert outcome["seconds"] < 5
    assert victim.closed or victim.broken
    victim.close()

    assert bystander.execute("SELECT 'still here'").fetchone() == ("still here",)
    bystander.close()
    with psycopg.connect(proxy.dsn(), autocommit=True) as newcomer:
        assert newcomer.execute("SELECT 1 + 1").fetchone() == (2,)
    assert proxy.alive()
