"""Proxy configuration: where to listen, which upstream to relay to, TLS, limits.

One dataclass, filled from the resolved settings (proxy.settings: flags, environment,
config file, defaults) by `Config.from_settings`, or built directly by tests and
embedders. The upstream is parsed from a libpq-style URL once, at start-up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class Upstream:
    """Address of the upstream server: a TCP host/port or a unix socket directory."""

    host: str = "127.0.0.1"
    port: int = 5432
    sslmode: str = "disable"  # disable | prefer | require
    url: str = ""
    # The proxy's own (service) identity, for the model catalog and training jobs;
    # clients always log in as themselves.
    user: str = "postgres"
    password: str | None = None

    @property
    def is_unix(self) -> bool:
        return self.host.startswith("/")

    @property
    def socket_path(self) -> str:
        return os.path.join(self.host, f".s.PGSQL.{self.port}")

    def connect_kwargs(self, database: str) -> dict[str, Any]:
        """asyncpg.connect() arguments for the service identity on `database`."""
        kwargs: dict[str, Any] = dict(host=self.host, port=self.port, user=self.user,
                                      database=database, password=self.password)
        if not self.is_unix and self.sslmode != "disable":
            kwargs["ssl"] = self.sslmode
        return kwargs

    @property
    def database(self) -> str:
        """The database the URL names (the service identity's name if none)."""
        parts = urlsplit(self.url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return unquote(parts.path.lstrip("/")) or query.get("dbname") or self.user

    def describe(self) -> str:
        return self.socket_path if self.is_unix else f"{self.host}:{self.port}"

    @classmethod
    def from_url(cls, url: str) -> "Upstream":
        """Parse postgresql://[user[:password]@]host[:port][/db][?host=/sock/dir&port=N&sslmode=M].

        Clients' user, password and database come from their own StartupMessage, so
        the upstream decides who gets in; the URL's user/password (or PGUSER and
        PGPASSWORD) are the proxy's service identity for the model catalog.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise ValueError(f"upstream URL must start with postgresql://, got {url!r}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        host = query.get("host") or unquote(parts.hostname or "") or "127.0.0.1"
        try:
            port = int(query.get("port") or parts.port or 5432)
        except ValueError as exc:
            raise ValueError(f"bad port in upstream URL {url!r}") from exc
        sslmode = query.get("sslmode", "disable" if host.startswith("/") else "prefer")
        if sslmode in ("allow",):
            sslmode = "prefer"
        if sslmode in ("verify-ca", "verify-full"):
            sslmode = "require"
        if sslmode not in ("disable", "prefer", "require"):
            raise ValueError(f"unsupported sslmode {sslmode!r}")
        user = unquote(parts.username) if parts.username else (
            query.get("user") or os.environ.get("PGUSER") or "postgres")
        password = unquote(parts.password) if parts.password else (
            query.get("password") or os.environ.get("PGPASSWORD"))
        return cls(host=host, port=port, sslmode=sslmode, url=url, user=user,
                   password=password or None)


@dataclass
class Config:
    listen_host: str = "127.0.0.1"
    listen_port: int = 6543
    upstream: Upstream | None = None  # None: start the embedded Postgres
    data_dir: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_required: bool = False  # refuse clients that do not switch to TLS
    shutdown_grace: float = 10.0
    connect_timeout: float = 10.0
    # A client must complete its first packet(s) within this time, like the
    # server's authentication_timeout; the upstream times out the auth exchange.
    startup_timeout: float = 60.0
    # Largest Query/Parse message the proxy examines for ML statements; larger ones
    # are streamed to the upstream unexamined, so memory stays bounded.
    intercept_limit: int = 16 << 20
    log_level: str = "info"
    # "native": sessions with nothing to intercept are relayed by the native pump
    # (pump.py) when it is built; "python": every chunk goes through the event loop.
    relay: str = "native"
    # A session holding prepared model statements is lent to the pump again only
    # after this many requests answered since its last model call (reply_rewrite.py).
    relend_after: int = 8
    # Training jobs run in this many worker processes at once (CREATE MODEL).
    training_workers: int = 1
    # Threads each training job may use (None: all cores).
    training_threads: int | None = None
    # Dask scheduler address the training jobs' search runs on (None: local only),
    # and whether a cluster that does not answer or is lost means local training.
    training_cluster: str | None = None
    training_cluster_fallback: bool = False
    # Seconds between two looks for interrupted training jobs (a failed look is
    # retried sooner, with backoff).
    job_sweep_interval: float = 30.0
    # Inference endpoints of remote models (CREATE MODEL ... SAGEMAKER): name -> URL,
    # whether a statement may give a URL, the request timeout, requests at once.
    endpoints: dict[str, str] = field(default_factory=dict)
    allow_endpoint_urls: bool = False
    endpoint_timeout: float = 30.0
    endpoint_connections: int = 4
    # Where training snapshots go (None: the data directory), and a claimed job's
    # lease in the catalog's queue (seconds).
    snapshot_store: str | None = None
    job_lease: float = 30.0
    # CREATE MODEL FROM 'path' reads model files only inside this directory (None: never).
    import_dir: Path | None = None
    # CREATE MODEL FROM 's3://...' reads only URLs that start with one of these.
    import_urls: tuple[str, ...] = ()
    # The largest model file CREATE MODEL imports.
    import_max_bytes: int = 256 << 20
    # The admin console (proxy/observe/console.py): roles that may use it, and the
    # upstream database their logins are authenticated against.
    admin_users: tuple[str, ...] = ()
    admin_database: str = "postgres"
    # Prometheus /metrics (proxy/observe/metrics.py): (host, port), or None: off.
    metrics_listen: tuple[str, int] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, values: dict[str, Any], default_data_dir: Path) -> "Config":
        """The config of `serve`, from proxy.settings' resolved values (by name)."""
        host, port = values["listen"]
        config = cls(listen_host=host, listen_port=port,
                     data_dir=values["data_dir"] or default_data_dir,
                     tls_cert=values["tls_cert"], tls_key=values["tls_key"],
                     tls_required=values["tls_required"],
                     shutdown_grace=values["shutdown_grace"], log_level=values["log_level"],
                     training_workers=values["workers"], relay=values["relay"],
                     relend_after=values["relend_after"],
                     job_sweep_interval=values["job_sweep"], import_dir=values["import_dir"],
                     import_urls=values["import_urls"], import_max_bytes=values["import_max_bytes"],
                     endpoints=dict(values["endpoint"]), allow_endpoint_urls=values["allow_endpoint_urls"],
                     endpoint_timeout=values["endpoint_timeout"],
                     endpoint_connections=values["endpoint_connections"],
                     admin_users=values["admin_users"], admin_database=values["admin_database"],
                     metrics_listen=values["metrics_listen"],
                     snapshot_store=values["snapshot_store"], job_lease=values["job_lease"],
                     training_cluster=values["training_cluster"],
                     training_cluster_fallback=values["training_cluster_fallback"])
        if values["upstream"]:
            config.upstream = Upstream.from_url(values["upstream"])
        return config
