"""automl benchmark: mlproxy vs FLAML vs an untuned HistGradientBoosting model.

With --compare-auto, mlproxy's AUTO runs three times on each split: as it is (XGBoost
as the boosted-tree family), with scikit-learn's HistGradientBoosting in XGBoost's
place (AUTO before MODEL_TYPE XGBOOST was XGBoost), and with both families; and
AUTO OFF XGBOOST with the default hyperparameters is checked to train the trees
`xgboost.train` trains with the same parameters on the same rows.

Every bundled scikit-learn dataset is split once (75/25, stratified for
classification, fixed seed); all three contestants train on the same 75% and are
scored on the same 25%, with the same objective and, for the two AutoML systems,
the same time budget and cores. Prints a table and writes JSON under
benchmarks/results/.

    python -m benchmarks.automl                 # budgets 30 s and 120 s
    python -m benchmarks.automl --quick         # 10 s budget, for a smoke run
    python -m benchmarks.automl --budgets 30 --datasets iris wine
    python -m benchmarks.automl --seeds 3      # 3 splits/search seeds: mean and spread per cell

With --seeds N, each cell runs on N splits (seeds SEED .. SEED+N-1: each seed is both
the 75/25 split's and the search's seed) and the table ends with the mean, the sample
standard deviation and the min..max of each contestant per dataset and budget; N=1 (the
default) is the single split of SEED, as before.

FLAML comes with the `bench` extra (pip install '.[bench]'); its LightGBM/XGBoost
learners are used when installed, otherwise its scikit-learn ones.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn import datasets
from sklearn import metrics as skm
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import automl  # noqa: E402
from automl import registry as automl_families  # noqa: E402
automl_train = importlib.import_module("automl.train")  # the module, for VARIANT_SETTINGS
automl.train = automl_train.train  # importing the submodule bound automl.train to it (see automl/__init__.py)
automl_preprocess = importlib.import_module("automl.preprocess")
automl_codes = importlib.import_module("automl.codes")
automl_lgbm = importlib.import_module("automl.lgbm")
automl_ensemble = importlib.import_module("automl.ensemble")
automl_validation = importlib.import_module("automl.validation")
automl_search = importlib.import_module("automl.search")
from automl.columns import to_raw  # noqa: E402
from benchmarks.automl import tables  # noqa: E402

#: AUTO's families per variant (--compare-auto)
AUTO_VARIANTS = {
    "mlproxy": automl_families.AUTO_FAMILIES,
    "mlproxy_hgb": tuple("HIST_GRADIENT_BOOSTING" if f == "XGBOOST" else f for f in automl_families.AUTO_FAMILIES),
    "mlproxy_both": automl_families.AUTO_FAMILIES + ("HIST_GRADIENT_BOOSTING",),
    "mlproxy_nolgbm": tuple(f for f in automl_families.AUTO_FAMILIES if f != "LIGHTGBM"),
    "mlproxy_noxgb": tuple(f for f in automl_families.AUTO_FAMILIES if f != "XGBOOST"),
    # the final model refitted on the selection part only (the test part held out), as before
    "mlproxy_heldout": automl_families.AUTO_FAMILIES,
    # multiclass text columns as one target-ordered ordinal per class (the default
    # before the codes and ensemble levers)
    "mlproxy_classorders": automl_families.AUTO_FAMILIES,
    # no ensemble of LightGBM configurations (the search's single best model)
    "mlproxy_noensemble": automl_families.AUTO_FAMILIES,
    # integer columns by value only (no code is detected, automl/codes.py), as before
    "mlproxy_nocodes": automl_families.AUTO_FAMILIES,
    # LightGBM's short rounds range (20-1000) at every budget, as before
    "mlproxy_shortrounds": automl_families.AUTO_FAMILIES,
    # the search keeping time only for the winner's refit, not an ensemble's
    "mlproxy_noblendtime": automl_families.AUTO_FAMILIES,
    # one holdout split above 5,000 selection rows whatever the budget
    "mlproxy_holdout": automl_families.AUTO_FAMILIES,
    # a holdout search's ranking as it is (its finalists not cross-validated after it)
    "mlproxy_noconfirm": automl_families.AUTO_FAMILIES,
    # the same with one holdout split above 5,000 rows whatever the budget (so both
    # arms search on one holdout: the confirmation measured where the search converges)
    "mlproxy_holdout_noconfirm": automl_families.AUTO_FAMILIES,
    # one restart of the converged local search per 5 s of MAX_RUNTIME (6 at 30 s), not per 15 s
    "mlproxy_restarts5": automl_families.AUTO_FAMILIES,
    # a holdout search kept on its holdout to the end (not widened to cross-validation
    # once its first local search converges)
    "mlproxy_nowiden": automl_families.AUTO_FAMILIES,
    # LightGBM refitted with the rounds its trials validated, not grown with the rows
    "mlproxy_nogrowth": automl_families.AUTO_FAMILIES,
}
#: module settings a variant changes for its run: {variant: {(module, name): value}}
VARIANT_SETTINGS: dict[str, dict[tuple[Any, str], Any]] = {
    "mlproxy_heldout": {(automl_train, "REFIT_ALL_ROWS"): False},
    "mlproxy_classorders": {(automl_preprocess, "MULTICLASS_ORDERS"): True},
    "mlproxy_noensemble": {(automl_ensemble, "MAX_STEPS"): 1},
    "mlproxy_nocodes": {(automl_codes, "CODE_GAIN"): math.inf},
    "mlproxy_shortrounds": {(automl_lgbm, "LONG_ROUNDS"): automl_lgbm.ROUNDS},
    "mlproxy_noblendtime": {(automl_train, "BLEND_TIME"): False},
    "mlproxy_holdout": {(automl_validation, "CV_CELLS_PER_SECOND"): 0.0},
    "mlproxy_noconfirm": {(automl_train, "CONFIRM"): False},
    "mlproxy_holdout_noconfirm": {(automl_validation, "CV_CELLS_PER_SECOND"): 0.0, (automl_train, "CONFIRM"): False},
    "mlproxy_restarts5": {(automl_search, "RESTART_SECONDS"): 5},
    "mlproxy_nowiden": {(automl_train, "WIDEN"): False},
    "mlproxy_nogrowth": {(automl_lgbm, "REFIT_GROWS_ROUNDS"): False},
}

DATASETS = {
    "breast_cancer": (datasets.load_breast_cancer, "BINARY_CLASSIFICATION", "F1"),
    "wine": (datasets.load_wine, "MULTICLASS_CLASSIFICATION", "Accuracy"),
    "digits": (datasets.load_digits, "MULTICLASS_CLASSIFICATION", "Accuracy"),
    "diabetes": (datasets.load_diabetes, "REGRESSION", "MSE"),
    "iris": (datasets.load_iris, "MULTICLASS_CLASSIFICATION", "Accuracy"),
}
_FLAML_METRIC = {"F1": "f1", "Accuracy": "accuracy", "MSE": "mse"}
RESULTS = Path(__file__).resolve().parents[1] / "results"


def score(objective: str, y: np.ndarray, pred: np.ndarray) -> float:
    if objective == "F1":
        return float(skm.f1_score(y, pred))
    if objective == "Accuracy":
        return float(skm.accuracy_score(y, pred))
    return float(skm.mean_squared_error(y, pred))


def split(name: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray, str, str]:
    """75/25 split (stratified for classification) of a toy set (columns f0..fN) or
    of a realistic table (benchmarks/automl/tables.py), as DataFrames."""
    if name in DATASETS:
        loader, problem, objective = DATASETS[name]
        X, y = loader(return_X_y=True)
        frame = pd.DataFrame({f"f{i}": X[:, i] for i in range(X.shape[1])})
    else:
        df, target, problem, objective = tables.load(name)
        frame, y = df.drop(columns=[target]), df[target].to_numpy()
    strat = y if problem != "REGRESSION" else None
    X_tr, X_te, y_tr, y_te = train_test_split(frame, y, test_size=0.25, random_state=seed, stratify=strat)
    return X_tr.reset_index(drop=True), X_te.reset_index(drop=True), y_tr, y_te, problem, objective


def _arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def run_mlproxy(X_tr, y_tr, X_te, problem, objective, budget, seed, n_jobs,
                families: tuple[str, ...] | None = None,
                settings: dict[tuple[Any, str], Any] | None = None) -> tuple[np.ndarray, float, str, list[str]]:
    """(test predictions, seconds, model type, the report's lines on the validation,
    the search, its confirmation and the ensemble: what each variant's JSON row keeps
    as `_report`)."""
    table = _arrow(X_tr.assign(target=y_tr))
    start = time.monotonic()
    saved = automl_families.AUTO_FAMILIES
    automl_families.AUTO_FAMILIES = families or saved
    saved_settings = {key: getattr(*key) for key in (settings or {})}
    for (module, name), value in (settings or {}).items():
        setattr(module, name, value)
    try:
        model = automl.train(table, {"target": "target", "problem_type": problem, "objective": objective,
                                     "max_runtime": budget, "seed": seed}, n_jobs=n_jobs)
    finally:
        automl_families.AUTO_FAMILIES = saved
        for (module, name), value in saved_settings.items():
            setattr(module, name, value)
    seconds = time.monotonic() - start
    test = _arrow(X_te)
    pred = model.reference_predict({c: to_raw(test.column(c)) for c in test.column_names})
    lines = [line for line in model.report if line.startswith(_REPORTED)]
    return pred, seconds, model.model_type, lines


_REPORTED = ("rows:", "search:", "search widened", "confirmation:", "ensemble:")


def run_flaml(X_tr, y_tr, X_te, problem, objective, budget, seed, n_jobs) -> tuple[np.ndarray, float, str]:
    from flaml import AutoML

    task = "regression" if problem == "REGRESSION" else "classification"
    settings: dict[str, Any] = dict(task=task, metric=_FLAML_METRIC[objective], time_budget=budget, seed=seed,
                                    n_jobs=n_jobs, verbose=0)
    try:
        import lightgbm  # noqa: F401
        import xgboost  # noqa: F401
    except ImportError:
        settings["estimator_list"] = ["rf", "extra_tree", "lrl1"] if task == "classification" else ["rf", "extra_tree"]
    start = time.monotonic()
    model = AutoML()
    with warnings.catch_warnings():
        # FLAML's learners warn on every trial; the table is the output here
        warnings.simplefilter("ignore")
        model.fit(X_tr, y_tr, **settings)
    seconds = time.monotonic() - start
    return np.asarray(model.predict(X_te)), seconds, str(model.best_estimator)


def run_autogluon(python: str, X_tr, y_tr, X_te, problem, objective, budget, seed,
                  n_jobs) -> tuple[np.ndarray, float, str]:
    """AutoGluon-Tabular, tree models only, in its own environment (autogluon_run.py)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlproxy-ag-") as tmp:
        X_tr.assign(target=y_tr).to_parquet(Path(tmp) / "train.parquet")
        X_te.to_parquet(Path(tmp) / "test.parquet")
        subprocess.run([python, str(Path(__file__).with_name("autogluon_run.py")), tmp, str(budget), str(n_jobs),
                        str(seed), problem, objective], check=True)
        pred = pd.read_parquet(Path(tmp) / "pred.parquet")["pred"].to_numpy()
        info = json.loads((Path(tmp) / "info.json").read_text())
    return pred, float(info["seconds"]), str(info["model"])


