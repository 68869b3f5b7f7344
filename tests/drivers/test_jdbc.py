"""pgjdbc (Java) through the proxy: server-side prepared statements with binary
transfer, batches, portals suspended by a fetch size, errors and recovery."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

PROGRAM = Path(__file__).parent / "jdbc" / "DriverCheck.java"


@pytest.mark.timeout(600)  # the jdbc fixture may first have to apt-get install java
def test_pgjdbc(jdbc, proxy, table):
    url = f"jdbc:postgresql://{proxy.host}:{proxy.port}/postgres?user=postgres&sslmode=disable"
    # Single-file source launch (Java 11+): compiled in memory, no javac needed.
    done = subprocess.run([jdbc.java, "-cp", str(jdbc.jar), str(PROGRAM), url, table],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert results == {
        "prepared_sum": str(sum(i * 2 for i in range(10))),
        "prepared_server_side": "true",
        "prepared_on_server": results["prepared_on_server"],
        "batch_updated": "1000",
        "batch_rows": f"1000,{sum(range(1000))}",
        "fetch_rows": f"20000,{sum(range(1, 20001))}",
        "error_state": "42P01",
        "tx_error_state": "22012",
        "after_error": "recovered",
    }
    assert int(results["prepared_on_server"]) >= 1
