"""Model calls on sessions the native relay pump holds (proxy/pump.py).

An idle session is relayed by the pump, which scans statements for the model
function names it was given when the session was lent. A model created after that
must still be recognised on that session: the server takes such sessions back when
the names change, and lends them again with the new ones.
"""

from __future__ import annotations

import uuid

import pytest

from tests.ml.conftest import wait_for_state

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
