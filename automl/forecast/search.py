"""An AutoPredictor-like search: statistical models from Nixtla's statsforecast and a
global gradient-boosted model (global_model.py, Nixtla's mlforecast with XGBoost), one
chosen for all items by the OBJECTIVE on the same rolling-origin backtests, within
MAX_RUNTIME.

Candidates, cheapest first: SeasonalNaive (the floor: always run), AutoTheta,
AutoETS, GlobalXGBoost and GlobalXGBoostDiff (on levels and on first differences),
AutoARIMA.  Before each candidate after the floor a probe
(a few items; for the global model one fit on up to 20,000 rows) projects its cost
over every item and backtest window; a candidate that would not finish within what
is left of MAX_RUNTIME is skipped (and the report says so).
Backtest: `cross_validation` with up to two windows of HORIZON steps.  Quantiles
come from the statistical model's own prediction intervals (level 80 gives p10 and
p90), or the global model's conformal quantiles; p50 and 'mean' are the point
forecast.  Related time series are used by the global model only.  Items too short for a backtest
(fewer than windows x HORIZON + two seasons or 2 x HORIZON steps) get the floor
model, or Naive when shorter than a season, and the report counts them.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidOption, UnusableData
from . import global_model as gm
from . import metrics as m
from .series import lengths, season_for, series_frames

os.environ.setdefault("NIXTLA_NUMBA_CACHE", "1")  # numba's compiled code is reused across workers

PROBE_ITEMS = 8
DEFAULT_MAX_RUNTIME = 900


@dataclass
class Forecast:
    """The outcome: the chosen model, its backtest metrics, and the forecast rows
    (item, time, one value per requested percentile column)."""

    model: str
    objective: str
    metrics: dict[str, float]
    leaderboard: list[dict[str, Any]]
    columns: list[str]
    percentiles: list[str]
    rows: list[tuple[str, pd.Timestamp, list[float]]]
    report: list[str] = field(default_factory=list)
    items: int = 0
    fallback_items: int = 0
    training_seconds: float = 0.0


def _candidates(season: int) -> list[tuple[str, Callable[[], Any]]]:
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta, Naive, SeasonalNaive

    small = season if season <= 24 else 1  # ETS and ARIMA cannot model long seasons
    floor: tuple[str, Callable[[], Any]] = (
        ("SeasonalNaive", lambda: SeasonalNaive(season_length=season)) if season > 1
        else ("Naive", lambda: Naive()))
    return [
        floor,
        ("AutoTheta", lambda: AutoTheta(season_length=season)),
        ("AutoETS", lambda: AutoETS(season_length=small)),
        *((name, lambda: None) for name in gm.VARIANTS),  # not statsforecast models: global_model.py
        ("AutoARIMA", lambda: AutoARIMA(season_length=small)),
    ]


def _levels(percentiles: list[str]) -> list[int]:
    levels = {round(abs(2 * float(p) - 1) * 100) for p in percentiles if p != "mean"}
    return sorted(lv for lv in levels if 0 < lv < 100)


def _quantile_columns(frame: pd.DataFrame, alias: str, percentiles: list[str]) -> np.ndarray:
    """One column per percentile from a statsforecast output frame."""
    out = []
    for p in percentiles:
        if p == "mean":
            out.append(frame[alias].to_numpy(float))
            continue
        q = float(p)
        level = round(abs(2 * q - 1) * 100)
        if level == 0:
            out.append(frame[alias].to_numpy(float))
        else:
            side = "lo" if q < 0.5 else "hi"
            out.append(frame[f"{alias}-{side}-{level}"].to_numpy(float))
    values = np.column_stack(out) if out else np.empty((len(frame), 0))
    point = frame[alias].to_numpy(float)
    return np.where(np.isnan(values), point[:, None], values)


def _scores(cv: pd.DataFrame, alias: str, scale: dict[str, float], score_percentiles: list[str]) -> dict[str, float]:
    y = cv["y"].to_numpy(float)
    point = cv[alias].to_numpy(float)
    quantiles = _quantile_columns(cv, alias, score_percentiles)
    qs = [float(p) for p in score_percentiles]
    wql = [m.weighted_quantile_loss(y, quantiles[:, i], q) for i, q in enumerate(qs)]
    return {
        "AverageWeightedQuantileLoss": float(np.mean(wql)) if wql else float("nan"),
        "WAPE": m.wape(y, point), "RMSE": m.rmse(y, point), "MAPE": m.mape(y, point),
        "MASE": m.mase(y, point, cv["unique_id"].to_numpy(str), scale),
    }


def forecast(table: Any, options: dict[str, Any],
             progress: Callable[[dict[str, Any]], None] | None = None) -> Forecast:
    """Train and forecast; `options` is CREATE MODEL's canonical options dict
    (options["forecast"] holds horizon, frequency, percentiles, columns, objective)."""
    from statsforecast import StatsForecast

    started = time.monotonic()
    spec = options["forecast"]
    horizon, frequency = int(spec["horizon"]), spec["frequency"]
    percentiles, objective = list(spec["percentiles"]), spec["objective"]
    budget = float(options.get("settings", {}).get("max_runtime") or DEFAULT_MAX_RUNTIME)
    tell = progress or (lambda info: None)

    def elapsed() -> float:
        return time.monotonic() - started

    frame, future = series_frames(table, frequency, horizon)
    if frame.empty:
        raise UnusableData("the training data has no rows with a timestamp")
    related = gm.related_columns(frame)
    sizes = lengths(frame)
    season = season_for(frequency, int(sizes.max()))
    windows = 2 if int(sizes.max()) >= 2 * horizon + max(2 * season, 2 * horizon) else 1
    needed = windows * horizon + max(2 * season, 2 * horizon)
    long_ids = sizes.index[sizes >= needed]
    short_ids = sizes.index[sizes < needed]
    report: list[str] = []
    levels = sorted(set(_levels(percentiles)) | {80})  # 80: p10/p90 for wQL when only 'mean' is asked
    score_percentiles = [p for p in percentiles if p != "mean"] or ["0.1", "0.5", "0.9"]
    freq = _pandas_freq(frequency)
    candidates = _candidates(season)
    floor_name = candidates[0][0]
    univariate = frame[["unique_id", "ds", "y"]]

    chosen, leaderboard, best_scores = floor_name, [], {}
    global_frame, global_future, calibration, per_row = None, None, 1, 0.0
    residuals: dict[str, gm.Residuals] = {}
    if len(long_ids):
        history = univariate[univariate["unique_id"].isin(long_ids)]
        position = history.groupby("unique_id").cumcount()
        size = history.groupby("unique_id")["y"].transform("size")
        train_part = history[position < size - windows * horizon]  # before the first backtest cutoff
        scale = {str(k): m.naive_scale(g.to_numpy(float), season)
                 for k, g in train_part.groupby("unique_id")["y"]}
        probe = history[history["unique_id"].isin(long_ids[:PROBE_ITEMS])]
        best = math.inf
        for i, (name, make) in enumerate(candidates):
            tell({"phase": "backtesting", "model": name, "elapsed": round(elapsed(), 3),
                  "trials": len(leaderboard)})
            if i > 0 and elapsed() >= budget:
                report.append(f"{name} skipped: MAX_RUNTIME used up")
                continue
            if name in gm.VARIANTS:
                if global_frame is None:
                    shaped, global_future, mode = gm.with_related(
                        frame[frame["unique_id"].isin(long_ids)], future, horizon, frequency)
                    global_frame = gm.trim(shaped, horizon, season, windows)
                    calibration = gm.calibration_windows(windows)
                    if related:
                        report.append(gm.describe(mode, _related_names(table, len(related))))
                    per_row = gm.probe_seconds_per_row(global_frame, frequency, season, horizon)
                projected = per_row * len(global_frame) * gm.fit_count(windows, calibration)
            elif i > 0:
                t0 = time.monotonic()
                StatsForecast(models=[make()], freq=freq, n_jobs=1).forecast(df=probe, h=horizon)
                per_item = (time.monotonic() - t0) / max(1, probe["unique_id"].nunique())
                projected = per_item * len(long_ids) * (windows + 1)
            if i > 0 and elapsed() + projected > budget:
                report.append(f"{name} skipped: about {projected:.0f} s projected, "
                              f"{max(0.0, budget - elapsed()):.0f} s of MAX_RUNTIME left")
                continue
            if name in gm.VARIANTS:
                try:
                    cv, residuals[name] = gm.backtest(global_frame, frequency, season, horizon, windows, levels,
                                                      calibration, gm.VARIANTS[name])
                except ValueError as exc:  # mlforecast's refusal of too short series
                    report.append(f"{name} skipped: {exc}")
                    continue
            else:
                sf = StatsForecast(models=[make()], freq=freq, n_jobs=1)
                cv = sf.cross_validation(df=history, h=horizon, n_windows=windows, step_size=horizon,
                                         level=levels)
            alias = _alias(cv)
            scores = _scores(cv, alias, scale, score_percentiles)
            leaderboard.append({"model": name, **{k: _round(v) for k, v in scores.items()}})
            value = scores[objective]
            value = math.inf if math.isnan(value) else value
            if value < best or not best_scores:  # the floor is kept even when nothing scores
                best, chosen, best_scores = value, name, scores
        report.append(f"chose {chosen} by {objective} on {windows} backtest window(s) of {horizon} steps "
                      f"over {len(long_ids)} items")
    else:
        report.append(f"no item has the {needed} steps a backtest needs: every item uses {floor_name}, "
                      "and there are no backtest metrics")
    if len(short_ids):
        report.append(f"{len(short_ids)} of {len(sizes)} items have fewer than {needed} steps and use "
                      f"{floor_name} (or Naive when shorter than a season) instead of {chosen}")

    tell({"phase": "forecasting", "model": chosen, "elapsed": round(elapsed(), 3), "trials": len(leaderboard)})
    makers = dict(candidates)
    parts = []
    if len(long_ids) and chosen in gm.VARIANTS:
        ahead = None if global_future is None else global_future[global_future["unique_id"].isin(long_ids)]
        out = gm.forecast(global_frame, ahead, frequency, season, horizon, levels, residuals[chosen],
                          gm.VARIANTS[chosen])
        parts.append(_rows(out, percentiles))
    elif len(long_ids):
        parts.append(_predict(univariate[univariate["unique_id"].isin(long_ids)], makers[chosen](), freq,
                              horizon, levels, percentiles))
    if len(short_ids):
        from statsforecast.models import Naive

        short = univariate[univariate["unique_id"].isin(short_ids)]
        seasonal = sizes[short_ids] >= season
        for ids, model in ((sizes[short_ids].index[seasonal], makers[floor_name]()),
                           (sizes[short_ids].index[~seasonal], Naive())):
            if len(ids):
                parts.append(_predict(short[short["unique_id"].isin(ids)], model, freq, horizon, levels,
                                      percentiles))
    rows: list[tuple[str, pd.Timestamp, list[float]]] = []
    for part in parts:
        rows.extend(part)
    rows.sort(key=lambda r: (r[0], r[1]))
    return Forecast(model=chosen, objective=objective, metrics={k: _round(v) for k, v in best_scores.items()},
                    leaderboard=leaderboard, columns=list(spec["columns"]), percentiles=percentiles, rows=rows,
                    report=report, items=len(sizes), fallback_items=len(short_ids),
                    training_seconds=round(elapsed(), 3))


def _alias(frame: pd.DataFrame) -> str:
    return [c for c in frame.columns if c not in ("unique_id", "ds", "cutoff", "y") and "-lo-" not in c
            and "-hi-" not in c][0]


def _related_names(table: Any, count: int) -> list[str]:
    names = list(getattr(table, "column_names", None) or list(table.columns))
    return [f'"{n}"' for n in names[3:3 + count]]


def _predict(frame: pd.DataFrame, model: Any, freq: str, horizon: int, levels: list[int],
             percentiles: list[str]) -> list[tuple[str, pd.Timestamp, list[float]]]:
    from statsforecast import StatsForecast

    out = StatsForecast(models=[model], freq=freq, n_jobs=1).forecast(df=frame, h=horizon, level=levels)
    return _rows(out, percentiles)


def _rows(out: pd.DataFrame, percentiles: list[str]) -> list[tuple[str, pd.Timestamp, list[float]]]:
    """A forecast frame (statsforecast's shape) -> (item, time, one value per percentile)."""
    values = _quantile_columns(out, _alias(out), percentiles)
    order = [i for i, p in sorted(enumerate(percentiles), key=lambda t: t[1] == "mean" and 2 or float(t[1]))
             if p != "mean"]
    if order:  # quantiles never cross: p10 <= p50 <= p90
        values[:, order] = np.sort(values[:, order], axis=1)
    return [(str(i), pd.Timestamp(t), [float(v) for v in row])
            for i, t, row in zip(out["unique_id"].to_numpy(str), out["ds"], values)]


def _pandas_freq(frequency: str) -> str:
    from .series import FREQUENCIES

    if frequency not in FREQUENCIES:
        raise InvalidOption(f"unknown FREQUENCY {frequency!r}")
    return FREQUENCIES[frequency][0]


def _round(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 6)
