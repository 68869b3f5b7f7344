"""Helpers for driver tests: the embedded build's psql and pgbench, async test
bodies, and waiting for a query to be running on the server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import psycopg

from proxy.embedded import bin_dir


def program(name: str) -> str:
    return str(bin_dir() / name)


def client_env(**extra: str) -> dict[str, str]:
    """Environment for a client program: no user psqlrc, no stray PG* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return {**env, "PSQLRC": os.devnull, **extra}


def run_psql(server, *args: str, input: str | None = None, timeout: float = 60,
             db: str = "postgres", check: bool = False) -> subprocess.CompletedProcess:
    """psql -X against `server` (anything with .host and .port), unaligned tuples-only.

    ON_ERROR_STOP is left at psql's default (off) so tests can set it themselves.
    """
    cmd = [program("psql"), "-X", "-At", "-h", server.host, "-p", str(server.port),
           "-U", "postgres", "-d", db, *args]
    return subprocess.run(cmd, input=input, capture_output=True, text=True,
                          timeout=timeout, check=check, env=client_env())


def run_async(coro, timeout: float = 60):
    """Run an async test body to completion on a fresh loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def wait_until_running(direct_dsn: str, marker: str, timeout: float = 15) -> int:
    """Wait until a query containing `marker` is executing on the server; its pid.

    Tests that cancel or kill a running query use this instead of a fixed sleep, so
    a slow machine cannot make them act before the query has started.
    """
    deadline = time.monotonic() + timeout
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE state = 'active' "
                "AND query LIKE %s AND pid <> pg_backend_pid()", (f"%{marker}%",)).fetchone()
            if row:
                return row[0]
            time.sleep(0.02)
    raise TimeoutError(f"no running query with {marker!r} after {timeout}s")