def xgboost_equivalence(X_tr, y_tr, problem, seed) -> bool:
    """AUTO OFF XGBOOST with the defaults == xgboost.train with the same parameters on
    the rows automl trains its final model on (same trees, same predictions)."""
    import xgboost as xgb

    from automl.validation import MAX_TEST_ROWS, TEST_FRACTION, stratified_split

    X_tr = X_tr.to_numpy()
    cols = {f"f{i}": X_tr[:, i] for i in range(X_tr.shape[1])}
    table = pa.table({**cols, "target": y_tr})
    n_classes = len(np.unique(y_tr))
    options: dict[str, Any] = {"target": "target", "model_type": "XGBOOST", "auto": False, "seed": seed,
                               "problem_type": problem}
    params: dict[str, Any] = {"seed": seed, "nthread": 1}
    if problem == "REGRESSION":
        params["objective"] = "reg:squarederror"
    elif problem == "BINARY_CLASSIFICATION":
        params["objective"] = options["objective"] = "binary:logistic"
    else:
        params.update(objective="multi:softmax", num_class=n_classes)
        options.update(objective="multi:softmax", hyperparameters={"NUM_CLASS": n_classes})
    model = automl.train(table, options)
    codes = np.unique(y_tr, return_inverse=True)[1] if problem != "REGRESSION" else None
    sel = stratified_split(codes, len(y_tr), TEST_FRACTION, seed, cap=MAX_TEST_ROWS)[0]
    label = y_tr if codes is None else codes
    # the matrix automl's preprocessing makes: the columns as they are, less those it
    # drops (constant ones: digits' blank pixels)
    X = model.transform(cols)
    want = xgb.train(params, xgb.DMatrix(X[sel], label=label[sel]), num_boost_round=100)
    got = model.estimator.booster
    d = xgb.DMatrix(X)
    same_trees = json.loads(got.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"] == \
        json.loads(want.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]
    return bool(same_trees and np.array_equal(got.predict(d), want.predict(d)))


def _hgb_matrix(frame: pd.DataFrame, categories: dict[str, Any] | None = None) -> tuple[pd.DataFrame, dict]:
    """The frame as HistGradientBoosting takes it: text as pandas categories (the
    training rows' categories), dates as epoch seconds."""
    out = frame.copy()
    categories = {} if categories is None else categories
    fit = not categories
    for c in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[c]):
            out[c] = out[c].astype("int64") // 10**9
        elif out[c].dtype == object:
            if fit:
                cats = pd.Index(sorted(out[c].dropna().astype(str).unique()))
                # HistGradientBoosting takes at most 255 categories: an untuned
                # baseline leaves a column with more (movies' titles) out
                categories[c] = cats if len(cats) <= 255 else None
            if categories[c] is None:
                out = out.drop(columns=[c])
            else:
                out[c] = pd.Categorical(out[c], categories=categories[c])
    return out, categories


