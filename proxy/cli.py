"""Command line: `mlproxy serve`, `mlproxy check-config`, `mlproxy demo`, `mlproxy report`.

Each subcommand is one `add_<name>` function registering its parser and the function
that runs it. Settings come from proxy/settings.py (flags, MLPROXY_* environment,
`--config` TOML file, defaults). With no upstream configured, `serve` starts the
embedded Postgres under the data directory and puts the proxy in front of it;
`upstream` points it at any existing server instead. SIGINT/SIGTERM shut down
gracefully; SIGHUP reads the settings again (proxy/reload.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.handlers
import os
import queue
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import __version__
from .config import Config, Upstream
from .embedded import EmbeddedPostgres, default_data_dir
from .errors import file_error
from .reload import Reloader
from .report.command import add_parser as add_report
from .settings import SETTINGS, ConfigError, add_arguments, check_file, config_path, resolve

if TYPE_CHECKING:  # imported when serving: check-config and --version start fast
    from .ml_runtime import MLRuntime
    from .server import ProxyServer

log = logging.getLogger("mlproxy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlproxy",
        description="PostgreSQL wire-protocol proxy that brings Redshift ML "
                    "(CREATE MODEL, model functions in SQL) to any Postgres.")
    parser.add_argument("--version", action="version", version=f"mlproxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve(sub)
    add_check_config(sub)
    add_demo(sub)
    add_report(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


# -- mlproxy serve -----------------------------------------------------------------------------

def add_serve(sub: argparse._SubParsersAction) -> None:
    serve_parser = sub.add_parser(
        "serve", help="run the proxy (in front of an embedded Postgres unless --upstream)",
        description="Run the proxy. Without --upstream, an embedded Postgres is started "
                    "under the data directory and used as the upstream. Each setting is "
                    "taken from its flag, else its MLPROXY_* environment variable, else "
                    "the --config file, else its default. SIGHUP reads them again and applies "
                    "those marked 'reloaded on SIGHUP'; SIGINT/SIGTERM stop gracefully. "
                    "The admin console is the virtual database mlproxy on the same port "
                    "(psql -d mlproxy, as a role in admin_users; SHOW HELP lists its "
                    "commands); --metrics-listen serves Prometheus metrics.")
    add_arguments(serve_parser)
    serve_parser.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from .ml_runtime import MLRuntime
    environ: Mapping[str, str] = os.environ
    flags = {s.name: getattr(args, s.name) for s in SETTINGS}
    path = config_path(args.config, environ)
    try:
        resolved = resolve(flags, environ, path)
        config = Config.from_settings(resolved.plain(), default_data_dir())
    except (ConfigError, ValueError) as exc:
        print(f"mlproxy: {exc}", file=sys.stderr)
        return 2
    listener = _setup_logging(config.log_level)
    # Until the reload handler is installed, a SIGHUP (an early `systemctl reload`)
    # must not end the process, as its default action would (a handler, not SIG_IGN,
    # which the embedded Postgres and workers would inherit).
    signal.signal(signal.SIGHUP, _early_hangup)
    try:
        for name, value, source, on_change in resolved.rows():
            log.debug("setting %s=%s (from %s; on change: %s)", name, value, source, on_change)
        for directory in MLRuntime.directories(config):
            problem = _not_writable(directory)
            if problem is not None:
                print(f"mlproxy: directory {directory} is not writable: {problem}",
                      file=sys.stderr)
                return 1
        if config.training_cluster:
            from .training.cluster import check_at_startup
            problem = check_at_startup(config.training_cluster, config.training_cluster_fallback)
            if problem is not None:
                print(f"mlproxy: {problem}", file=sys.stderr)
                return 1
        reloader = Reloader(lambda: resolve(flags, environ, path), resolved)
        return _run(serve(config, upstream_url=resolved["upstream"].value,
                          reloader=reloader, demo=resolved["demo"].value))
    finally:
        listener.stop()


# -- mlproxy check-config FILE -------------------------------------------------------------------

def add_check_config(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "check-config", help="check a config file (exit 0 if serve would accept it, else 1)",
        description="Check a TOML config file as `serve --config FILE` would, with the same "
                    "messages; prints the settings it gives. Exit status 0 or 1.")
    parser.add_argument("file", type=Path, metavar="FILE")
    parser.set_defaults(run=run_check_config)


def run_check_config(args: argparse.Namespace) -> int:
    try:
        resolved = check_file(args.file)
    except ConfigError as exc:
        print(f"mlproxy: {exc}", file=sys.stderr)
        return 1
    for name, value, source, _ in resolved.rows():
        if source != "default":
            print(f"{name} = {value}")
    print(f"{args.file}: OK")
    return 0


# -- mlproxy demo ------------------------------------------------------------------------------

def add_demo(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo", help="load the demo table `customers` (the README's walk-through)",
        description="Create the table `customers` (6000 generated customers, churned or not) "
                    "in the upstream (default: the embedded Postgres under the data "
                    "directory), as the proxy's service identity. An existing table is kept "
                    "unless --replace.")
    add_arguments(parser, only=("upstream", "data_dir"))
    parser.add_argument("--database", default=None,
                        help="database to create the table in (default: the upstream URL's, "
                             "or postgres)")
    parser.add_argument("--replace", action="store_true",
                        help="drop an existing table `customers` and load it again")
    parser.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from .demo import load
    flags = {"upstream": args.upstream, "data_dir": args.data_dir}
    try:
        resolved = resolve(flags, os.environ, config_path(args.config, os.environ))
    except ConfigError as exc:
        print(f"mlproxy: {exc}", file=sys.stderr)
        return 2
    url = resolved["upstream"].value
    embedded = None
    if url:
        upstream = Upstream.from_url(url)
    else:
        embedded = EmbeddedPostgres(resolved["data_dir"].value or default_data_dir())
        upstream = embedded.start()
    try:
        database = args.database or (upstream.database if url else "postgres")
        print(f"mlproxy demo: {_run(load(upstream, database, replace=args.replace))}")
        return 0
    except Exception as exc:  # noqa: BLE001 - report and exit, whatever failed
        print(f"mlproxy demo: could not load the demo table: {exc}", file=sys.stderr)
        return 1
    finally:
        if embedded is not None:
            embedded.stop()


def _not_writable(directory: Path) -> str | None:
    """Why `directory` (created if missing) cannot take new files, or None: checked
    at startup, so that a read-only or full data directory stops `serve` at once
    instead of failing every CREATE MODEL later."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return file_error(exc, "create directory").message
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".mlproxy-check-")
    except OSError as exc:
        return file_error(exc, "create file").message
    try:
        os.write(fd, b"mlproxy")
        os.fsync(fd)
    except OSError as exc:
        return file_error(exc, "write to file", probe).message
    finally:
        os.close(fd)
        os.unlink(probe)
    return None


