"""How the selection part is validated (automl/validation.py): k-fold
cross-validation on small tables, and on larger ones while the budget affords it
(FLAML's rule: 10 million cells an hour); one holdout split beyond."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

import automl
from automl.validation import CV_HOLDOUT_ROWS, CV_MAX_ROWS, cross_validates, make_folds


def test_cross_validation_up_to_5000_rows_and_beyond_while_the_budget_affords_it():
    assert cross_validates(CV_MAX_ROWS, 1000, 1.0)  # small tables: always
    # diamonds' selection part (32,364 rows, 9 columns in the tree matrix): one
    # holdout at 30 s, CV at 120 s; insteval's (44,052 x 8) stays on one holdout at 120 s
    assert not cross_validates(32_364, 9, 30.0) and cross_validates(32_364, 9, 120.0)
    assert not cross_validates(44_052, 8, 120.0)
    # never above CV_HOLDOUT_ROWS, whatever the budget
    assert not cross_validates(CV_HOLDOUT_ROWS + 1, 1, 5400.0) and cross_validates(CV_HOLDOUT_ROWS, 1, 5400.0)
    n = 8000
    folds = make_folds(None, n, 0, cross_validate=True)
    assert len(folds) == 3
    val = np.concatenate([v for _, v in folds])
    assert sorted(val.tolist()) == list(range(n))  # every row validated exactly once
    assert all(len(np.intersect1d(tr, v)) == 0 for tr, v in folds)
    (train, val), = make_folds(None, n, 0, cross_validate=False)
    assert len(val) == round(0.2 * n) and len(train) + len(val) == n


def test_training_says_which_validation_it_used():
    rng = np.random.default_rng(0)
    n = 7500  # a 6,000-row selection part of 2 inputs: 12,000 cells, CV from 4.3 s of MAX_RUNTIME
    X = rng.normal(size=(n, 2))
    table = pa.table({"a": X[:, 0], "b": X[:, 1], "y": X[:, 0] - X[:, 1] + rng.normal(size=n)})
    model = automl.train(table, {"target": "y", "max_runtime": 5, "seed": 0}, n_jobs=1)
    assert any(line.startswith("rows: 6000 for training/selection (3-fold cross-validation)")
               for line in model.report), model.report
    assert not any(line.startswith("confirmation") for line in model.report)  # (a holdout search's only)
    short = automl.train(table, {"target": "y", "max_runtime": 3, "seed": 0}, n_jobs=1)
    assert any(line.startswith("rows: 6000 for training/selection (one holdout split)")
               for line in short.report), short.report
