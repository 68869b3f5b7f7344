"""The README's walk-through, run exactly as written on a fresh install: `mlproxy serve
--demo` on a new data directory (its own embedded Postgres), one session, each SQL
statement of the block sent verbatim, waiting for the model to be READY after CREATE
MODEL as a user would. Also `mlproxy demo` and the demo data's determinism."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from proxy.config import Upstream
from proxy.demo import COLUMNS, generate
from tests.support.servers import READY, psql

ROOT = Path(__file__).resolve().parents[1]


def walkthrough() -> list[str]:
    """The statements of the first ```sql block of the README's section "Redshift ML
    through the proxy", each exactly as written (its comments included); lines that
    are only comments, between statements, are not statements."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Redshift ML through the proxy\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sql\n(.*?)```", section, re.S).group(1)
    statements, current = [], []
    for line in block.splitlines():
        code = line.split("--", 1)[0].strip()
        if not current and not code:
            continue  # blank or a comment between statements
        current.append(line)
        if code.endswith(";"):
            statements.append("\n".join(current))
            current = []
    assert not current, f"unterminated statement in the README: {current}"
    return statements


def serve_demo(data_dir: Path) -> tuple[subprocess.Popen, int, Path]:
    log_path = data_dir.parent / "mlproxy.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLPROXY_")}
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--demo",
                                 "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"],
                                stdout=subprocess.PIPE, stderr=log_file, cwd=ROOT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            match = READY.search(proc.stdout.readline())
            if match:
                return proc, int(match.group(2)), log_path
    proc.kill()
    raise RuntimeError(f"mlproxy serve --demo did not start: {log_path.read_text()}")


def wait_until_ready(conn: psycopg.Connection, model: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = dict(conn.execute(f"SHOW MODEL {model}").fetchall())["Model State"]
        if state == "READY":
            return
        assert state == "TRAINING", state
        assert time.monotonic() < deadline, "the model did not get READY in time"
        time.sleep(1)


@pytest.mark.slow
def test_readme_walkthrough_runs_verbatim_on_the_demo_data():
    statements = walkthrough()
    assert any(s.startswith("CREATE MODEL customer_churn") for s in statements)
    base = Path(tempfile.mkdtemp(prefix="mlproxy-readme-"))
    proc, port, log_path = serve_demo(base / "data")
    notices: list[str] = []
    results: dict[str, list] = {}
    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=disable",
                             autocommit=True) as conn:
            conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
            for statement in statements:
                cur = conn.execute(statement)
                results[statement] = cur.fetchall() if cur.description else []
                if statement.startswith("CREATE MODEL"):
                    wait_until_ready(conn, "customer_churn")
            assert conn.execute("SELECT to_regrole('analyst')").fetchone() == (None,)
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(60)
        log = log_path.read_text(errors="replace")
        shutil.rmtree(base, ignore_errors=True)
    assert "demo: loaded 6000 rows into table customers in database 'postgres'" in log

    def result(prefix: str) -> list:
        found = [rows for s, rows in results.items() if s.startswith(prefix)]
        assert len(found) == 1, prefix
        return found[0]

    show = dict(result("SHOW MODEL customer_churn"))
    assert show["Model State"] == "READY" and show["Owner"] == "analyst"
    assert show["Function Parameters"] == "age plan monthly_usage signup_date"
    assert result("SHOW MODEL ALL") == [("public", "customer_churn", "READY")]
    assert [tuple(v.rstrip() for v in row)  # Redshift's columns are char(128)
            for row in result("SELECT schema_name, model_name")] == [
        ("public", "customer_churn", "Model is Ready")]
    streamed = result("SELECT id, churned, predict_churn")
    assert [r[0] for r in streamed] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert all(isinstance(r[2], bool) for r in streamed)
    (count,), = result("SELECT count(*) FROM customers\nWHERE test_row AND predict_churn")
    assert 0 < count < 1200
    (accuracy,), = result("SELECT avg((predict_churn")
    assert accuracy > 0.6  # the README says about 0.7; a coin would give 0.5
    probabilities = result("SELECT id, predict_churn_probabilities")
    assert [r[0] for r in probabilities] == [5, 10, 15]
    for _, value in probabilities:
        value = value if isinstance(value, dict) else json.loads(value)
        assert sorted(value["labels"]) == [False, True]
        assert value["probabilities"] == sorted(value["probabilities"], reverse=True)
        assert abs(sum(value["probabilities"]) - 1) < 1e-6
    (explained,), = result("SELECT explain_model")
    explained = explained if isinstance(explained, dict) else json.loads(explained)
    assert set(explained["explanations"]["kernel_shap"]["label0"]["global_shap_values"]) == {
        "age", "plan", "monthly_usage", "signup_date"}
    assert result("EXPLAIN SELECT id, predict_churn")[0][0].startswith("Seq Scan on customers")
    assert any("training in the background on 4800 rows" in n for n in notices), notices
    assert any("streaming inference of predict_churn" in n for n in notices), notices


def test_demo_command_loads_keeps_and_replaces(pg):
    upstream = pg.uri
    up = Upstream.from_url(upstream)
    psql(up.host, up.port, "DROP DATABASE IF EXISTS demo_h8; CREATE DATABASE demo_h8;")

    def demo(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "proxy", "demo", "--upstream", upstream,
                               "--database", "demo_h8", *args], capture_output=True, text=True,
                              timeout=120, cwd=ROOT)

    first = demo()
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == ("mlproxy demo: loaded 6000 rows into table customers "
                                    "in database 'demo_h8'")
    sql = "SELECT count(*), sum(churned::int), sum(test_row::int) FROM customers"
    loaded = psql(up.host, up.port, sql, db="demo_h8").stdout.strip()
    expected = generate()
    assert loaded == (f"{len(expected)}|{sum(r[5] for r in expected)}|"
                      f"{sum(r[6] for r in expected)}")
    assert loaded.endswith("|1200")
    psql(up.host, up.port, "DELETE FROM customers WHERE id > 10", db="demo_h8")
    kept = demo()
    assert kept.returncode == 0 and "(10 rows): kept (--replace loads it again)" in kept.stdout
    replaced = demo("--replace")
    assert replaced.returncode == 0 and "loaded 6000 rows" in replaced.stdout
    first_row = psql(up.host, up.port, "SELECT * FROM customers ORDER BY id LIMIT 1",
                     db="demo_h8").stdout.strip()
    row = expected[0]
    assert first_row == "|".join(
        ["t" if v is True else "f" if v is False else str(v) for v in row])
    psql(up.host, up.port, "DROP DATABASE demo_h8;")


def test_demo_data_is_deterministic():
    rows = generate()
    assert rows == generate() and len(rows) == 6000 and len(rows[0]) == len(COLUMNS)
    assert generate(seed=18) != rows
    churn = sum(r[5] for r in rows) / len(rows)
    assert 0.3 < churn < 0.5