def _cause_in_one_line(record: logging.LogRecord) -> bool:
    """asyncpg's pool logs each failed reconnection (an upstream restart, a backend
    ended by an administrator) with a traceback of its own internals: the cause in
    one line says as much, as mlproxy's own reconnection messages do."""
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
        record.args = None
        record.exc_info = record.exc_text = None
    return True


def _setup_logging(level: str) -> logging.handlers.QueueListener:
    """Log records go through a queue to a thread that writes them, so a slow
    stderr (a full pipe, a stalled terminal) never blocks the event loop."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    records: queue.SimpleQueue = queue.SimpleQueue()
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    root.setLevel(getattr(logging, level.upper()))
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # chatty at INFO
    logging.getLogger("asyncpg.pool").addFilter(_cause_in_one_line)
    listener = logging.handlers.QueueListener(records, handler)
    listener.start()
    return listener


def _run(coro) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.run(coro)
    return uvloop.run(coro)


async def serve(config: Config, upstream_url: str | None = None,
                reloader: Reloader | None = None, demo: bool = False) -> int:
    """Run until SIGINT/SIGTERM (SIGHUP: `reloader` reads the settings again);
    returns the process exit code."""
    from .ml_runtime import MLRuntime
    from .server import ProxyServer
    embedded = None
    if config.upstream is None:
        embedded = EmbeddedPostgres(config.data_dir)
        try:
            config.upstream = await asyncio.to_thread(embedded.start)
        except Exception as exc:  # noqa: BLE001 - report and exit, whatever failed
            log.error("could not start the embedded postgres: %s", exc)
            return 1
    if demo:
        from .demo import load
        database = "postgres" if embedded else config.upstream.database
        try:
            log.info("demo: %s", await load(config.upstream, database))
        except Exception as exc:  # noqa: BLE001 - report and exit, whatever failed
            log.error("demo: could not load the demo table: %s", exc)
            if embedded:
                await asyncio.to_thread(embedded.stop)
            return 1
    from .training.snapshot_store import SnapshotStoreError
    try:
        ml = MLRuntime(config)
    except SnapshotStoreError as exc:
        log.error("%s", exc)
        if embedded:
            await asyncio.to_thread(embedded.stop)
        return 1
    server = ProxyServer(config, ml.interceptors)
    try:
        await server.start()
    except OSError as exc:
        log.error("could not listen on %s:%d: %s", config.listen_host, config.listen_port, exc)
        if embedded:
            await asyncio.to_thread(embedded.stop)
        return 1
    ml.start()
    stop = asyncio.Event()
    console, metrics = _observe(config, server, ml, reloader, stop)
    if metrics is None and config.metrics_listen is not None:
        await server.shutdown()
        await _close_ml(ml)
        if embedded:
            await asyncio.to_thread(embedded.stop)
        return 1
    user, dbname = _connect_identity(upstream_url, embedded is not None)
    host = config.listen_host if config.listen_host not in ("0.0.0.0", "::") else "127.0.0.1"
    print(f"mlproxy ready: psql \"postgresql://{user}@{host}:{server.port}/{dbname}\"",
          flush=True)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if reloader is not None:
        _reload_hooks(reloader, config, server, ml, console)
        loop.add_signal_handler(signal.SIGHUP, reloader.reload)
    await stop.wait()
    console.close()
    await server.shutdown()
    if metrics is not None:
        metrics.stop()
    await _close_ml(ml)
    if embedded:
        await asyncio.to_thread(embedded.stop)
    log.info("stopped")
    return 0


#: how long the ML runtime (jobs, endpoints, catalog pools and listeners) may take to
#: close once the sessions are gone, before the proxy exits without waiting further
ML_CLOSE_SECONDS = 10.0


async def _close_ml(ml) -> None:
    """Close the ML runtime, within ML_CLOSE_SECONDS: a stop must end the process,
    whatever a task of the runtime does with its cancellation. (A SIGTERM right
    after start, while the catalogs were opening, once left the process running:
    asyncio.wait_for lost the sweep's cancellation; see tests/proxy/test_cancellation.)"""
    try:
        async with asyncio.timeout(ML_CLOSE_SECONDS):
            await ml.close()
    except TimeoutError:
        log.warning("the ML runtime did not close within %.0f s: exiting without it", ML_CLOSE_SECONDS)


def _early_hangup(signum: int, frame: object) -> None:
    log.warning("SIGHUP while starting: ignored (settings are read as the proxy starts)")


def _observe(config: Config, server: ProxyServer, ml: MLRuntime, reloader: Reloader | None,
             stop: asyncio.Event):
    """The admin console (on the proxy's port) and, with --metrics-listen, the
    Prometheus endpoint, both reading the one stats source; (console, metrics), metrics
    None when it is off or could not listen (logged)."""
    from .observe.commands import Commands
    from .observe.console import AdminConsole
    from .observe.stats import STATS
    STATS.server, STATS.jobs = server, ml.jobs
    console = AdminConsole(Commands(STATS, reloader, ml.catalog, stop.set),
                           config.admin_users, config.admin_database)
    server.console = console
    metrics = None
    if config.metrics_listen is not None:
        from .observe.metrics import MetricsServer
        host, port = config.metrics_listen
        try:
            metrics = MetricsServer.start(STATS, host, port)
        except OSError as exc:
            log.error("could not serve metrics on %s:%d: %s", host, port, exc)
            return console, None
        log.info("metrics on http://%s:%d/metrics", host, metrics.port)
    return console, metrics


def _reload_hooks(reloader: Reloader, config: Config, server: ProxyServer,
                  ml: MLRuntime, console: Any = None) -> None:
    """What SIGHUP can change in a running proxy (proxy/reload.py)."""
    def log_level(new: dict[str, Any]) -> None:
        logging.getLogger().setLevel(getattr(logging, new["log_level"].upper()))
        config.log_level = new["log_level"]

    def workers(new: dict[str, Any]) -> None:
        ml.jobs.set_workers(new["workers"])
        config.training_workers = new["workers"]

    def tls(new: dict[str, Any]) -> None:  # for connections from now on
        server.reload_tls(new["tls_cert"], new["tls_key"])
        config.tls_cert, config.tls_key = new["tls_cert"], new["tls_key"]

    def shutdown_grace(new: dict[str, Any]) -> None:
        config.shutdown_grace = new["shutdown_grace"]

    from .ml_runtime import endpoint_settings

    def endpoints(new: dict[str, Any]) -> None:  # for statements from now on
        config.endpoints = dict(new["endpoint"])
        config.allow_endpoint_urls = new["allow_endpoint_urls"]
        config.endpoint_timeout = new["endpoint_timeout"]
        config.endpoint_connections = new["endpoint_connections"]
        ml.endpoints.configure(endpoint_settings(config))

    reloader.hook(("log_level",), log_level)
    reloader.hook(("endpoint", "allow_endpoint_urls", "endpoint_timeout", "endpoint_connections"),
                  endpoints)
    reloader.hook(("workers",), workers)
    reloader.hook(("tls_cert", "tls_key"), tls)
    reloader.hook(("shutdown_grace",), shutdown_grace)

    def admin(new: dict[str, Any]) -> None:  # for console logins from now on
        config.admin_users, config.admin_database = new["admin_users"], new["admin_database"]
        if console is not None:
            console.admin_users, console.admin_database = config.admin_users, config.admin_database

    reloader.hook(("admin_users", "admin_database"), admin)


def _connect_identity(upstream_url: str | None, embedded: bool) -> tuple[str, str]:
    if embedded or not upstream_url:
        return "postgres", "postgres"
    parts = urlsplit(upstream_url)
    user = parts.username or os.environ.get("USER", "postgres")
    dbname = parts.path.lstrip("/") or user
    return user, dbname
