"""Settings: flag > environment > config file > default; every bad-config error names
the file, the line and the key; check-config and --version; SIGHUP reloads what can
change (log level, workers, TLS certificate) under load without dropping a session."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from proxy import __version__, protocol as p
from proxy.catalog.store import CatalogStore
from proxy.config import Upstream
from proxy.settings import SETTINGS, ConfigError, config_path, load_file, resolve
from proxy.training.jobs import JobRunner

from tests.support.clients import client_env, program

ROOT = Path(__file__).resolve().parents[1]


def mlproxy(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT,
                          env={k: v for k, v in {**os.environ, **(env or {})}.items()
                               if not (k.startswith("MLPROXY_") and k not in (env or {}))})


def write(tmp_path: Path, text: str, name: str = "mlproxy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- precedence ------------------------------------------------------------------------------

def test_precedence_flag_env_file_default(tmp_path):
    path = write(tmp_path, 'workers = 2\nlog_level = "warning"\nrelay = "python"\n'
                           'job_sweep = 5\n')
    flags = {s.name: None for s in SETTINGS} | {"workers": 4}
    env = {"MLPROXY_WORKERS": "3", "MLPROXY_LOG_LEVEL": "error", "MLPROXY_OTHER": "x"}
    got = resolve(flags, env, path)
    assert (got["workers"].value, got["workers"].source) == (4, "flag --workers")
    assert (got["log_level"].value, got["log_level"].source) == ("error", "env MLPROXY_LOG_LEVEL")
    assert (got["relay"].value, got["relay"].source) == ("python", f"file {path}:3")
    assert (got["job_sweep"].value, got["job_sweep"].source) == (5.0, f"file {path}:4")
    assert (got["listen"].value, got["listen"].source) == (("127.0.0.1", 6543), "default")
    assert got["tls_required"].value is False
    # Every setting is in the listing, each with its source.
    assert [row[0] for row in got.rows()] == [s.name for s in SETTINGS]
    # Which file: --config over MLPROXY_CONFIG; an empty variable is no file.
    env = {"MLPROXY_CONFIG": "/etc/mlproxy.toml"}
    assert config_path(path, env) == path
    assert config_path(None, env) == Path("/etc/mlproxy.toml")
    assert config_path(None, {"MLPROXY_CONFIG": ""}) is None


def test_serve_logs_each_setting_and_its_source(fresh_proxy, tmp_path):
    path = write(tmp_path, 'log_level = "debug"\nworkers = 2\nshutdown_grace = 3\n')
    proxy = fresh_proxy("--config", str(path), "--shutdown-grace", "4",
                        env={"MLPROXY_WORKERS": "3"})
    assert proxy.wait_for_log("setting shutdown_grace=4.0 (from flag --shutdown-grace")
    log = proxy.read_log()
    assert "setting workers=3 (from env MLPROXY_WORKERS" in log
    assert f"setting log_level=debug (from file {path}:1" in log
    assert "setting relay=native (from default" in log
    with psycopg.connect(proxy.dsn()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_config_from_environment_variable_and_old_flags(fresh_proxy, tmp_path):
    path = write(tmp_path, 'relay = "python"\nlog_level = "debug"\n')
    proxy = fresh_proxy("--workers", "2", "--job-sweep", "7", "--relay", "native",
                        env={"MLPROXY_CONFIG": str(path)})
    assert proxy.wait_for_log("setting relay=native (from flag --relay")
    assert f"setting log_level=debug (from file {path}:2" in proxy.read_log()
    assert "setting job_sweep=7.0 (from flag --job-sweep" in proxy.read_log()


# -- bad configs: serve and check-config stop with the same message --------------------------

BAD = [
    ("unknown key", 'workers = 2\n\n# a comment\nwrokers = 3\n',
     ":4: unknown setting 'wrokers' (did you mean workers?)"),
    ("bad type", 'log_level = "info"\nworkers = "two"\n',
     ":2: bad type for 'workers': expected an integer, got a string (\"two\")"),
    ("bool for int", 'workers = true\n', ":1: bad type for 'workers': expected an integer, "
                                         "got a boolean (true)"),
    ("bad choice", 'log_level = "loud"\n',
     ":1: bad value for 'log_level': expected one of debug, info, warning, error, got 'loud'"),
    ("below minimum", 'workers = 0\n', ":1: bad value for 'workers': must be at least 1"),
    ("bad listen", 'listen = "localhost:http"\n',
     ":1: bad value for 'listen': expected HOST:PORT, got 'localhost:http'"),
    ("bad upstream", 'upstream = "mysql://db"\n',
     ":1: bad value for 'upstream': upstream URL must start with postgresql://"),
    ("missing certificate", 'tls_cert = "/nonexistent/cert.pem"\n',
     ":1: bad value for 'tls_cert': no such file: '/nonexistent/cert.pem'"),
    ("a table", 'workers = 1\n[server]\nlisten = "1.2.3.4:5"\n',
     ":2: unknown setting 'server'"),
    # The key's own line, not a line of a multi-line string that mentions it.
    ("key after a multi-line string", 'upstream = """\nrelay = 1\n"""\nrelay = "fast"\n',
     ":1: bad value for 'upstream'"),
    ("quoted key", 'workers = 1\n"relay" = "fast"\n', ":2: bad value for 'relay'"),
    ("syntax error", 'workers = 1\nlog_level = "debug\nrelay = "python"\n',
     ":2: TOML syntax error: Illegal character '\\n' (column 19)"),
    ("syntax error at the end", 'workers = 1\nlog_level = [1,\n',
     ":2: TOML syntax error: Invalid value (at end of file)"),
    ("tls_required without a certificate", 'tls_required = true\n',
     "tls_required (file {path}:1) needs tls_cert"),
    ("tls_key without a certificate", 'workers = 1\ntls_key = "{path}"\n',
     "tls_key (file {path}:2) needs tls_cert"),
    ("string for bool", 'tls_required = "maybe"\n',
     ":1: bad type for 'tls_required': expected a boolean, got a string (\"maybe\")"),
    ("string for number", 'shutdown_grace = "soon"\n',
     ":1: bad type for 'shutdown_grace': expected a number, got a string (\"soon\")"),
    ("integer for string", 'log_level = 3\n',
     ":1: bad type for 'log_level': expected a string, got an integer (3)"),
    ("array", 'workers = [1]\n', ":1: bad type for 'workers': expected an integer, got an array"),
    ("negative number", 'shutdown_grace = -1\n',
     ":1: bad value for 'shutdown_grace': must be at least 0, got -1"),
    ("fraction below minimum", 'job_sweep = 0.01\n',
     ":1: bad value for 'job_sweep': must be at least 0.1, got 0.01"),
    ("port out of range", 'listen = "127.0.0.1:70000"\n',
     ":1: bad value for 'listen': port 70000 is out of range (0..65535)"),
    ("empty path", 'data_dir = ""\n',
     ":1: bad value for 'data_dir': expected a path, got an empty string"),
    ("bad upstream port", 'upstream = "postgresql://db:notaport/app"\n',
     ":1: bad value for 'upstream': bad port in upstream URL"),
]


@pytest.mark.parametrize("text, expected", [(t, e) for _, t, e in BAD],
                         ids=[name for name, _, _ in BAD])
def test_bad_config_is_named(tmp_path, text, expected):
    path = write(tmp_path, text.format(path=tmp_path / "mlproxy.toml"))
    expected = expected.format(path=path)
    message = expected if expected.startswith("tls_") else f"{path}{expected}"
    with pytest.raises(ConfigError) as info:
        resolve({}, {}, path)
    assert message in str(info.value)
    checked = mlproxy("check-config", str(path))
    assert checked.returncode == 1 and message in checked.stderr, checked
    assert not checked.stdout


def test_bad_config_stops_serve(tmp_path):
    path = write(tmp_path, 'workers = 2\nwrokers = 3\n')
    started = mlproxy("serve", "--config", str(path), "--listen", "127.0.0.1:0",
                      "--upstream", "postgresql:///?host=/nonexistent")
    assert started.returncode == 2
    assert f"mlproxy: {path}:2: unknown setting 'wrokers'" in started.stderr
    missing = mlproxy("serve", "--config", str(tmp_path / "absent.toml"))
    assert missing.returncode == 2
    assert f"mlproxy: {tmp_path / 'absent.toml'}: no such config file" in missing.stderr
    bad_env = mlproxy("serve", "--listen", "127.0.0.1:0", env={"MLPROXY_WORKERS": "many"})
    assert bad_env.returncode == 2
    assert "environment MLPROXY_WORKERS: bad value for 'workers'" in bad_env.stderr


def test_unreadable_config_is_named(tmp_path):
    """A file that is not UTF-8 (the line and column of the first bad byte) or not a
    file at all: check-config and serve both stop, naming it."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'workers = 1\n# caf\xe9\nlog_level = "info"\n')
    for bad, message in (
            (path, f"{path}:2: cannot read config file: not UTF-8 (byte 0xe9 at column 6)"),
            (tmp_path, f"{tmp_path}: cannot read config file: [Errno 21] Is a directory")):
        checked = mlproxy("check-config", str(bad))
        assert checked.returncode == 1 and message in checked.stderr, checked
        started = mlproxy("serve", "--config", str(bad), "--listen", "127.0.0.1:0")
        assert started.returncode == 2 and f"mlproxy: {message}" in started.stderr, started


