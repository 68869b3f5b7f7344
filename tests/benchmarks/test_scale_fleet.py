"""The fleet benchmark runs end to end on a tiny table (its figures are not checked
here: timing targets live in benchmarks/): every fleet size ran pgbench through
HAProxy without a failed transaction, and the JSON says what was run."""

import json

from benchmarks.scale.fleet import main
from tests.support.haproxy import haproxy_binary


def test_fleet_benchmark_runs_and_writes_json(tmp_path, capsys):
    haproxy_binary()  # installed, or the test fails saying why
    out = tmp_path / "fleet.json"
    assert main(["--proxies", "1,2", "--clients", "2", "--seconds", "1", "--rows", "2000",
                 "--trees", "5", "--max-runtime", "5", "--model-percent", "50",
                 "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [run["proxies"] for run in result["runs"]] == [1, 2]
    assert all(run["failed"] == 0 and run["transactions"] > 0 and run["mode"] == "prepared"
               for run in result["runs"])
    assert "predict_bench(" in result["script"]
    printed = capsys.readouterr().out
    assert "vs 1 proxy" in printed and "wrote" in printed
