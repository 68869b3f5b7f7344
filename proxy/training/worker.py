"""The training worker: runs in its own process, one job directory at a time.

`python -m proxy.training.worker JOB_DIR` (what the job runner starts) loads the
snapshot (or, on a training cluster, hands automl where the cluster's workers read
it: the process then holds only the search's sample), trains with automl, turns the winner into a portable artifact and builds
its native library into the local cache with compiler, and leaves the outcome in
the job directory (result.json + artifact.bin, or error.json). Progress goes to
progress.json. Nothing here talks to the database: the proxy stores the outcome.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from ..errors import file_error
from .snapshot import JobDir, load_table, writing


def run_job(job: JobDir) -> int:
    """Train, compile and record the outcome; returns a process exit code."""
    spec = job.read_json(job.spec_file)
    if spec is None:
        job.write_json(job.error_file, {"sqlstate": "58030", "message": "training job spec is missing"})
        return 1
    started = time.monotonic()

    last: dict[str, Any] = {}

    def progress(info: dict[str, Any]) -> None:
        last.update(info)
        job.write_json(job.progress_file, {**info, "updated": time.time()})

    try:
        from compiler.artifact import dump

        from . import cluster

        progress({"phase": "loading data", "elapsed": 0.0})
        table = _training_data(job, spec)
        if spec["options"].get("model_type") == "FORECAST":
            return _forecast_job(job, spec, table, progress, started)
        trained = cluster.train(table, spec, progress)
        progress({"phase": "compiling", "elapsed": round(time.monotonic() - started, 3),
                  "trials": len(trained.leaderboard)})
        artifact = dump(trained)
        build_info = _prebuild(artifact, Path(spec["cache_dir"]))
        progress({"phase": "explaining", "elapsed": round(time.monotonic() - started, 3),
                  "trials": len(trained.leaderboard)})
        explanations = _explain(artifact, trained)
        details = _details(trained, spec)
        background = _shap_background(artifact, trained) if explanations else None
        if background is not None:
            details["shap_background"] = background
        with writing(job.artifact_file):
            job.artifact_file.write_bytes(artifact.data)
        result = {
            "problem_type": trained.problem_type,
            "model_type": trained.model_type,
            "objective": trained.objective,
            "metrics": trained.metrics,
            "leaderboard": trained.leaderboard,
            "feature_importances": trained.feature_importances,
            "explanations": explanations,
            "rows_used": trained.rows_used,
            "training_seconds": trained.training_seconds,
            "artifact_sha256": artifact.sha256,
            "report": trained.report,
            "details": details,
            "build": build_info,
            "progress": {"phase": "done", "trials": len(trained.leaderboard),
                         "best_score": last.get("best_score"),  # as automl ranks them
                         "elapsed": round(time.monotonic() - started, 3)},
        }
        job.write_json(job.result_file, result)
        return 0
    except Exception as exc:  # every failure becomes the model's FAILED reason
        if isinstance(exc, OSError):  # a full or read-only data directory, said as Postgres would
            exc = file_error(exc, path=job.path)
        sqlstate = getattr(exc, "sqlstate", None) or "XX000"
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if sqlstate == "XX000":
            message = f"internal error during training: {message}"
        job.write_json(job.error_file, {"sqlstate": sqlstate, "message": message,
                                        "hint": getattr(exc, "hint", None),
                                        "traceback": traceback.format_exc()})
        return 1


def _training_data(job: JobDir, spec: dict[str, Any]) -> Any:
    """The snapshot as a table in this process; or, for a supervised job on a
    training cluster, where the cluster's workers read it (automl.partitioned), so
    that this process never holds the whole table (the local copy is what it falls
    back to when the workers cannot read the store)."""
    options = spec["options"]
    if (spec.get("training_cluster") and options.get("target") is not None
            and options.get("model_type") not in ("FORECAST", "KMEANS") and job.parquet_file.exists()):
        from automl.partitioned import ParquetData

        return ParquetData(spec.get("data_url") or str(job.parquet_file), local=str(job.parquet_file))
    return load_table(job)


def _forecast_job(job: JobDir, spec: dict[str, Any], table: Any, progress: Any, started: float) -> int:
    """MODEL_TYPE FORECAST: the artifact is the forecast itself (automl.forecast's
    documented JSON), computed now as Amazon Forecast's predictor does at creation."""
    from automl.forecast import encode, forecast

    options = spec["options"]
    settings = options["forecast"]
    names = list(table.column_names)
    if options.get("target") in names[3:]:  # the forecaster reads item, time, target, related...
        at = names.index(options["target"])
        table = table.select([0, 1, at, *(i for i in range(2, len(names)) if i != at)])
    result = forecast(table, {"forecast": settings, "settings": {"max_runtime": options.get("max_runtime")}},
                      progress=progress)
    data, sha256 = encode(result, settings["frequency"], int(settings["horizon"]))
    report = [f"forecast: HORIZON {settings['horizon']}, FREQUENCY '{settings['frequency']}', "
              f"PERCENTILES '{','.join(settings['percentiles'])}' (columns {', '.join(settings['columns'])}); "
              f"model {result.model}; {result.items} items, {len(result.rows)} rows"] + result.report
    with writing(job.artifact_file):
        job.artifact_file.write_bytes(data)
    job.write_json(job.result_file, {
        "problem_type": None, "model_type": "FORECAST", "objective": result.objective,
        "metrics": result.metrics, "leaderboard": result.leaderboard, "feature_importances": None,
        "rows_used": table.num_rows, "training_seconds": result.training_seconds,
        "artifact_sha256": sha256, "report": report,
        "details": {"forecast": {"horizon": settings["horizon"], "frequency": settings["frequency"],
                                 "percentiles": settings["percentiles"], "columns": settings["columns"],
                                 "model": result.model, "items": result.items,
                                 "fallback_items": result.fallback_items, "rows": len(result.rows)},
                    "report": report, "rows_exported": spec.get("rows_exported"),
                    "sampled": spec.get("sampled")},
        "build": {"backend": "forecast"},
        "progress": {"phase": "done", "trials": len(result.leaderboard),
                     "elapsed": round(time.monotonic() - started, 3)},
    })
    return 0