def test_bad_flag_and_environment_values_stop_serve(tmp_path):
    """A flag is checked by the same rules as the file (argparse names the flag), and
    so is a variable; an empty variable counts as unset (the file decides)."""
    flag = mlproxy("serve", "--workers", "0", "--listen", "127.0.0.1:0")
    assert flag.returncode == 2
    assert "argument --workers: must be at least 1, got '0'" in flag.stderr
    for name, value, message in (
            ("MLPROXY_TLS_REQUIRED", "maybe", "bad value for 'tls_required': expected true "
                                              "or false, got 'maybe'"),
            ("MLPROXY_JOB_SWEEP", "-3", "bad value for 'job_sweep': must be at least 0.1"),
            ("MLPROXY_LISTEN", "here", "bad value for 'listen': expected HOST:PORT")):
        started = mlproxy("serve", env={name: value})
        assert started.returncode == 2, started
        assert f"mlproxy: environment {name}: {message}" in started.stderr, started
    path = write(tmp_path, 'relay = "python"\n')
    got = resolve({}, {"MLPROXY_RELAY": ""}, path)
    assert (got["relay"].value, got["relay"].source) == ("python", f"file {path}:1")


def test_check_config_accepts_a_good_file(tmp_path):
    path = write(tmp_path, '# mlproxy settings\nlisten = "0.0.0.0:6543"\nworkers = 2\n'
                           'log_level = "DEBUG"\ntls_required = false\n')
    checked = mlproxy("check-config", str(path))
    assert checked.returncode == 0, checked
    assert checked.stdout.splitlines() == [
        "listen = 0.0.0.0:6543", "tls_required = false", "workers = 2", "log_level = debug",
        f"{path}: OK"]
    assert load_file(path)["workers"].source == f"file {path}:3"
    missing = mlproxy("check-config", str(tmp_path / "absent.toml"))
    assert missing.returncode == 1
    assert f"{tmp_path / 'absent.toml'}: no such config file" in missing.stderr