def run_baseline(X_tr, y_tr, X_te, problem, seed) -> tuple[np.ndarray, float]:
    cls = HistGradientBoostingRegressor if problem == "REGRESSION" else HistGradientBoostingClassifier
    start = time.monotonic()
    train, cats = _hgb_matrix(X_tr)
    test, _ = _hgb_matrix(X_te, cats)
    # one thread: on these small sets OpenMP threads only add spin-waiting (the score
    # does not depend on the thread count)
    with threadpool_limits(limits=1):
        est = cls(random_state=seed, categorical_features="from_dtype").fit(train, y_tr)
        pred = est.predict(test)
    return pred, time.monotonic() - start


def bench(names: list[str], budgets: list[float], first_seed: int, n_jobs: int, with_flaml: bool,
          compare_auto: bool = False, seeds: int = 1,
          variants: tuple[str, ...] = ("mlproxy_hgb", "mlproxy_both"), with_mlproxy: bool = True,
          autogluon: str | None = None, partial: Path | None = None) -> list[dict[str, Any]]:
    rows = []
    for budget in budgets:
        for name in names:
            for seed in range(first_seed, first_seed + seeds):
                X_tr, X_te, y_tr, y_te, problem, objective = split(name, seed)
                row: dict[str, Any] = {"dataset": name, "budget": budget, "objective": objective,
                                       "lower_is_better": objective == "MSE", "train_rows": len(y_tr),
                                       "test_rows": len(y_te), "seed": seed}
                if with_mlproxy:
                    pred, secs, winner, lines = run_mlproxy(X_tr, y_tr, X_te, problem, objective, budget, seed,
                                                            n_jobs)
                    row.update(mlproxy=score(objective, y_te, pred), mlproxy_seconds=secs, mlproxy_model=winner,
                               mlproxy_report=lines)
                    if problem == "REGRESSION":
                        row["mlproxy_r2"] = float(skm.r2_score(y_te, pred))
                if compare_auto:
                    for variant in variants:
                        pred, secs, winner, lines = run_mlproxy(X_tr, y_tr, X_te, problem, objective, budget, seed,
                                                                n_jobs, AUTO_VARIANTS[variant],
                                                                VARIANT_SETTINGS.get(variant))
                        row.update({variant: score(objective, y_te, pred), f"{variant}_seconds": secs,
                                    f"{variant}_model": winner, f"{variant}_report": lines})
                    if budget == budgets[0] and name in DATASETS:
                        row["auto_off_equals_xgboost_train"] = xgboost_equivalence(X_tr, y_tr, problem, seed)
                if with_flaml:
                    pred, secs, winner = run_flaml(X_tr, y_tr, X_te, problem, objective, budget, seed, n_jobs)
                    row.update(flaml=score(objective, y_te, pred), flaml_seconds=secs, flaml_model=winner)
                    if problem == "REGRESSION":
                        row["flaml_r2"] = float(skm.r2_score(y_te, pred))
                if autogluon:
                    pred, secs, winner = run_autogluon(autogluon, X_tr, y_tr, X_te, problem, objective, budget, seed,
                                                       n_jobs)
                    row.update(autogluon=score(objective, y_te, pred), autogluon_seconds=secs, autogluon_model=winner)
                    if problem == "REGRESSION":
                        row["autogluon_r2"] = float(skm.r2_score(y_te, pred))
                pred, secs = run_baseline(X_tr, y_tr, X_te, problem, seed)
                row.update(baseline=score(objective, y_te, pred), baseline_seconds=secs)
                rows.append(row)
                print(_line(row), flush=True)
                if partial is not None:
                    partial.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    return rows


