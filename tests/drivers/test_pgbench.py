"""pgbench through the proxy: initialisation (COPY, DDL, VACUUM) and the TPC-B-like
script under each query protocol, with several clients at once."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.support.clients import client_env, program, run_psql

DATABASE = "drv_pgbench"


def pgbench(proxy, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [program("pgbench"), "-h", proxy.host, "-p", str(proxy.port), "-U", "postgres",
         *args, DATABASE],
        capture_output=True, text=True, timeout=timeout, env=client_env())


@pytest.fixture(scope="module")
def initialised(proxy, upstream):
    run_psql(upstream, "-c", f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)", check=True)
    run_psql(upstream, "-c", f"CREATE DATABASE {DATABASE}", check=True)
    done = pgbench(proxy, "-i", "-s", "1", "-q")
    assert done.returncode == 0, done.stderr
    assert "done in" in done.stderr
    yield proxy
    run_psql(upstream, "-c", f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_tpcb_like(initialised, mode):
    done = pgbench(initialised, "-M", mode, "-c", "4", "-j", "2", "-T", "3", "-n")
    assert done.returncode == 0, done.stderr
    processed = re.search(r"number of transactions actually processed: (\d+)", done.stdout)
    assert processed and int(processed.group(1)) > 0, done.stdout
    assert re.search(r"number of failed transactions: 0\b", done.stdout), done.stdout
    assert f"query mode: {mode}" in done.stdout


@pytest.mark.parametrize("mode", ["simple", "prepared"])
def test_tpcb_like_relayed_by_the_event_loop(initialised, fresh_proxy, mode):
    """`--relay python`: every chunk through the event loop (the per-chunk fast path
    and the framed path), as when the native pump is not built."""
    relay = fresh_proxy("--relay", "python")
    assert relay.wait_for_log("relay=python"), relay.read_log()
    done = pgbench(relay, "-M", mode, "-c", "4", "-j", "2", "-T", "2", "-n")
    assert done.returncode == 0, done.stderr
    assert re.search(r"number of failed transactions: 0\b", done.stdout), done.stdout


def test_the_native_relay_is_on_where_it_is_built(initialised):
    from proxy import pump

    expected = "relay=native" if pump.AVAILABLE else "relay=python"
    assert initialised.wait_for_log(expected), initialised.read_log()
