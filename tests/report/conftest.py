"""Fixtures for `mlproxy report`: a database of its own with an owner, a grantee and
a stranger, four small models trained through the proxy (binary with hostile names,
multiclass, regression, KMEANS), and headless Chromium to look at the pages."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import psycopg
import pytest
from sklearn import datasets

from tests.ml.conftest import ml_proxy, wait_for_state  # noqa: F401 - the shared ML proxy
from tests.support import toolchain
from tests.support.servers import ProxyProcess

DB = "mlreport"
OWNER, GRANTEE, STRANGER = "rep_owner", "rep_grantee", "rep_stranger"
#: user-chosen names that would run as script if the page did not escape them
HOSTILE_MODEL = "<script>document.title='pwned'</script>"
HOSTILE_COLUMN = "<img src=x onerror=alert(1)>"
HOSTILE_CLASS = "</td><script>alert(2)</script>"

MODELS = {
    "binary": (f'CREATE MODEL "{HOSTILE_MODEL}" FROM (SELECT f0 AS "{HOSTILE_COLUMN}", f1, f2, '
               f"CASE WHEN diagnosis = 'benign' THEN '{HOSTILE_CLASS}' ELSE diagnosis END AS diagnosis "
               "FROM cancer) TARGET diagnosis FUNCTION rep_binary SETTINGS (MAX_RUNTIME 4)"),
    "multiclass": ("CREATE MODEL rep_iris FROM iris TARGET species FUNCTION rep_iris "
                   "MODEL_TYPE XGBOOST SETTINGS (MAX_RUNTIME 4)"),
    "regression": ("CREATE MODEL rep_diabetes FROM diabetes TARGET progression FUNCTION rep_diabetes "
                   "SETTINGS (MAX_RUNTIME 4)"),
    "kmeans": ("CREATE MODEL rep_clusters FROM (SELECT f0, f1, f2, f3 FROM iris) FUNCTION rep_clusters "
               "AUTO OFF MODEL_TYPE KMEANS PREPROCESSORS 'none' HYPERPARAMETERS DEFAULT EXCEPT (K '3') "
               "SETTINGS (MAX_RUNTIME 4)"),
}
NAMES = {"binary": f'"{HOSTILE_MODEL}"', "multiclass": "public.rep_iris",
         "regression": "rep_diabetes", "kmeans": "rep_clusters"}


@dataclass
class ReportWorld:
    proxy: ProxyProcess
    direct_base: str

    def dsn(self, user: str = OWNER) -> str:
        """Through the proxy."""
        return self.proxy.dsn(user=user, db=DB)

    def direct_dsn(self, user: str = OWNER) -> str:
        """Straight to Postgres."""
        return f"postgresql://{user}@/{DB}?{self.direct_base}"

    def connect(self, user: str = OWNER) -> psycopg.Connection:
        return psycopg.connect(self.dsn(user), autocommit=True)


def _load(conn: psycopg.Connection, name: str, loader, target: str, columns: int) -> None:
    data = loader()
    cols = [f"f{i}" for i in range(columns)]
    target_type = "double precision" if name == "diabetes" else "text"
    conn.execute(f"CREATE TABLE {name} (" + ", ".join(f"{c} double precision" for c in cols)
                 + f", {target} {target_type})")
    labels = data.target if name == "diabetes" else [str(data.target_names[t]) for t in data.target]
    with conn.cursor().copy(f"COPY {name} ({', '.join(cols)}, {target}) FROM STDIN") as copy:
        for row, label in zip(data.data, labels):
            copy.write_row([*map(float, row[:columns]), label])


@pytest.fixture(scope="session")
def report_world(ml_proxy, upstream) -> ReportWorld:  # noqa: F811
    admin_dsn = f"host={upstream.host} port={upstream.port} user=postgres dbname=postgres"

    def drop(admin: psycopg.Connection) -> None:
        admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        for role in (OWNER, GRANTEE, STRANGER):
            admin.execute(f"DROP ROLE IF EXISTS {role}")

    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        drop(admin)
        admin.execute(f"CREATE DATABASE {DB}")
        for role in (OWNER, GRANTEE, STRANGER):
            admin.execute(f"CREATE ROLE {role} LOGIN")
    world = ReportWorld(ml_proxy, f"host={upstream.host}&port={upstream.port}")
    with psycopg.connect(admin_dsn.replace("dbname=postgres", f"dbname={DB}"), autocommit=True) as d:
        _load(d, "cancer", datasets.load_breast_cancer, "diagnosis", 3)
        _load(d, "iris", datasets.load_iris, "species", 4)
        _load(d, "diabetes", datasets.load_diabetes, "progression", 6)
        d.execute(f"GRANT SELECT ON cancer, iris, diabetes TO {OWNER}; "
                  f"GRANT CREATE ON SCHEMA public TO {OWNER}")
    with world.connect("postgres") as su:
        su.execute(f"GRANT CREATE MODEL TO {OWNER}")
    with world.connect(OWNER) as owner:
        for statement in MODELS.values():
            owner.execute(statement)
        for kind, name in NAMES.items():
            info = wait_for_state(owner, name, timeout=180)
            assert info["Model State"] == "READY", (kind, info)
        owner.execute(f"GRANT EXECUTE ON MODEL rep_iris TO {GRANTEE}")
    yield world
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        drop(admin)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed if missing; a loud skip (warning + summary) if not."""
    try:
        return toolchain.chromium()
    except toolchain.ToolMissing as exc:
        message = f"model report browser tests NOT RUN: {exc}"
        toolchain.NOT_RUN.append(message)
        warnings.warn(pytest.PytestWarning(message), stacklevel=1)
        pytest.skip(message)


def pytest_terminal_summary(terminalreporter) -> None:
    lines = [line for line in toolchain.NOT_RUN if "model report" in line]
    if lines:
        terminalreporter.section("MODEL REPORT BROWSER TESTS NOT RUN", sep="!", red=True, bold=True)
        for line in lines:
            terminalreporter.line(line, red=True, bold=True)
