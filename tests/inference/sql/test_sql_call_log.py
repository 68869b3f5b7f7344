"""The INFO line of each finished statement that called a model (model, rows,
milliseconds, path), through the proxy, and its rate limit."""

from __future__ import annotations

import asyncio
import logging
import re
import time

from proxy.inference.call_log import CallLog

CALL = "SELECT id, predict_churn(age, plan, usage, signup, promo) FROM customers"


def new_lines(suite, since: int, pattern: str, count: int = 1, timeout: float = 10) -> list[str]:
    """Lines of the proxy's log after offset `since` that match `pattern`, once there
    are `count` of them."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in suite.proxy.read_log()[since:].splitlines()
                 if re.search(pattern, line)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_each_path_logs_model_rows_milliseconds(suite):
    since = len(suite.proxy.read_log())
    with suite.connect() as conn:
        assert len(conn.execute(CALL).fetchall()) == 600  # extended protocol (psycopg)
        conn.execute(f"{CALL} WHERE id <= %s", (7,)).fetchall()
        (count,), = conn.execute(
            "SELECT count(*) FROM customers WHERE predict_churn(age, plan, usage, signup, promo)",
            prepare=False).fetchall()
        conn.pgconn.exec_(f"{CALL} WHERE id <= 3".encode())  # simple protocol
    line = r"INFO mlproxy\.inference\.calls model call: models=churn_model rows={} ms=[0-9.]+ path={}$"
    assert new_lines(suite, since, line.format(600, "streaming"))
    assert new_lines(suite, since, line.format(7, "streaming"))
    assert new_lines(suite, since, line.format(3, "streaming"))
    assert new_lines(suite, since, line.format(600, "general"))
    assert count > 0


def test_prepared_general_path_logs_each_execution(suite):
    """Under the extended protocol the general path predicts at each Bind: one line
    per execution, for the rows its parameters select."""
    since = len(suite.proxy.read_log())
    sql = ("SELECT count(*) FROM customers WHERE id <= %s "
           "AND predict_churn(age, plan, usage, signup, promo)")
    with suite.connect() as conn:
        for limit in (11, 13):  # unnamed statement (Parse and Bind together)
            conn.execute(sql, (limit,)).fetchall()
        for limit in (17, 19):  # a named prepared statement, bound twice
            conn.execute(sql, (limit,), prepare=True).fetchall()
    for limit in (11, 13, 17, 19):
        assert new_lines(suite, since, rf"model call: models=churn_model rows={limit} ms=[0-9.]+ "
                                       rf"path=general$"), (limit, suite.proxy.read_log()[since:])


def test_a_failed_statement_logs_no_call_line(suite):
    since = len(suite.proxy.read_log())
    with suite.connect() as conn:
        conn.pgconn.exec_(f"{CALL} WHERE 1/(id - 5) > 0".encode())  # fails mid-result
        conn.pgconn.exec_(f"{CALL} WHERE id = 4242".encode())  # a marker after it
    assert new_lines(suite, since, r"model call: models=churn_model rows=0 ms=.* path=streaming")
    assert not new_lines(suite, since, r"model call: models=churn_model rows=[1-9]", timeout=0.5)


def test_call_lines_are_rate_limited(caplog):
    calls = CallLog(per_second=3)
    with caplog.at_level(logging.INFO, logger="mlproxy.inference.calls"):
        for _ in range(10):
            calls.finished(["m"], 5, time.perf_counter(), "streaming")
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 3 and all(l.startswith("model call: models=m rows=5 ms=") for l in lines)
        calls._window -= 1.0  # a second later
        calls.finished(["m"], 1, time.perf_counter(), "general")
        lines = [r.getMessage() for r in caplog.records]
        assert lines[3] == "model call: 7 more statements not logged (at most 3 lines a second)"
        assert lines[4].startswith("model call: models=m rows=1 ms=")


def test_suppressed_count_is_said_without_a_next_statement(caplog):
    async def burst() -> None:
        calls = CallLog(per_second=2)
        for _ in range(5):
            calls.finished(["a", "b", "a"], 1, time.perf_counter(), "streaming")
        await asyncio.sleep(1.2)
    with caplog.at_level(logging.INFO, logger="mlproxy.inference.calls"):
        asyncio.run(burst())
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and lines[0].startswith("model call: models=a,b rows=1")
    assert lines[2] == "model call: 3 more statements not logged (at most 2 lines a second)"