def test_version():
    shown = mlproxy("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"mlproxy {__version__}"
    assert __version__ == "0.1.0"


def test_help_lists_every_setting():
    shown = mlproxy("serve", "--help")
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    for setting in SETTINGS:
        assert setting.flag in text and setting.env in text, setting.name


# -- SIGHUP --------------------------------------------------------------------------------------

class Load:
    """Sessions that run statements in a loop until stopped; errors are kept."""

    def __init__(self, dsn: str, sessions: int = 6) -> None:
        self.dsn, self.stop, self.errors = dsn, threading.Event(), []
        self.done = [0] * sessions
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(sessions)]

    def _run(self, i: int) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                pid = conn.info.backend_pid
                while not self.stop.is_set():
                    assert conn.execute("SELECT %s::int, pg_backend_pid()", (i,)).fetchone() \
                        == (i, pid)
                    self.done[i] += 1
        except Exception as exc:  # noqa: BLE001 - the test asserts there are none
            self.errors.append(exc)

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def hup(proxy, expected_log: str) -> None:
    proxy.proc.send_signal(signal.SIGHUP)
    assert proxy.wait_for_log(expected_log), proxy.read_log()


def test_sighup_reloads_log_level_and_workers_under_load(fresh_proxy, tmp_path):
    path = write(tmp_path, 'log_level = "info"\nworkers = 1\nrelay = "native"\n')
    proxy = fresh_proxy("--config", str(path))
    with Load(proxy.dsn()) as load:
        time.sleep(0.3)
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1/0")
            time.sleep(0.2)
            assert "upstream error session=" not in proxy.read_log()  # not at INFO

            write(tmp_path, 'log_level = "debug"\nworkers = 3\nrelay = "python"\n')
            hup(proxy, "reload: workers=3")
            log = proxy.read_log()
            assert f"reload: log_level=debug (from file {path}:1)" in log
            assert "reload: relay changed but need a restart to take effect" in log
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1/0")  # now logged at DEBUG
            assert proxy.wait_for_log("upstream error session=")

            before = sum(load.done)
            write(tmp_path, 'log_level = "warning"\nworkers = "x"\n')  # refused as a whole
            hup(proxy, f"reload: settings unchanged: {path}:2: bad type for 'workers'")
            write(tmp_path, 'log_level = "info"\nworkers = 1\n')
            hup(proxy, "reload: workers=1")
            assert conn.execute("SELECT 'still here'").fetchone() == ("still here",)
            time.sleep(0.3)
        assert sum(load.done) > before
    assert load.errors == [] and all(load.done), (load.errors, load.done)
    assert proxy.alive()
    assert "Traceback" not in proxy.read_log()


