"""AutoGluon-Tabular (tree models only) for the automl benchmark, run in its own
Python environment (AutoGluon pins its own versions of the libraries mlproxy uses):

    python benchmarks/automl/autogluon_run.py DIR BUDGET N_JOBS SEED PROBLEM OBJECTIVE

DIR holds train.parquet (the target is the column `target`) and test.parquet; the
predictions go to DIR/pred.parquet and the winner's name to DIR/info.json. The
models are AutoGluon's tree learners (LightGBM, XGBoost, random forest, extra
trees) with its default preset (no bagging, a weighted ensemble of the models at
the end), at the given time limit and cores.

Set up once: python3 -m venv VENV && VENV/bin/pip install autogluon.tabular lightgbm xgboost
(CPU only: no torch is needed for the tree models), then pass
--autogluon-python VENV/bin/python to python -m benchmarks.automl.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

METRICS = {"F1": "f1", "Accuracy": "accuracy", "MSE": "mean_squared_error"}
PROBLEMS = {"BINARY_CLASSIFICATION": "binary", "MULTICLASS_CLASSIFICATION": "multiclass",
            "REGRESSION": "regression"}
TREES = {"GBM": {}, "XGB": {}, "RF": {}, "XT": {}}


def main(argv: list[str]) -> int:
    folder, budget, n_jobs, seed, problem, objective = argv
    from autogluon.tabular import TabularPredictor

    d = Path(folder)
    train = pd.read_parquet(d / "train.parquet")
    test = pd.read_parquet(d / "test.parquet")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ag-") as tmp:
        predictor = TabularPredictor(label="target", problem_type=PROBLEMS[problem], eval_metric=METRICS[objective],
                                     path=tmp, verbosity=0)
        # the split is the seed's; AutoGluon's learners keep their own fixed seeds
        predictor.fit(train, time_limit=float(budget), hyperparameters=TREES, num_cpus=int(n_jobs))
        seconds = time.monotonic() - start
        pred = predictor.predict(test)
        best = predictor.model_best
    pd.DataFrame({"pred": pred.to_numpy()}).to_parquet(d / "pred.parquet")
    (d / "info.json").write_text(json.dumps({"seconds": seconds, "model": str(best)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