_HEAD = "dataset        budget  objective   contestant: score (seconds, winner) ..."


def _line(r: dict[str, Any]) -> str:
    obj = r["objective"] + (" (low)" if r["lower_is_better"] else "")
    parts = [f"{r['dataset']:<14}{r['budget']:>7g}  {obj:<10}"]
    for c in CONTESTANTS:
        if c in r:
            secs = f"{r[c + '_seconds']:.1f} s"
            parts.append(f"  {c} {r[c]:.4f} ({secs}{', ' + str(r[c + '_model']) if c + '_model' in r else ''})")
    line = "".join(parts)
    if "seed" in r:
        line += f"  (seed {r['seed']})"
    if "auto_off_equals_xgboost_train" in r:
        line += f"\n{'':<23}AUTO OFF XGBOOST == xgboost.train: {r['auto_off_equals_xgboost_train']}"
    return line


CONTESTANTS = (*AUTO_VARIANTS, "flaml", "autogluon", "baseline")


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset and budget, each contestant's mean, sample standard deviation (0 for
    one seed) and min..max over the seeds' rows, and the winners (model types) seen."""
    cells: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["dataset"], r["budget"]), []).append(r)
    out = []
    for (name, budget), rs in cells.items():
        cell: dict[str, Any] = {"dataset": name, "budget": budget, "objective": rs[0]["objective"],
                                "lower_is_better": rs[0]["lower_is_better"], "seeds": [r["seed"] for r in rs]}
        for c in CONTESTANTS:
            vals = np.array([r[c] for r in rs if c in r], dtype=float)
            if len(vals):
                cell[c] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                           "min": float(vals.min()), "max": float(vals.max()),
                           "models": [r[f"{c}_model"] for r in rs if f"{c}_model" in r]}
        out.append(cell)
    return out


