"""The automl benchmark's --seeds runs each cell on several splits and aggregates them
(its scores are not checked here: quality targets live in benchmarks/)."""

import json

import numpy as np

from benchmarks.automl.run import main, split


def test_seeds_run_distinct_splits_and_aggregate(tmp_path, capsys):
    out = tmp_path / "automl.json"
    assert main(["--budgets", "2", "--datasets", "iris", "--no-flaml", "--seed", "4", "--seeds", "2",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [r["seed"] for r in rows] == [4, 5]
    # each seed is its own 75/25 split
    assert not np.array_equal(split("iris", 4)[3], split("iris", 5)[3])
    (cell,) = result["cells"]
    assert cell["seeds"] == [4, 5]
    for c in ("mlproxy", "baseline"):
        vals = [r[c] for r in rows]
        assert cell[c]["mean"] == np.mean(vals)
        assert cell[c]["std"] == np.std(vals, ddof=1)
        assert (cell[c]["min"], cell[c]["max"]) == (min(vals), max(vals))
    assert len(cell["mlproxy"]["models"]) == 2
    assert "mean ± sample std [min..max] over seeds 4..5" in capsys.readouterr().out


def test_one_seed_is_the_single_split(tmp_path):
    out = tmp_path / "automl.json"
    assert main(["--budgets", "2", "--datasets", "iris", "--no-flaml", "--seed", "3", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["seed"] for r in result["rows"]] == [3]
    assert result["cells"][0]["mlproxy"]["std"] == 0.0
