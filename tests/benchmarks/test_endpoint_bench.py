"""The endpoint benchmark runs end to end on a tiny table (figures are not checked
here: timing targets live in benchmarks/): every batch size scored every row through
mlproxy and directly, and the one-row latencies were measured."""

import json

from benchmarks.endpoint.run import main


def test_benchmark_runs_and_writes_json(tmp_path, capsys):
    out = tmp_path / "endpoint.json"
    assert main(["--rows", "300", "--iterations", "20", "--repeat", "1", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [t["max_batch_rows"] for t in result["throughput"]] == [1, 100, 10_000]
    assert all(t["rows"] == 300 and t["mlproxy_rows_per_s"] > 0 and t["endpoint_alone_rows_per_s"] > 0
               for t in result["throughput"])
    one = result["one_row"]
    assert one["iterations"] == 20 and one["with_model_us"]["p50"] > 0 and one["without_model_us"]["p50"] > 0
    assert "MAX_BATCH_ROWS" in capsys.readouterr().out
