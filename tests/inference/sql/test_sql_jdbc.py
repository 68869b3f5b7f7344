"""pgjdbc through mlproxy: model calls under the extended protocol (unnamed and
named server-side statements, text and binary results, a fetch-size portal; the
streaming and the general path) and under preferQueryMode=simple, compared with
the offline predictor."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from tests.drivers.conftest import jdbc  # noqa: F401 - the fixture: java + pgjdbc, installed if missing

from .conftest import DATABASE

PROGRAM = Path(__file__).parent / "jdbc" / "PredictCheck.java"

MODES = {
    # no server-side statement (unnamed), text results
    "extended-text": "prepareThreshold=0&binaryTransfer=false",
    # named server-side statements from the first execution, binary results
    "extended-binary": "prepareThreshold=1&binaryTransfer=true",
    "simple": "preferQueryMode=simple",
}


@pytest.fixture(scope="module")
def expected(suite):
    with suite.direct() as d:
        return {
            "select": suite.price.by_id(d, "SELECT id, rooms, area, city FROM houses"),
            "prepared": suite.churn.by_id(d, "SELECT id, age, plan, usage, signup, promo FROM customers "
                                             "WHERE id <= 12"),
            "fetch": suite.species.by_id(d, "SELECT id, f0, f1, f2, f3 FROM iris"),
            "where": suite.churn.by_id(d, "SELECT id, age, plan, usage, signup, promo FROM customers"),
            "general": _general(suite, d),
        }


def _general(suite, d) -> dict[int, list[int]]:
    """PredictCheck's general-path statement for k = 0..3, offline."""
    houses = d.execute("SELECT id, rooms, area, city FROM houses ORDER BY id").fetchall()
    base = dict(zip((h[0] for h in houses), suite.price.predict([h[1:] for h in houses])))
    out = {}
    for k in range(4):
        shifted = dict(zip((h[0] for h in houses),
                           suite.price.predict([(h[1], h[2] + k * 10.0, h[3]) for h in houses])))
        ids = [i for i in base if shifted[i] > 400.0 and i <= 100 + k * 50]
        out[k] = sorted(ids, key=lambda i: (-base[i], i))
    return out


@pytest.mark.timeout(600)  # the jdbc fixture may first have to apt-get install java
@pytest.mark.parametrize("mode", MODES)
def test_pgjdbc(suite, jdbc, expected, mode):
    url = (f"jdbc:postgresql://{suite.proxy.host}:{suite.proxy.port}/{DATABASE}"
           f"?user=postgres&sslmode=disable&{MODES[mode]}")
    done = subprocess.run([jdbc.java, "-cp", str(jdbc.jar), str(PROGRAM), url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out: dict[str, list[list[str]]] = defaultdict(list)
    for line in done.stdout.splitlines():
        key, *rest = line.split()
        out[key].append(rest)
    assert {int(i): float.fromhex(v) for i, v in out["select"]} == expected["select"]
    assert {int(i): v == "true" for i, v in out["prepared"]} == expected["prepared"]
    assert {int(i): v for i, v in out["fetch"]} == expected["fetch"]
    assert [int(i) for i, in out["where"]] == sorted(i for i, v in expected["where"].items() if v)
    assert not out["where_error"]
    general = defaultdict(list)
    for k, i in out["general"]:
        general[int(k)].append(int(i))
    assert general == expected["general"]
    if mode == "extended-binary":
        assert out["server_prepared"] == [["true"]]
    assert out["after"] == [["42"]]
