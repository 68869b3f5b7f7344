"""HAProxy (Debian's package) in TCP mode in front of a fleet of `mlproxy serve`.

`.ci/install-haproxy` installs it; when haproxy is missing, `start_haproxy` runs that
script once, and when it still cannot be had the test FAILS saying why (a fleet test
that silently does not run proves nothing).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

_INSTALL = Path(__file__).resolve().parents[2] / ".ci" / "install-haproxy"


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).exists()), None)
    if found:
        return found
    done = subprocess.run([str(_INSTALL)], capture_output=True, text=True, timeout=300)
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if found is None:
        pytest.fail("HAProxy is not installed and .ci/install-haproxy could not install it "
                    f"(exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}\n"
                    "Install Debian's haproxy package (apt-get install haproxy) to run the fleet test.",
                    pytrace=False)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class HAProxy:
    proc: subprocess.Popen
    host: str
    port: int
    log_path: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_haproxy(backends: list[tuple[str, int]], work: Path) -> HAProxy:
    """HAProxy in the foreground, TCP mode, round robin over `backends`, checking each
    every 200 ms so that a killed proxy is taken out at once; new connections go to
    the live ones (redispatch)."""
    binary = haproxy_binary()
    port = free_port()
    servers = "\n".join(f"    server mlproxy{i} {host}:{p} check inter 200 fall 1 rise 2"
                        for i, (host, p) in enumerate(backends))
    config = work / "haproxy.cfg"
    config.write_text(f"""
global
    maxconn 512

defaults
    mode tcp
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    retries 3
    option redispatch

frontend postgres
    bind 127.0.0.1:{port}
    default_backend mlproxies

backend mlproxies
    balance roundrobin
    default-server on-marked-down shutdown-sessions
{servers}
""")
    check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    log_path = work / "haproxy.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start: {log_path.read_text(errors='replace')}")
            time.sleep(0.05)
    return HAProxy(proc, "127.0.0.1", port, log_path)
