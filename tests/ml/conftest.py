"""Fixtures for the ML statement tests: a proxy with a data dir for training jobs,
and tables loaded from scikit-learn's bundled datasets."""

from __future__ import annotations

import time

import psycopg
import pytest
from sklearn import datasets

from tests.support.servers import ProxyProcess, start_proxy


@pytest.fixture(scope="session")
def ml_proxy(pg, tmp_path_factory) -> ProxyProcess:
    process = start_proxy(pg.uri, "--data-dir", str(tmp_path_factory.mktemp("mlproxy-data")),
                          "--workers", "2")
    yield process
    process.stop()


DATASETS = {"breast_cancer": (datasets.load_breast_cancer, "diagnosis"),
            "iris": (datasets.load_iris, "species"),
            "diabetes": (datasets.load_diabetes, "progression")}


def load_dataset(conn: psycopg.Connection, name: str) -> None:
    """(Re)create table `name` from its scikit-learn dataset: columns f0..fN and the
    target (text labels; double precision for diabetes)."""
    loader, target = DATASETS[name]
    data = loader()
    cols = [f"f{i}" for i in range(data.data.shape[1])]
    target_type = "double precision" if name == "diabetes" else "text"
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (id serial, "
                 + ", ".join(f"{c} double precision" for c in cols)
                 + f", {target} {target_type})")
    labels = (data.target if name == "diabetes"
              else [str(data.target_names[t]) for t in data.target])
    with conn.cursor().copy(f"COPY {name} ({', '.join(cols)}, {target}) FROM STDIN") as copy:
        for row, label in zip(data.data, labels):
            copy.write_row([*map(float, row), label])


@pytest.fixture(scope="session")
def dataset_tables(ml_proxy):
    """breast_cancer (binary), iris (multiclass) and diabetes (regression) as tables,
    plus a customers/plans pair for FROM (query) with a join."""
    with psycopg.connect(ml_proxy.dsn(), autocommit=True) as conn:
        for name in DATASETS:
            load_dataset(conn, name)
        conn.execute("DROP TABLE IF EXISTS customers, plans")
        conn.execute("CREATE TABLE plans (plan_id int PRIMARY KEY, plan text, price numeric(8,2))")
        conn.execute("INSERT INTO plans VALUES (1, 'basic', 9.99), (2, 'pro', 29.5), (3, 'team', 99)")
        conn.execute("""CREATE TABLE customers AS
            SELECT g AS id, 18 + (g * 7919) % 60 AS age, 1 + (g % 3) AS plan_id,
                   (g * 31) % 100 / 10.0 AS usage, date '2020-01-01' + (g % 700) AS signup,
                   ((g * 7919) % 60 > 30 AND g % 3 <> 2) OR g % 11 = 0 AS churned,
                   g % 5 = 0 AS test_row
              FROM generate_series(1, 600) g""")
    return ml_proxy


def wait_for_state(conn, model: str, timeout: float = 120) -> dict[str, str]:
    """Poll SHOW MODEL until the model leaves TRAINING; returns its Key -> Value."""
    deadline = time.monotonic() + timeout
    while True:
        info = dict(conn.execute(f"SHOW MODEL {model}").fetchall())
        if info["Model State"] != "TRAINING" or time.monotonic() > deadline:
            return info
        time.sleep(0.5)


# -- the privileges world: a database of its own, three roles and a trained model ---
PRIV_DB = "mlpriv"
OWNER, GRANTEE, STRANGER, THIRD, TEAM = ("mlp_owner", "mlp_grantee", "mlp_stranger",
                                         "mlp_third", "mlp_team")
PRIV_ROLES = (OWNER, GRANTEE, STRANGER, THIRD, TEAM)
# 240 rows, two features and a text label that the first feature decides
POINTS = """
CREATE TABLE pts (id int PRIMARY KEY, a int, b float8, label text);
INSERT INTO pts SELECT g, g % 40, (g * 7) % 13 / 3.0, CASE WHEN g % 40 > 19 THEN 'yes' ELSE 'no' END
  FROM generate_series(1, 240) g;
"""
PM_CREATE = ("CREATE MODEL pm FROM (SELECT a, b, label FROM pts) TARGET label "
             "FUNCTION pm_predict MODEL_TYPE LINEAR_LEARNER SETTINGS (MAX_RUNTIME 5)")
PM_SIGNATURE = "public.pm_predict(integer, double precision)"
PM_FUNCTIONS = ("pm_predict", "pm_predict_explain", "pm_predict_prob", "pm_predict_probabilities")


class PrivWorld:
    """The proxy, the `mlpriv` database, its roles and model `pm` (owned by OWNER)."""

    def __init__(self, proxy: ProxyProcess, upstream) -> None:
        self.proxy = proxy
        self.direct_dsn = (f"host={upstream.host} port={upstream.port} user=postgres "
                           f"dbname={PRIV_DB}")

    def connect(self, user: str = "postgres", **kw) -> psycopg.Connection:
        kw.setdefault("autocommit", True)
        return psycopg.connect(self.proxy.dsn(user=user, db=PRIV_DB), **kw)

    def dsn(self, user: str = "postgres") -> str:
        return self.proxy.dsn(user=user, db=PRIV_DB)

    def direct(self, user: str = "postgres") -> psycopg.Connection:
        """Straight to Postgres, not through the proxy (a hostile role needs no proxy)."""
        return psycopg.connect(self.direct_dsn.replace("user=postgres", f"user={user}"),
                               autocommit=True)

    def can_execute(self, role: str, function: str) -> bool:
        """Whether Postgres lets `role` execute one stub of `pm` (or another signature)."""
        signature = function if "(" in function else f"public.{function}(integer, double precision)"
        with self.direct() as d:
            return d.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')",
                             (role, signature)).fetchone()[0]


def _drop_world(admin: psycopg.Connection) -> None:
    admin.execute(f"DROP DATABASE IF EXISTS {PRIV_DB} WITH (FORCE)")
    for role in PRIV_ROLES:
        admin.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture(scope="session")
def priv_world(ml_proxy, upstream) -> PrivWorld:
    admin_dsn = f"host={upstream.host} port={upstream.port} user=postgres dbname=postgres"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        _drop_world(admin)
        admin.execute(f"CREATE DATABASE {PRIV_DB}")
        for role in PRIV_ROLES:
            admin.execute(f"CREATE ROLE {role} {'NOLOGIN' if role == TEAM else 'LOGIN'}")
        admin.execute(f"GRANT {TEAM} TO {THIRD}")
    world = PrivWorld(ml_proxy, upstream)
    with world.direct() as d:
        d.execute(POINTS)
        d.execute(f"GRANT SELECT ON pts TO PUBLIC; GRANT CREATE ON SCHEMA public TO {OWNER}")
    with world.connect() as su:  # a superuser grants CREATE MODEL, as in Redshift
        su.execute(f"GRANT CREATE MODEL TO {OWNER}")
    with world.connect(OWNER) as owner:
        owner.execute(PM_CREATE)
        info = wait_for_state(owner, "pm", timeout=120)
        assert info["Model State"] == "READY", info
    yield world
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        _drop_world(admin)


def pytest_addoption(parser):
    parser.addoption("--dask-full", action="store_true", default=False,
                     help="also run the long Dask cluster tests (tests/ml/test_dask_training.py; "
                          "or MLPROXY_DASK_FULL=1)")


def pytest_configure(config):
    config.addinivalue_line("markers", "dask_full: long Dask cluster test, run with --dask-full")