def _details(trained: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """What SHOW MODEL tells besides Redshift's keys: the preprocessing of each
    input column, the best trials, the sampling of the exported data, the report,
    and the held-out evaluation `mlproxy report` draws."""
    by_input: dict[str, list[dict[str, Any]]] = {}
    for feature in trained.preprocessing.get("features", []):
        by_input.setdefault(feature["input"], []).append(feature)
    preprocessing = {inp["name"]: _describe_features(by_input.get(inp["name"], []))
                     for inp in trained.preprocessing.get("inputs", [])}
    return {
        "preprocessing": preprocessing,
        "top_trials": trained.top_trials,
        "rows_exported": spec.get("rows_exported"),
        "sampled": spec.get("sampled"),
        "max_cells": spec.get("options", {}).get("max_cells"),
        "report": trained.report,
        "evaluation": trained.evaluation,
    }


def _describe_features(features: list[dict[str, Any]]) -> str:
    """One column's preprocessing in words, e.g. 'one-hot, 3 categories'."""
    if not features:
        return "not used"
    op = features[0]["op"]
    if op == "numeric":
        f = features[0]
        text = f"numeric, NULL as {float(f.get('fill', 0.0)):.6g}"
        if float(f.get("center", 0.0)) != 0.0 or float(f.get("scale", 1.0)) != 1.0:
            text += ", standardized"
        return text
    if op == "ordinal":
        return f"ordinal, {len(features[0]['categories'])} categories"
    if op == "one_hot":
        return f"one-hot, {len(features)} categories"
    if op == "datetime_part":
        return "date parts: " + ", ".join(f["part"] for f in features)
    return op


def _explain(artifact: Any, trained: Any) -> dict[str, Any] | None:
    """Redshift's EXPLAIN_MODEL document (Shapley values on the held-out rows; see
    compiler/explain.py), or None for models without one (KMEANS). Explanations are
    not worth a failed job: an error leaves them out and goes to the report."""
    rows = getattr(trained, "explain_rows", None)
    if artifact.kind == "kmeans" or rows is None or len(rows) == 0:
        return None
    from compiler.explain import global_explanations

    try:
        return global_explanations(artifact, rows)
    except Exception as exc:  # noqa: BLE001 - reported, the model is still good
        trained.report.append(f"no Shapley values: {type(exc).__name__}: {exc}")
        return None


def _shap_background(artifact: Any, trained: Any) -> list[float] | None:
    """A linear model's per-row Shapley values are relative to feature means: those
    of the rows EXPLAIN_MODEL summarised, kept in the details for `<function>_explain`
    (tree values need none: the node covers are the training data's)."""
    if artifact.kind != "linear":
        return None
    from compiler.explain import global_sample

    return [float(v) for v in global_sample(artifact, trained.explain_rows).mean(axis=0)]


def _prebuild(artifact: Any, cache_dir: Path) -> dict[str, Any]:
    """Compile a tree model's native library into the local cache now, so the first
    query using the model does not wait for it. A failed build is not a failed job:
    the predictor then falls back to Treelite's interpreter (and says so)."""
    if artifact.kind != "tree":
        return {"backend": "numpy"}
    from compiler.build import build_library
    from compiler.errors import BuildError

    started = time.monotonic()
    try:
        library = build_library(artifact, cache_dir)
    except BuildError as exc:
        return {"backend": "gtil", "build_error": str(exc)}
    return {"backend": "native", "library": str(library),
            "build_seconds": round(time.monotonic() - started, 3)}


#: the environment variable in which the job runner gives its pid to the worker
PARENT_ENV = "MLPROXY_TRAINING_PARENT"
_PR_SET_PDEATHSIG = 1


def _exit_with_parent() -> None:
    """A worker whose proxy died (killed, crashed) stops too: the restarted proxy
    resumes the job from its snapshot, and two workers must never share a job (they
    would race on its files). On Linux the kernel kills the worker the moment the
    proxy dies (PR_SET_PDEATHSIG), before a restarted proxy can resume the job;
    everywhere, a thread also checks every second that the parent is still the
    proxy that started it."""
    expected = os.environ.get(PARENT_ENV)
    parent = int(expected) if expected and expected.isdigit() else os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the polling below still applies
    if os.getppid() != parent:  # the proxy died before the worker got here
        os._exit(3)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    _exit_with_parent()
    if len(args) != 1:
        print("usage: python -m proxy.training.worker JOB_DIR", file=sys.stderr)
        return 2
    return run_job(JobDir(Path(args[0])))


if __name__ == "__main__":
    raise SystemExit(main())