PGBENCH_SCRIPT = """\
\\set x random(1, 1000000)
BEGIN;
SELECT :x::int + 1;
SELECT pg_backend_pid();
END;
"""


def test_sighup_reloads_under_pgbench(fresh_proxy, tmp_path):
    """pgbench through the proxy (prepared and simple sessions held for the whole run, and
    a connection per transaction) while SIGHUP reloads six times: no client aborted, no
    failed transaction, each reload in force (the log level shows in what is logged), a
    restart-only setting changed in the file named as needing a restart, a bad file
    refused as a whole."""
    path = write(tmp_path, 'log_level = "info"\nworkers = 1\n')
    proxy = fresh_proxy("--config", str(path))
    script = write(tmp_path, PGBENCH_SCRIPT, "load.sql")
    runs = [subprocess.Popen(
        [program("pgbench"), "-h", proxy.host, "-p", str(proxy.port), "-U", "postgres", "-n",
         "-M", mode, *extra, "-c", "3", "-j", "1", "-T", "10", "-f", str(script), "postgres"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client_env())
        for mode, extra in (("prepared", []), ("simple", []), ("extended", ["-C"]))]

    def opened() -> int:  # pgbench -C opens connections all along, logged at INFO
        return proxy.read_log().count("connection opened session=")

    def reload(text: str, expected: str) -> None:
        write(tmp_path, text)
        hup(proxy, expected)
        assert all(run.poll() is None for run in runs), "pgbench ended before the reloads did"

    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            pid = conn.info.backend_pid
            deadline = time.monotonic() + 5
            while opened() < 10 and time.monotonic() < deadline:  # the load is running
                time.sleep(0.05)
            reload('log_level = "debug"\nworkers = 2\n', "reload: workers=2")
            assert f"reload: log_level=debug (from file {path}:1)" in proxy.read_log()
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1/0")
            assert proxy.wait_for_log("upstream error session=")  # logged at DEBUG

            reload('log_level = "warning"\nworkers = 3\n', "reload: workers=3")
            assert "reload: log_level=warning" in proxy.read_log()  # said even at WARNING
            time.sleep(0.3)  # records of connections before the change are written
            quiet = opened()
            time.sleep(0.7)
            assert opened() == quiet  # connections go on, INFO is no longer logged

            reload('log_level = "info"\nworkers = 1\nrelay = "python"\njob_sweep = 5\n',
                   "reload: workers=1")
            assert proxy.wait_for_log(
                "reload: job_sweep, relay changed but need a restart to take effect")
            deadline = time.monotonic() + 5
            while opened() == quiet and time.monotonic() < deadline:
                time.sleep(0.05)
            assert opened() > quiet  # INFO again

            # Until a restart, every reload says so again (as Postgres does).
            restart = "reload: job_sweep, relay changed but need a restart"
            before = proxy.read_log().count(restart)
            proxy.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while proxy.read_log().count(restart) == before and time.monotonic() < deadline:
                time.sleep(0.05)
            assert proxy.read_log().count(restart) == before + 1
            reload('log_level = "debug"\nworkers = 0\n',
                   f"reload: settings unchanged: {path}:2: bad value for 'workers'")
            reload('log_level = "info"\nworkers = 4\n', "reload: workers=4")
            assert conn.execute("SELECT pg_backend_pid()").fetchone() == (pid,)
    finally:
        outputs = [run.communicate(timeout=60) for run in runs]
    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == 0, (out, err)
        assert "aborted" not in out + err, (out, err)
        assert re.search(r"number of failed transactions: 0\b", out), out
        processed = re.search(r"number of transactions actually processed: (\d+)", out)
        assert processed and int(processed.group(1)) > 0, out
    assert proxy.alive()
    assert "Traceback" not in proxy.read_log()


def test_set_workers_resizes_the_job_slots():
    """The limit SIGHUP changes: jobs running meanwhile keep their slots, a slot given
    up is taken out when its job ends."""
    async def run() -> None:
        runner = JobRunner(CatalogStore(Upstream()), Path("/nonexistent"), Path("/nonexistent"),
                           workers=1)

        async def running(n: int) -> int:  # how many slots can be held at once
            held = 0
            for _ in range(n):
                try:
                    await asyncio.wait_for(runner._slots.acquire(), 0.1)
                    held += 1
                except TimeoutError:
                    break
            for _ in range(held):
                runner._slots.release()
            await asyncio.sleep(0)
            return held

        assert await running(5) == 1
        runner.set_workers(3)
        assert await running(5) == 3
        await runner._slots.acquire()  # a job runs while the limit shrinks
        runner.set_workers(1)
        runner._slots.release()
        await asyncio.sleep(0.01)
        assert await running(5) == 1
        runner.set_workers(2)
        assert await running(5) == 2
        await runner.close()
    asyncio.run(run())


def test_sighup_reloads_the_tls_certificate(fresh_proxy, tmp_path):
    certs = {}
    for name in ("alpha", "beta"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", f"/CN={name}", "-keyout", str(tmp_path / f"{name}.key"),
                        "-out", str(tmp_path / f"{name}.pem")], check=True, capture_output=True)
        certs[name] = ssl.PEM_cert_to_DER_cert((tmp_path / f"{name}.pem").read_text())
    path = write(tmp_path, f'tls_cert = "{tmp_path}/alpha.pem"\ntls_key = "{tmp_path}/alpha.key"\n')
    proxy = fresh_proxy("--config", str(path))

    def served_certificate() -> bytes:
        raw = socket.create_connection((proxy.host, proxy.port))
        raw.sendall(struct.pack("!II", 8, p.SSL_REQUEST_CODE))
        assert raw.recv(1) == b"S"
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)

    assert served_certificate() == certs["alpha"]
    tls_dsn = proxy.dsn().replace("sslmode=disable", "sslmode=require")
    with psycopg.connect(tls_dsn) as before:
        write(tmp_path, f'tls_cert = "{tmp_path}/beta.pem"\ntls_key = "{tmp_path}/beta.key"\n')
        hup(proxy, "reload: tls_cert=")
        assert served_certificate() == certs["beta"]
        assert before.execute("SELECT 'old session'").fetchone() == ("old session",)
        # A key that does not match the certificate is refused; beta stays.
        write(tmp_path, f'tls_cert = "{tmp_path}/alpha.pem"\ntls_key = "{tmp_path}/beta.key"\n')
        hup(proxy, "reload: tls_cert, tls_key not changed")
        assert served_certificate() == certs["beta"]


