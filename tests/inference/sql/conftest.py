"""Fixtures of the model-functions-in-SQL suite.

One `mlproxy serve` of the suite's own (with a data dir, so it trains) in front of
the session's embedded Postgres, working in a database of the suite's own (`mlsql`),
so the models and tables here never meet those of other suites. Three small models
are trained once per run, concurrently, through the proxy:

- churn_model  -> predict_churn(age int, plan text, usage numeric, signup date,
                  promo boolean) RETURNS boolean; binary classification (AUTO: trees)
- price_model  -> predict_price(rooms int, area float8, city text) RETURNS float8;
                  regression, LINEAR_LEARNER (the numpy backend)
- species_model -> predict_species(f0..f3 float8) RETURNS text; multiclass (iris)
- store_model -> predict_store(store int, visits int) RETURNS float8; regression,
                  XGBOOST, the store an integer code (value and category features)
- doomed_model -> predict_doomed(rooms int, area float8); for the test that drops it

Each comes with an offline oracle (oracle.Model) built from the catalog's artifact.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

import psycopg
import pytest
from sklearn import datasets

from tests.ml.conftest import wait_for_state
from tests.support.servers import ProxyProcess, start_proxy

from .oracle import Model

DATABASE = "mlsql"

TABLES = """
CREATE TABLE customers (id int PRIMARY KEY, age int, plan text, usage numeric(6,2),
                        signup date, promo boolean, churned boolean);
INSERT INTO customers
SELECT g, 18 + (g * 7919) % 60, (ARRAY['basic', 'pro', 'team'])[1 + g % 3],
       (g * 31) % 100 / 10.0, date '2020-01-01' + (g % 700), g % 4 = 0,
       ((g * 7919) % 60 > 30 AND g % 3 <> 2) OR g % 11 = 0
  FROM generate_series(1, 600) g;

CREATE TABLE houses (id int PRIMARY KEY, rooms int, area double precision, city text,
                     price double precision);
INSERT INTO houses
SELECT g, rooms, area, city,
       40 * rooms + 2.5 * area + CASE city WHEN 'paris' THEN 300 WHEN 'nice' THEN 120 ELSE 0 END
       + (g * 17) % 23
  FROM (SELECT g, 1 + g % 6 AS rooms, 30 + (g * 37) % 170 + (g % 4) * 0.25 AS area,
               (ARRAY['paris', 'lyon', 'nice', 'lille'])[1 + (g * 13) % 4] AS city
          FROM generate_series(1, 500) g) s;

-- sales by store: the store is an integer code whose effect has no order (automl
-- encodes it by value and as a category, automl/codes.py)
CREATE TABLE sales (id int PRIMARY KEY, store int, visits int, amount double precision);
INSERT INTO sales
SELECT g, 7001 + (g * 37) % 30, g % 20,
       10 * (((7001 + (g * 37) % 30) * 7919) % 17 - 8) + 2 * (g % 20) + (g * 13) % 7
  FROM generate_series(1, 900) g;

