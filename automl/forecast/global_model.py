"""The global gradient-boosted candidate: one XGBoost regressor over every item, on
lag, rolling-mean and calendar features, through Nixtla's mlforecast (recursive
multi-step forecasts, rolling-origin cross-validation, conformal intervals).

- Target: each item scaled by its own mean and deviation (LocalStandardScaler), so
  items of any size share one model.
- Features: lags 1, 2, 3 and the season (and two seasons when the history holds
  them), the mean of the last season (or of the last HORIZON steps), and the
  calendar parts FREQUENCY makes meaningful (month; day of week; hour; minute).
- Related time series (columns after the target): when their values are given for
  every item's HORIZON future steps they are features as they are (forward-looking,
  read at the forecast's own time step, Amazon Forecast's rule); otherwise each
  is used as its value HORIZON steps earlier (historical: known for the whole
  horizon without a future value).  `related_mode` says which.
- Quantiles: conformal intervals from mlforecast's PredictionIntervals: the
  model's errors on the last HORIZON-step windows of each item's history.
- Cost: the history is cut to each item's last steps (enough for the features
  and the windows, at most MAX_ROWS rows in all); `fit_count` tells how many fits
  a backtest and the final forecast make, for the search's budget projection.
"""

from __future__ import annotations

import warnings
import numpy as np
import pandas as pd

from .series import FREQUENCIES

NAME = "GlobalXGBoost"
MAX_ROWS = 400_000
_CALENDAR = {
    "Y": [], "M": ["month"], "W": [], "D": ["dayofweek", "month"], "H": ["hour", "dayofweek"],
    "30min": ["hour", "minute", "dayofweek"], "15min": ["hour", "minute", "dayofweek"],
    "10min": ["hour", "minute", "dayofweek"], "5min": ["hour", "minute", "dayofweek"],
    "1min": ["hour", "minute"],
}


def related_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("related_")]


def with_related(history: pd.DataFrame, future: pd.DataFrame | None, horizon: int,
                 frequency: str) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """The history with its related columns as the model reads them, the future
    values it needs (None without related columns), and the mode: 'none',
    'forward-looking' or 'historical' (see the module docstring)."""
    related = related_columns(history)
    if not related:
        return history, None, "none"
    if future is not None:
        return history, future, "forward-looking"
    # historical: the value HORIZON steps earlier, known for every future step
    shifted = history.copy()
    grouped = shifted.groupby("unique_id", sort=False)
    for column in related:
        shifted[column] = grouped[column].shift(horizon)
    freq = FREQUENCIES[frequency][0]
    tails = history.groupby("unique_id", sort=True).tail(horizon)
    ahead = tails.assign(ds=tails["ds"] + horizon * pd.tseries.frequencies.to_offset(freq))
    return shifted, ahead[["unique_id", "ds", *related]].reset_index(drop=True), "historical"


def _lags(season: int, horizon: int, longest: int) -> tuple[list[int], int]:
    lags = {1, 2, 3}
    if 1 < season < longest:
        lags.add(season)
        if 3 * season + horizon <= longest:
            lags.add(2 * season)
    window = season if 1 < season <= longest // 2 else max(2, min(horizon, longest // 2))
    return sorted(lags), window


def _engine(frequency: str, season: int, horizon: int, longest: int, threads: int = 1):
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean
    from mlforecast.target_transforms import LocalStandardScaler
    from xgboost import XGBRegressor

    lags, window = _lags(season, horizon, longest)
    model = XGBRegressor(n_estimators=150, max_depth=6, learning_rate=0.08, subsample=0.9,
                         colsample_bytree=0.9, min_child_weight=2, tree_method="hist",
                         n_jobs=threads, random_state=0, verbosity=0)
    return MLForecast(models={NAME: model}, freq=FREQUENCIES[frequency][0], lags=lags,
                      lag_transforms={1: [RollingMean(window_size=window)]},
                      date_features=list(_CALENDAR[frequency]), target_transforms=[LocalStandardScaler()],
                      num_threads=1)


def calibration_windows(shortest: int, horizon: int, windows: int) -> int:
    """Conformal windows (of HORIZON steps): mlforecast needs two at least; three when
    the shortest item's backtest training part holds five horizons."""
    return 3 if shortest - windows * horizon >= 5 * horizon else 2


def trim(history: pd.DataFrame, horizon: int, season: int, windows: int) -> pd.DataFrame:
    """Each item's last steps: enough for the longest lag, the backtest and the
    conformal windows (at least 200), within MAX_ROWS rows in all."""
    items = max(1, history["unique_id"].nunique())
    need = 2 * season + (windows + 2) * horizon + 8
    keep = max(need, min(max(200, need), MAX_ROWS // items))
    return history.groupby("unique_id", sort=False).tail(keep).reset_index(drop=True)


def fit_count(windows: int, calibration: int) -> int:
    """Model fits of a backtest (windows, each with its conformal windows) and of the
    final forecast."""
    return (windows + 1) * (1 + calibration)


def backtest(history: pd.DataFrame, frequency: str, season: int, horizon: int, windows: int,
             levels: list[int], calibration: int) -> pd.DataFrame:
    """statsforecast-shaped cross-validation frame: unique_id, ds, cutoff, y, NAME,
    NAME-lo-L, NAME-hi-L."""
    from mlforecast.utils import PredictionIntervals

    longest = int(history.groupby("unique_id").size().max())
    engine = _engine(frequency, season, horizon, longest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return engine.cross_validation(
            history, n_windows=windows, h=horizon, step_size=horizon, static_features=[], dropna=False,
            prediction_intervals=PredictionIntervals(n_windows=calibration, h=horizon), level=levels)


def forecast(history: pd.DataFrame, future: pd.DataFrame | None, frequency: str, season: int, horizon: int,
             levels: list[int], calibration: int) -> pd.DataFrame:
    """statsforecast-shaped forecast frame: unique_id, ds, NAME, NAME-lo-L, NAME-hi-L."""
    from mlforecast.utils import PredictionIntervals

    longest = int(history.groupby("unique_id").size().max())
    engine = _engine(frequency, season, horizon, longest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine.fit(history, static_features=[], dropna=False,
                   prediction_intervals=PredictionIntervals(n_windows=calibration, h=horizon))
        out = engine.predict(horizon, level=levels, X_df=future)
    return out


def probe_seconds_per_row(history: pd.DataFrame, frequency: str, season: int, horizon: int,
                          rows: int = 20_000) -> float:
    """Seconds per training row of one fit, measured on the first items (up to `rows`)."""
    import time

    sizes = history.groupby("unique_id", sort=False).size()
    keep = sizes.index[np.cumsum(sizes.to_numpy()) <= rows]
    sample = history[history["unique_id"].isin(keep if len(keep) else sizes.index[:1])]
    longest = int(sample.groupby("unique_id").size().max())
    engine = _engine(frequency, season, horizon, longest)
    started = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine.fit(sample, static_features=[], dropna=False)
    return (time.monotonic() - started) / max(1, len(sample))


def describe(mode: str, names: list[str]) -> str:
    if mode == "none":
        return f"{NAME}: no related time series"
    how = ("their values at the forecast's own time steps (given for every item's horizon)"
           if mode == "forward-looking" else
           "their values HORIZON steps earlier (the training data does not give them for every "
           "item's HORIZON future steps)")
    return f"{NAME} uses the related time series {', '.join(names)} as {how}"

