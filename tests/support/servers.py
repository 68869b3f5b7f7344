"""Real servers for the tests: the embedded Postgres and mlproxy processes.

Tests talk to a real Postgres (pgserver's build, on a unix socket in a temp dir)
through a real `mlproxy serve` process, exactly as users run it.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from proxy.embedded import EmbeddedPostgres, bin_dir

READY = re.compile(rb"mlproxy ready: psql \"postgresql://[^@]+@([^:]+):(\d+)/")

# Roles for the authentication tests, each bound to one method in pg_hba.conf.
AUTH_ROLES = {
    "scram_user": ("scram-sha-256", "scram-pass"),
    "md5_user": ("md5", "md5-pass"),
    "clear_user": ("password", "clear-pass"),
}


MAX_CONNECTIONS = 500  # 200 clients of test_concurrency beside the worker's long-lived proxies' catalog pools


def start_embedded(data_dir: Path) -> EmbeddedPostgres:
    """Start an embedded Postgres with roles for every auth method the proxy relays."""
    pg = EmbeddedPostgres(data_dir)
    upstream = pg.start()
    hba = pg.pgdata / "pg_hba.conf"
    lines = [f"local all {role} {method}" for role, (method, _) in AUTH_ROLES.items()]
    original = hba.read_text()
    if "scram_user" not in original:
        hba.write_text("\n".join(lines) + "\n" + original)
    sql = ["SET password_encryption = 'md5';"]
    for role, (method, password) in AUTH_ROLES.items():
        enc = "scram-sha-256" if method == "scram-sha-256" else "md5"
        sql.append(f"SET password_encryption = '{enc}';")
        sql.append(f"DO $$BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$;")
        sql.append(f"ALTER ROLE {role} PASSWORD '{password}';")
        sql.append(f"GRANT ALL ON SCHEMA public TO {role};")
    sql.append("SELECT pg_reload_conf();")
    psql(upstream.host, upstream.port, "\n".join(sql))
    # Room for the 200-connection and 100-cancel tests (the default is 100).
    if int(psql(upstream.host, upstream.port, "SHOW max_connections;").stdout) < MAX_CONNECTIONS:
        psql(upstream.host, upstream.port, f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS};")
        pg.stop()
        pg.start()
    return pg


def psql(host: str, port: int, sql: str, user: str = "postgres", db: str = "postgres",
         env: dict | None = None, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the embedded psql (ON_ERROR_STOP) and return the completed process."""
    return subprocess.run(
        [str(bin_dir() / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", str(port),
         "-U", user, "-d", db, "-At"],
        input=sql, capture_output=True, text=True, check=check, timeout=timeout,
        env={**os.environ, **(env or {})})


@dataclass
class ProxyProcess:
    """A running `mlproxy serve` process."""

    proc: subprocess.Popen
    host: str
    port: int
    log_path: Path

    def dsn(self, user: str = "postgres", db: str = "postgres", **params: str) -> str:
        extra = "".join(f"&{k}={v}" for k, v in params.items())
        return f"postgresql://{user}@{self.host}:{self.port}/{db}?sslmode=disable{extra}"

    def read_log(self) -> str:
        """Everything the proxy logged so far (stderr goes to a file, never a pipe
        that could fill up)."""
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10) -> bool:
        """Whether `text` shows up in the log within `timeout` seconds (records are
        written by the proxy's logging thread, a moment after the event)."""
        deadline = time.monotonic() + timeout
        while text not in self.read_log():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def start_proxy(upstream_url: str, *args: str, env: dict | None = None,
                timeout: float = 30) -> ProxyProcess:
    """Start `mlproxy serve` on a free port and wait for its ready line."""
    cmd = [sys.executable, "-m", "proxy", "serve", "--upstream", upstream_url,
           "--listen", "127.0.0.1:0", *args]
    log_path = Path(tempfile.mkstemp(prefix="mlproxy-", suffix=".log")[1])
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file,
                                env={**os.environ, **(env or {})},
                                cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + timeout
    out = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            out += line
            match = READY.search(line)
            if match:
                return ProxyProcess(proc, match.group(1).decode(), int(match.group(2)), log_path)
        if proc.poll() is not None:
            break
    proc.kill()
    err = log_path.read_text(errors="replace")
    raise RuntimeError(f"mlproxy did not start: {out.decode()} {err}")


class OwnedPostgres:
    """A Postgres of a test's own, on a unix socket in `base`, that the test may kill
    (SIGKILL: a crash) or stop (SIGINT: fast shutdown) and start again on the same
    socket (the shared session `pg` must stay up for every other test)."""

    PORT = 5432  # the socket directory is the test's own: the port only names the socket

    @classmethod
    def create(cls) -> "OwnedPostgres":
        """In a directory of its own under the system's temp dir, not pytest's: a
        pytest run that starts meanwhile makes its base directory private to root
        again, and a server run as another user could then no longer reach its files."""
        return cls(Path(tempfile.mkdtemp(prefix="mlproxy-own-pg-")))

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def __init__(self, base: Path) -> None:
        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        self.base = Path(base)
        self.pgdata = self.base / "pgdata"
        self.log_path = self.base / "postgres.log"
        self.proc: subprocess.Popen | None = None
        # Postgres refuses to run as root: as pgserver's own system user then.
        self.user = None
        if os.geteuid() == 0:
            self.user = "pgserver"
            ensure_user_exists(self.user)
            ensure_prefix_permissions(self.base)
            self.base.chmod(0o777)
        subprocess.run([str(bin_dir() / "initdb"), "-D", str(self.pgdata), "--auth=trust",
                        "-U", "postgres", "-E", "utf8", "--no-sync"],
                       user=self.user, check=True, capture_output=True, timeout=120)

    @property
    def uri(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.base}&port={self.PORT}"

    def start(self, timeout: float = 30) -> None:
        """Start on the same socket; after a SIGKILL, tries again until the killed
        server's backends are gone (Postgres refuses to start while they hold its
        shared memory)."""
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, "ab") as log_file:
                self.proc = subprocess.Popen(
                    [str(bin_dir() / "postgres"), "-D", str(self.pgdata), "-k", str(self.base),
                     "-h", "", "-p", str(self.PORT), "-c", "fsync=off"],
                    user=self.user, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file)
            while self.proc.poll() is None:
                if psql(str(self.base), self.PORT, "SELECT 1;", check=False).returncode == 0:
                    return
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"postgres did not start: {self.log_path.read_text()}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> None:
        """SIGINT: fast shutdown (clients are told 57P01); SIGKILL: the postmaster
        dies at once and its backends follow it, closing every connection."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout)
        self.proc = None

    def psql(self, sql: str, db: str = "postgres", check: bool = True) -> subprocess.CompletedProcess:
        return psql(str(self.base), self.PORT, sql, db=db, check=check)
