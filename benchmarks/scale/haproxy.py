"""HAProxy (Debian's package) in TCP mode in front of a fleet of `mlproxy serve`,
for the fleet benchmark and the fleet test (tests/support/haproxy.py)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

INSTALL = Path(__file__).resolve().parents[2] / ".ci" / "install-haproxy"


def haproxy_program() -> str | None:
    return shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).exists()), None)


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
                self.proc.wait()


def start_haproxy(program: str, backends: list[tuple[str, int]], work: Path) -> HAProxy:
    """HAProxy in the foreground, TCP mode, round robin over `backends`, checking each
    every 200 ms so that a killed proxy is taken out at once; new connections go to
    the live ones (redispatch)."""
    port = free_port()
    servers = "\n".join(f"    server mlproxy{i} {host}:{p} check inter 200 fall 1 rise 2"
                        for i, (host, p) in enumerate(backends))
    config = work / f"haproxy-{port}.cfg"
    config.write_text(f"""
global
    maxconn 1024

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
    check = subprocess.run([program, "-c", "-f", str(config)], capture_output=True, text=True)
    if check.returncode:
        raise RuntimeError(f"haproxy refused its configuration: {check.stdout}{check.stderr}")
    log_path = work / f"haproxy-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([program, "-db", "-f", str(config)], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"haproxy did not start: {log_path.read_text(errors='replace')}")
            time.sleep(0.05)
    # the backends' first health checks pass (rise 2) before the first client comes
    time.sleep(0.5)
    return HAProxy(proc, "127.0.0.1", port, log_path)