CREATE TABLE labels (value boolean PRIMARY KEY, label text);
INSERT INTO labels VALUES (true, 'leaves'), (false, 'stays');
"""

MODELS = {
    "churn_model": "CREATE MODEL churn_model FROM (SELECT age, plan, usage, signup, promo, "
                   "churned FROM customers) TARGET churned FUNCTION predict_churn "
                   "SETTINGS (MAX_RUNTIME 5)",
    "price_model": "CREATE MODEL price_model FROM (SELECT rooms, area, city, price FROM houses) "
                   "TARGET price FUNCTION predict_price PROBLEM_TYPE REGRESSION "
                   "MODEL_TYPE LINEAR_LEARNER SETTINGS (MAX_RUNTIME 5)",
    "species_model": "CREATE MODEL species_model FROM (SELECT f0, f1, f2, f3, species FROM iris) "
                     "TARGET species FUNCTION predict_species SETTINGS (MAX_RUNTIME 5)",
    "store_model": "CREATE MODEL store_model FROM (SELECT store, visits, amount FROM sales) "
                   "TARGET amount FUNCTION predict_store PROBLEM_TYPE REGRESSION "
                   "MODEL_TYPE XGBOOST SETTINGS (MAX_RUNTIME 5)",
    # dropped by a test while a prepared statement uses it
    "doomed_model": "CREATE MODEL doomed_model FROM (SELECT rooms, area, price FROM houses) "
                    "TARGET price FUNCTION predict_doomed PROBLEM_TYPE REGRESSION "
                    "MODEL_TYPE LINEAR_LEARNER SETTINGS (MAX_RUNTIME 5)",
}


@dataclass
class SqlSuite:
    """The suite's proxy, its database, and the trained models with their oracles."""

    proxy: ProxyProcess
    direct_dsn: str
    models: dict[str, Model] = field(default_factory=dict)

    def connect(self, user: str = "postgres", **kw) -> psycopg.Connection:
        """A psycopg connection through the proxy (autocommit unless told)."""
        kw.setdefault("autocommit", True)
        return psycopg.connect(self.proxy.dsn(user=user, db=DATABASE), **kw)

    def direct(self) -> psycopg.Connection:
        """A connection straight to Postgres: for setup and for the oracle's inputs."""
        return psycopg.connect(self.direct_dsn, autocommit=True)

    def asyncpg_dsn(self, user: str = "postgres") -> str:
        return self.proxy.dsn(user=user, db=DATABASE)

    @property
    def churn(self) -> Model:
        return self.models["churn_model"]

    @property
    def price(self) -> Model:
        return self.models["price_model"]

    @property
    def species(self) -> Model:
        return self.models["species_model"]

    @property
    def store(self) -> Model:
        return self.models["store_model"]


@pytest.fixture(scope="session")
def suite(pg, upstream, tmp_path_factory) -> SqlSuite:
    admin_dsn = f"host={upstream.host} port={upstream.port} user=postgres dbname=postgres"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DATABASE}")
    direct_dsn = f"host={upstream.host} port={upstream.port} user=postgres dbname={DATABASE}"
    process = start_proxy(pg.uri, "--data-dir", str(tmp_path_factory.mktemp("mlsql-data")),
                          "--workers", "2")
    suite = SqlSuite(process, direct_dsn)
    try:
        with suite.direct() as direct:
            direct.execute(TABLES)
            _load_iris(direct)
        with suite.connect() as conn:
            for statement in MODELS.values():
                conn.execute(statement)
            for name in MODELS:
                info = wait_for_state(conn, name, timeout=180)
                assert info["Model State"] == "READY", info
        cache = tmp_path_factory.mktemp("oracle-cache")
        with suite.direct() as direct:
            suite.models = {name: Model.from_catalog(direct, name, cache) for name in MODELS}
        yield suite
    finally:
        process.stop()


def _load_iris(direct: psycopg.Connection) -> None:
    data = datasets.load_iris()
    direct.execute("CREATE TABLE iris (id serial PRIMARY KEY, f0 float8, f1 float8, f2 float8, "
                   "f3 float8, species text)")
    with direct.cursor().copy("COPY iris (f0, f1, f2, f3, species) FROM STDIN") as copy:
        for row, target in zip(data.data, data.target):
            copy.write_row([*map(float, row), str(data.target_names[target])])


@pytest.fixture
def scratch_table(request, suite):
    """A table name of the test's own, dropped (directly) after the test."""
    stem = re.sub(r"\W+", "_", request.node.name).lower()[:30]
    name = f"t_{stem}_{uuid.uuid4().hex[:6]}"
    yield name
    with suite.direct() as direct:
        direct.execute("SET lock_timeout = '5s'")
        direct.execute(f"DROP TABLE IF EXISTS {name}")

