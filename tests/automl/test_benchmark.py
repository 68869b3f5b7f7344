import json

from benchmarks.automl.run import main, summary


def test_benchmark_runs_end_to_end_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--budgets", "4", "--datasets", "iris", "--no-flaml", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert row["dataset"] == "iris" and row["objective"] == "Accuracy" and row["budget"] == 4
    assert 0.6 < row["mlproxy"] <= 1 and 0.6 < row["baseline"] <= 1
    assert row["mlproxy_seconds"] < 4 + 3
    assert "iris" in capsys.readouterr().out


def test_summary_counts_ties_within_one_percent():
    rows = [
        {"lower_is_better": False, "mlproxy": 0.95, "flaml": 0.955, "baseline": 0.90},
        {"lower_is_better": True, "mlproxy": 110.0, "flaml": 100.0, "baseline": 120.0},
    ]
    assert summary(rows) == {"vs_flaml_not_worse": 1, "vs_flaml_worse": 1,
                             "vs_autogluon_not_worse": 0, "vs_autogluon_worse": 0,
                             "vs_baseline_not_worse": 2, "vs_baseline_worse": 0}
