"""The fuzzer's two servers and what its sessions expect to find there.

The same bytes go to Postgres directly and through a proxy. The proxy's side works
in database `fuzz`, where model `fz_price` is trained through the proxy (its SQL
function `fz_predict(integer, double precision)` is a stub upstream that only the
proxy can evaluate). Postgres' side works in database `fuzz_ref`: the same tables,
the same role, and `fz_predict` as an ordinary function of the same signature, so
a model-call session gets from Postgres the replies the proxy must give (row
descriptions, tags, errors, row counts), values aside.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from proxy.config import Upstream
from tests.support.servers import ProxyProcess, start_proxy

PROXY_DB = "fuzz"
REFERENCE_DB = "fuzz_ref"
ROLE = "fuzz_role"
MODEL = "fz_price"
FUNCTION = "fz_predict"

TABLES = f"""
CREATE TABLE fz_houses (id int PRIMARY KEY, rooms int, area double precision, city text,
                        price double precision);
INSERT INTO fz_houses
SELECT g, 1 + g % 6, 30 + (g * 37) % 170, (ARRAY['paris', 'lyon', 'nice'])[1 + g % 3],
       40 * (1 + g % 6) + 2.5 * (30 + (g * 37) % 170) + (g * 17) % 23
  FROM generate_series(1, 60) g;
CREATE TABLE fz_items (id int PRIMARY KEY, name text, qty int);
INSERT INTO fz_items SELECT g, 'item ' || g, g * 3 FROM generate_series(1, 20) g;
DO $$BEGIN CREATE ROLE {ROLE} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$;
GRANT SELECT ON fz_houses, fz_items TO {ROLE};
"""

# Postgres' stand-in for the model function: same name, signature, volatility and
# privileges (a model's function is not PUBLIC's: GRANT EXECUTE ON MODEL gives it).
REFERENCE_FUNCTION = f"""
CREATE FUNCTION {FUNCTION}(integer, double precision) RETURNS double precision
LANGUAGE plpgsql AS 'BEGIN RETURN 40 * $1 + 2.5 * $2; END';
REVOKE EXECUTE ON FUNCTION {FUNCTION}(integer, double precision) FROM PUBLIC;
"""

TRAIN = (f"CREATE MODEL {MODEL} FROM (SELECT rooms, area, price FROM fz_houses) TARGET price "
         f"FUNCTION {FUNCTION} PROBLEM_TYPE REGRESSION MODEL_TYPE LINEAR_LEARNER "
         "SETTINGS (MAX_RUNTIME 5)")


@dataclass
class Target:
    """Where one side of the fuzzer connects: a TCP or unix-socket address and a db."""

    family: str  # "tcp" or "unix"
    address: object
    database: str
    user: str = "postgres"


@dataclass
class FuzzEnv:
    proxy: ProxyProcess
    upstream: Upstream

    @property
    def postgres(self) -> Target:
        return Target("unix", self.upstream.socket_path, REFERENCE_DB)

    @property
    def mlproxy(self) -> Target:
        return Target("tcp", (self.proxy.host, self.proxy.port), PROXY_DB)

    def proxy_dsn(self) -> str:
        return self.proxy.dsn(db=PROXY_DB)


def admin_dsn(upstream: Upstream, db: str = "postgres") -> str:
    return f"host={upstream.host} port={upstream.port} user=postgres dbname={db}"


def prepare_databases(upstream: Upstream) -> None:
    """Fresh `fuzz` and `fuzz_ref` databases with the tables (no model yet)."""
    with psycopg.connect(admin_dsn(upstream), autocommit=True) as admin:
        for db in (PROXY_DB, REFERENCE_DB):
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {db}")
    for db in (PROXY_DB, REFERENCE_DB):
        with psycopg.connect(admin_dsn(upstream, db), autocommit=True) as conn:
            conn.execute(TABLES)
            if db == REFERENCE_DB:
                conn.execute(REFERENCE_FUNCTION)


def train_model(proxy: ProxyProcess, timeout: float = 120) -> None:
    """Train the model the sessions call, through the proxy, and wait until READY."""
    with psycopg.connect(proxy.dsn(db=PROXY_DB), autocommit=True) as conn:
        conn.execute(TRAIN)
        deadline = time.monotonic() + timeout
        while True:
            info = dict(conn.execute(f"SHOW MODEL {MODEL}").fetchall())
            if info["Model State"] == "READY":
                return
            if info["Model State"] != "TRAINING" or time.monotonic() > deadline:
                raise RuntimeError(f"fuzz model did not train: {info}")
            time.sleep(0.3)


def start_env(pg_uri: str, data_dir: Path) -> FuzzEnv:
    """Databases, a proxy with a data dir of its own, and the trained model."""
    upstream = Upstream.from_url(pg_uri)
    prepare_databases(upstream)
    proxy = start_proxy(pg_uri, "--data-dir", str(data_dir), "--workers", "1")
    try:
        train_model(proxy)
    except BaseException:
        proxy.stop()
        raise
    return FuzzEnv(proxy, upstream)
