"""The servers under test: an embedded Postgres, mlproxy and PgBouncer in front of it.

For a fair comparison both poolers accept TCP on 127.0.0.1 and reach Postgres over
its unix socket; pgbench straight to that socket is the floor. Each server is a
context manager that yields a `Target` pgbench can connect to.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from proxy.embedded import EmbeddedPostgres, bin_dir

REPO = Path(__file__).resolve().parents[2]
READY = re.compile(r"mlproxy ready: psql \"postgresql://[^@]+@([^:]+):(\d+)/")
# pgbouncer refuses to run as root; pgserver creates this user to run Postgres as.
UNPRIVILEGED_USER = "pgserver"


@dataclass(frozen=True)
class Target:
    name: str
    host: str  # a unix socket directory or a TCP address
    port: int
    pid: int | None = None  # the relay's process, whose CPU time is measured


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def psql(target: Target, sql: str) -> str:
    done = subprocess.run(
        [str(bin_dir() / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", target.host,
         "-p", str(target.port), "-U", "postgres", "-d", "postgres"],
        input=sql, capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise RuntimeError(f"psql to {target.name} failed: {done.stderr.strip()}")
    return done.stdout.strip()


@contextlib.contextmanager
def embedded_postgres(work: Path, settings: dict[str, str]) -> Iterator[Target]:
    """Embedded Postgres with `settings` (max_connections needs a restart)."""
    pg = EmbeddedPostgres(work / "pg")
    try:
        upstream = pg.start()
        target = Target("direct", upstream.host, upstream.port)
        psql(target, "".join(f"ALTER SYSTEM SET {k} = '{v}';\n" for k, v in settings.items()))
        pg.stop()
        upstream = pg.start()
        yield Target("direct", upstream.host, upstream.port)
    finally:
        pg.stop()


def _wait_accepting(host: str, port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {host}:{port} after {timeout}s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def mlproxy(upstream: Target, log: Path, *args: str) -> Iterator[Target]:
    """`mlproxy serve` on a free TCP port, relaying to the upstream's unix socket;
    `args` are more options of `mlproxy serve`."""
    url = f"postgresql:///?host={upstream.host}&port={upstream.port}"
    with open(log, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--upstream", url,
             "--listen", "127.0.0.1:0", "--log-level", "warning", *args],
            stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
    try:
        line = process.stdout.readline()
        match = READY.search(line)
        if not match:
            raise RuntimeError(f"mlproxy did not start: {line!r}; see {log}")
        yield Target("mlproxy", match.group(1), int(match.group(2)), process.pid)
    finally:
        _stop(process)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pgbouncer_program() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None)


INSTALL_PGBOUNCER = REPO / "benchmarks" / "install-pgbouncer.sh"
PGBOUNCER_NOT_RUN = "NOT RUN: pgbouncer is not installed (benchmarks/install-pgbouncer.sh installs it)"


def pgbouncer_missing_banner() -> str:
    """What a benchmark prints (at its start and under its table) when it cannot
    compare with PgBouncer: loud, with the command that installs it."""
    rule = "!" * 78
    return (f"{rule}\nPgBouncer NOT RUN: pgbouncer is not installed, so this run has no\n"
            f"mlproxy vs PgBouncer figure. Install it (Debian's package, as root) with\n"
            f"    {INSTALL_PGBOUNCER.relative_to(REPO)}\nand run the benchmark again.\n{rule}")


@contextlib.contextmanager
def pgbouncer(upstream: Target, clients: int) -> Iterator[Target]:
    """PgBouncer in session mode, trust auth, one server connection per client."""
    program = pgbouncer_program()
    if program is None:
        raise FileNotFoundError("pgbouncer is not installed")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-pgbouncer-") as tmp:
        work = Path(tmp)
        (work / "userlist.txt").write_text('"postgres" ""\n')
        (work / "pgbouncer.ini").write_text(f"""\
[databases]
* = host={upstream.host} port={upstream.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {work / 'userlist.txt'}
pool_mode = session
max_client_conn = {clients + 50}
default_pool_size = {clients + 10}
logfile = {work / 'pgbouncer.log'}
pidfile = {work / 'pgbouncer.pid'}
log_connections = 0
log_disconnections = 0
""")
        user = None
        if os.geteuid() == 0:
            user = UNPRIVILEGED_USER
            entry = pwd.getpwnam(user)
            work.chmod(0o755)
            for path in (work, *work.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        with open(work / "stderr.log", "wb") as err:
            process = subprocess.Popen([program, str(work / "pgbouncer.ini")], user=user,
                                       stdout=subprocess.DEVNULL, stderr=err)
        try:
            try:
                _wait_accepting("127.0.0.1", port, process, 15)
            except RuntimeError as exc:
                logs = [p.read_text()[-2000:] for p in (work / "pgbouncer.log",
                                                        work / "stderr.log") if p.exists()]
                raise RuntimeError(f"pgbouncer failed: {exc}\n" + "\n".join(logs)) from exc
            yield Target("pgbouncer", "127.0.0.1", port, process.pid)
        finally:
            _stop(process)