def test_passwords_are_not_shown(tmp_path):
    path = write(tmp_path, 'upstream = "postgresql://svc:s3cr%40t@db.example:5432/app"\n')
    checked = mlproxy("check-config", str(path))
    assert checked.returncode == 0, checked
    assert "upstream = postgresql://svc:***@db.example:5432/app" in checked.stdout
    assert "s3cr" not in checked.stdout
    got = resolve({"upstream": "postgresql://svc@db/app?password=hush&sslmode=disable"}, {}, None)
    assert "hush" not in str(got.rows())


def test_asyncpg_pool_reconnection_is_logged_in_one_line():
    """asyncpg's pool logs a failed reconnection with a traceback of its internals;
    the proxy's log has the cause in one line (and no 'Traceback' to alarm anyone)."""
    import io
    import logging

    from proxy import cli

    stream = io.StringIO()
    logger = logging.getLogger("asyncpg.pool.test")
    logger.addHandler(logging.StreamHandler(stream))
    logger.addFilter(cli._cause_in_one_line)
    logger.propagate = False
    try:
        raise ConnectionRefusedError(111, "Connect call failed")
    except ConnectionRefusedError:
        logger.warning("error while connecting to %s to maintain the pool floor; retrying", "x", exc_info=True)
    assert stream.getvalue() == ("error while connecting to x to maintain the pool floor; retrying: "
                                 "ConnectionRefusedError: [Errno 111] Connect call failed\n")
