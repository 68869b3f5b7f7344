"""HAProxy for the fleet test: benchmarks/scale/haproxy.py starts it; here, when
haproxy is missing, `.ci/install-haproxy` is run once, and when it still cannot be
had the test FAILS saying why (a fleet test that silently does not run proves
nothing)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks.scale.haproxy import INSTALL, HAProxy, haproxy_program
from benchmarks.scale.haproxy import start_haproxy as _start


def haproxy_binary() -> str:
    found = haproxy_program()
    if found:
        return found
    done = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=300)
    found = haproxy_program()
    if found is None:
        pytest.fail("HAProxy is not installed and .ci/install-haproxy could not install it "
                    f"(exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}\n"
                    "Install Debian's haproxy package (apt-get install haproxy) to run the fleet test.",
                    pytrace=False)
    return found


def start_haproxy(backends: list[tuple[str, int]], work: Path) -> HAProxy:
    return _start(haproxy_binary(), backends, work)