def _aggregate_line(cell: dict[str, Any]) -> str:
    parts = [f"{cell['dataset']:<14}{cell['budget']:>7g}  {cell['objective']:<10}"]
    for c in CONTESTANTS:
        if c in cell:
            v = cell[c]
            parts.append(f"  {c} {v['mean']:.4f} ± {v['std']:.4f} [{v['min']:.4f}..{v['max']:.4f}]")
    return "".join(parts)


def summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Wins/ties/losses of mlproxy vs FLAML and the baseline (tie: within 1% relative)."""
    out = {f"vs_{o}_{w}": 0 for o in ("flaml", "autogluon", "baseline") for w in ("not_worse", "worse")}
    for r in rows:
        for other in ("flaml", "autogluon", "baseline"):
            if other not in r or "mlproxy" not in r:
                continue
            sign = -1 if r["lower_is_better"] else 1
            gap = sign * (r["mlproxy"] - r[other]) / max(1e-12, abs(r[other]))
            out[f"vs_{other}_{'not_worse' if gap >= -0.01 else 'worse'}"] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budgets", type=float, nargs="+", default=[30.0, 120.0])
    ap.add_argument("--quick", action="store_true", help="one 10 s budget")
    ap.add_argument("--datasets", nargs="+", choices=sorted(DATASETS) + sorted(tables.TABLES),
                    default=list(DATASETS), help="toy sets (the default) and/or realistic tables "
                    "(benchmarks/automl/tables.py); --tables for all of the latter")
    ap.add_argument("--tables", action="store_true", help="all realistic tables instead of the toy sets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-flaml", action="store_true", help="skip FLAML (e.g. when it is not installed)")
    ap.add_argument("--compare-auto", action="store_true",
                    help="also run AUTO with HistGradientBoosting instead of / besides XGBoost, and check "
                         "AUTO OFF XGBOOST against xgboost.train")
    ap.add_argument("--seeds", type=int, default=1,
                    help="splits per cell: seeds SEED..SEED+N-1 (split and search); N>1 adds mean ± std "
                         "[min..max] per cell")
    ap.add_argument("--auto-variants", nargs="+", choices=tuple(v for v in AUTO_VARIANTS if v != "mlproxy"),
                    default=["mlproxy_hgb", "mlproxy_both"],
                    help="with --compare-auto: which other AUTOs to run (mlproxy_hgb: old AUTO, "
                         "HistGradientBoosting in XGBoost's place; mlproxy_both: both families)")
    ap.add_argument("--no-mlproxy", action="store_true", help="skip mlproxy (e.g. to add a contestant later)")
    ap.add_argument("--autogluon-python", default=None,
                    help="the python of an environment with autogluon.tabular: adds AutoGluon (tree models)")
    ap.add_argument("--out", type=Path, default=None, help="JSON file (default: benchmarks/results/automl-*.json)")
    args = ap.parse_args(argv)
    budgets = [10.0] if args.quick else args.budgets
    with_flaml = not args.no_flaml
    if with_flaml:
        try:
            import flaml  # noqa: F401
        except ImportError:
            print("FLAML is not installed: pip install '.[bench]' (or pass --no-flaml)", file=sys.stderr)
            return 2
    print(_HEAD, flush=True)
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    names = list(tables.TABLES) if args.tables else args.datasets
    rows = bench(names, budgets, args.seed, args.n_jobs, with_flaml, args.compare_auto, args.seeds,
                 tuple(args.auto_variants), not args.no_mlproxy, args.autogluon_python,
                 args.out.with_suffix(".partial.json") if args.out else None)
    cells = aggregate(rows)
    if args.seeds > 1:
        print(f"\nmean ± sample std [min..max] over seeds {args.seed}..{args.seed + args.seeds - 1}:")
        for cell in cells:
            print(_aggregate_line(cell))
    result = {"benchmark": "automl", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "n_jobs": args.n_jobs},
              "seed": args.seed, "seeds": args.seeds, "budgets": budgets, "rows": rows,
              "cells": cells, "summary": summary(rows)}
    name = "quick" if args.quick else "-".join(f"{b:g}" for b in budgets)
    out = args.out or RESULTS / f"automl-{name}{f'-seeds{args.seeds}' if args.seeds > 1 else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nsummary: {result['summary']}\nwritten: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
