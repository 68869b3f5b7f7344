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


@pytest.fixture(scope="session")
def dataset_tables(ml_proxy):
    """breast_cancer (binary), iris (multiclass) and diabetes (regression) as tables,
    plus a customers/plans pair for FROM (query) with a join."""
    with psycopg.connect(ml_proxy.dsn(), autocommit=True) as conn:
        for name, loader, target in (("breast_cancer", datasets.load_breast_cancer, "diagnosis"),
                                     ("iris", datasets.load_iris, "species"),
                                     ("diabetes", datasets.load_diabetes, "progression")):
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
