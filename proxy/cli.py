"""Command line: `mlproxy serve`.

With no upstream configured, `serve` starts the embedded Postgres under the data
directory and puts the proxy in front of it; `--upstream` (or MLPROXY_UPSTREAM)
points it at any existing server instead. SIGINT/SIGTERM shut down gracefully.
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
from pathlib import Path
from urllib.parse import urlsplit

from .config import Config, Upstream
from .embedded import EmbeddedPostgres, default_data_dir
from .ml_runtime import MLRuntime
from .server import ProxyServer

log = logging.getLogger("mlproxy")


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    try:
        return host.strip("[]") or "127.0.0.1", int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlproxy",
        description="PostgreSQL wire-protocol proxy that brings Redshift ML "
                    "(CREATE MODEL, model functions in SQL) to any Postgres.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="run the proxy (in front of an embedded Postgres unless --upstream)",
        description="Run the proxy. Without --upstream, an embedded Postgres is started "
                    "under the data directory and used as the upstream.")
    serve.add_argument("--listen", type=_listen,
                       default=os.environ.get("MLPROXY_LISTEN", "127.0.0.1:6543"),
                       metavar="HOST:PORT",
                       help="address to accept clients on (default 127.0.0.1:6543; env MLPROXY_LISTEN)")
    serve.add_argument("--upstream", default=os.environ.get("MLPROXY_UPSTREAM"),
                       metavar="URL",
                       help="upstream server, e.g. postgresql://mlproxy:secret@db.example:5432 "
                            "or postgresql:///?host=/var/run/postgresql (env MLPROXY_UPSTREAM); "
                            "clients log in as themselves, the URL's user and password are the "
                            "proxy's own identity for the model catalog; default: the embedded "
                            "Postgres")
    serve.add_argument("--data-dir", type=Path, default=None,
                       help=f"state directory: embedded Postgres data, training snapshots, "
                            f"compiled model cache "
                            f"(default {default_data_dir()}; env MLPROXY_DATA_DIR)")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate: terminate TLS at the proxy")
    serve.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    serve.add_argument("--tls-required", action="store_true",
                       default=os.environ.get("MLPROXY_TLS_REQUIRED", "").lower() in ("1", "true", "yes", "on"),
                       help="refuse clients that do not use TLS (FATAL 28000, as Postgres' "
                            "hostssl-only pg_hba.conf); needs --tls-cert (env MLPROXY_TLS_REQUIRED=1)")
    serve.add_argument("--shutdown-grace", type=float, default=10.0, metavar="SECONDS",
                       help="on SIGINT/SIGTERM, how long in-flight queries may run (default 10)")
    serve.add_argument("--workers", type=int, default=int(os.environ.get("MLPROXY_WORKERS", "1")),
                       metavar="N", help="training jobs that run at once, each in its own "
                                         "process (default 1; env MLPROXY_WORKERS)")
    serve.add_argument("--relay", default=os.environ.get("MLPROXY_RELAY", "native"),
                       choices=["native", "python"],
                       help="who relays sessions with nothing to intercept: a native thread "
                            "(default, when the extension is built) or the event loop "
                            "(env MLPROXY_RELAY)")
    serve.add_argument("--log-level", default=os.environ.get("MLPROXY_LOG_LEVEL", "info"),
                       choices=["debug", "info", "warning", "error"],
                       help="log verbosity (default info; env MLPROXY_LOG_LEVEL)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    listener = _setup_logging(args.log_level)
    if args.tls_key and not args.tls_cert:
        print("mlproxy: --tls-key needs --tls-cert", file=sys.stderr)
        return 2
    if args.tls_required and not args.tls_cert:
        print("mlproxy: --tls-required needs --tls-cert (and --tls-key)", file=sys.stderr)
        return 2
    config = Config(listen_host=args.listen[0], listen_port=args.listen[1],
                    data_dir=args.data_dir or default_data_dir(),
                    tls_cert=args.tls_cert, tls_key=args.tls_key, tls_required=args.tls_required,
                    shutdown_grace=args.shutdown_grace, log_level=args.log_level,
                    training_workers=max(1, args.workers), relay=args.relay)
    if args.upstream:
        try:
            config.upstream = Upstream.from_url(args.upstream)
        except ValueError as exc:
            print(f"mlproxy: {exc}", file=sys.stderr)
            return 2
    try:
        return _run(serve(config, upstream_url=args.upstream))
    finally:
        listener.stop()


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
    listener = logging.handlers.QueueListener(records, handler)
    listener.start()
    return listener


def _run(coro) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.run(coro)
    return uvloop.run(coro)


async def serve(config: Config, upstream_url: str | None = None) -> int:
    """Run until SIGINT/SIGTERM; returns the process exit code."""
    embedded = None
    if config.upstream is None:
        embedded = EmbeddedPostgres(config.data_dir)
        try:
            config.upstream = await asyncio.to_thread(embedded.start)
        except Exception as exc:  # noqa: BLE001 - report and exit, whatever failed
            log.error("could not start the embedded postgres: %s", exc)
            return 1
    ml = MLRuntime(config)
    server = ProxyServer(config, ml.interceptors)
    try:
        await server.start()
    except OSError as exc:
        log.error("could not listen on %s:%d: %s", config.listen_host, config.listen_port, exc)
        if embedded:
            await asyncio.to_thread(embedded.stop)
        return 1
    ml.start()
    user, dbname = _connect_identity(upstream_url, embedded is not None)
    host = config.listen_host if config.listen_host not in ("0.0.0.0", "::") else "127.0.0.1"
    print(f"mlproxy ready: psql \"postgresql://{user}@{host}:{server.port}/{dbname}\"",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.shutdown()
    await ml.close()
    if embedded:
        await asyncio.to_thread(embedded.stop)
    log.info("stopped")
    return 0


def _connect_identity(upstream_url: str | None, embedded: bool) -> tuple[str, str]:
    if embedded or not upstream_url:
        return "postgres", "postgres"
    parts = urlsplit(upstream_url)
    user = parts.username or os.environ.get("USER", "postgres")
    dbname = parts.path.lstrip("/") or user
    return user, dbname
