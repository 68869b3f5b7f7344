"""The row-codec benchmark runs end to end (its figures are not checked here: timing
targets live in benchmarks/) and its vectorized and per-row codecs agree."""

import json

from benchmarks.inference_rows.run import main


def test_benchmark_runs_and_writes_json(tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert main(["--sizes", "300", "--repeat", "1", "--wide", "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    stages = {(r["float_columns"], r["stage"]) for r in results}
    assert {(2, "total"), (10, "total"), (2, "splice"), (10, "parse")} <= stages
    assert all(r["vectorized_rows_per_s"] > 0 for r in results)
    assert "wrote" in capsys.readouterr().out
