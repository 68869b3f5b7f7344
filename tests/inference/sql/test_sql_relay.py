"""Model calls on sessions the native relay pump holds (proxy/pump.py).

An idle session is relayed by the pump, which scans statements for the model
function names it was given when the session was lent. A model created after that
must still be recognised on that session: the server takes such sessions back when
the names change, and lends them again with the new ones.
"""

from __future__ import annotations

import select
import time
import uuid

import pytest
from psycopg import pq

from tests.ml.conftest import wait_for_state

from .conftest import DATABASE
from .oracle import Model


@pytest.mark.timeout(180)
def test_a_session_relayed_before_a_model_existed_calls_it(suite, tmp_path):
    name = f"late_{uuid.uuid4().hex[:8]}"
    function = f"predict_{name}"
    with suite.connect() as early, suite.connect() as creator:
        # Relayed since: after this round trip the session sits in the pump.
        assert early.execute("SELECT 1").fetchone() == (1,)
        creator.execute(
            f"CREATE MODEL {name} FROM (SELECT rooms, area, price FROM houses) TARGET price "
            f"FUNCTION {function} PROBLEM_TYPE REGRESSION MODEL_TYPE LINEAR_LEARNER "
            f"SETTINGS (MAX_RUNTIME 3)")
        try:
            info = wait_for_state(creator, name)
            assert info["Model State"] == "READY", info
            with suite.direct() as direct:
                oracle = Model.from_catalog(direct, name, tmp_path)
            for rooms, area in [(3, 100.0), (1, 30.5), (6, 199.75)]:
                got = early.execute(f"SELECT {function}(%s, %s)", (rooms, area)).fetchone()[0]
                assert got == pytest.approx(oracle.predict([(rooms, area)])[0], rel=1e-9)
            # and the session keeps relaying plain statements afterwards
            assert early.execute("SELECT 'still relayed'").fetchone() == ("still relayed",)
        finally:
            creator.execute(f"DROP MODEL IF EXISTS {name}")


def _results(pgconn: pq.PGconn, timeout: float = 20) -> list:
    """The results of the command sent (libpq's PQgetResult until NULL), without
    blocking for longer than `timeout` seconds in all: a session that hangs fails
    the test instead of stopping it."""
    deadline = time.monotonic() + timeout
    out = []
    while True:
        while pgconn.flush():
            select.select([], [pgconn.socket], [], 1)
        while pgconn.is_busy():
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([pgconn.socket], [], [], left)[0]:
                pytest.fail(f"no answer in {timeout} s after {[r.status for r in out]}")
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            return out
        out.append(result)
        if result.status == pq.ExecStatus.COPY_IN:
            return out


def test_a_model_call_after_libpqs_extended_protocol_copy(suite):
    """libpq's PQexecParams sends COPY FROM STDIN as Parse, Bind, Describe, Execute
    and Sync together, then the data, CopyDone and a Sync of its own; Postgres
    ignores the first Sync, which it reads inside the COPY ('for the convenience of
    client libraries such as libpq'). A model call after it is answered as on a
    fresh session: it waited forever while the proxy counted that Sync as a
    request in flight (proxy/request_ends.py). Through real libpq, as psycopg
    wraps it."""
    pgconn = pq.PGconn.connect(suite.proxy.dsn(db=DATABASE).encode())
    try:
        assert pgconn.status == pq.ConnStatus.OK, pgconn.error_message
        pgconn.nonblocking = 1
        pgconn.send_query(b"CREATE TEMP TABLE copied (a int)")
        assert [r.status for r in _results(pgconn)] == [pq.ExecStatus.COMMAND_OK]
        for rows in (b"1\n2\n", b"3\n"):  # twice: the session stays in step
            pgconn.send_query_params(b"COPY copied FROM STDIN", [])
            assert [r.status for r in _results(pgconn)] == [pq.ExecStatus.COPY_IN]
            assert pgconn.put_copy_data(rows) == 1 and pgconn.put_copy_end() == 1
            assert [r.status for r in _results(pgconn)] == [pq.ExecStatus.COMMAND_OK], pgconn.error_message
            pgconn.send_query(b"SELECT id, predict_price(rooms, area, city) FROM houses WHERE id < 4 ORDER BY id")
            (called,) = _results(pgconn)
            assert called.status == pq.ExecStatus.TUPLES_OK, pgconn.error_message
            assert [called.get_value(i, 0) for i in range(called.ntuples)] == [b"1", b"2", b"3"]
            assert all(called.get_value(i, 1) for i in range(called.ntuples))
        pgconn.send_query(b"SELECT count(*) FROM copied")
        assert _results(pgconn)[0].get_value(0, 0) == b"3"
    finally:
        pgconn.finish()
