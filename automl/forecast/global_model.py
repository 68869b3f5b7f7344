"""The global gradient-boosted candidates: one XGBoost regressor over every item, on
lag, rolling-mean and calendar features, through Nixtla's mlforecast (recursive
multi-step forecasts, rolling-origin cross-validation) and conformal quantiles of its own.

- Target: each item scaled by its own mean and deviation (LocalStandardScaler), so
  items of any size share one model; the Diff variant models first differences so.
- Features: lags 1, 2, 3 and the season (and two seasons when the history holds
  them), the mean of the last season (or of the last HORIZON steps), and the
  calendar parts FREQUENCY makes meaningful (month; day of week; hour; minute).
- Related time series (columns after the target): when their values are given for
  every item's HORIZON future steps they are features as they are (forward-looking,
  read at the forecast's own time step, Amazon Forecast's rule); otherwise each
  is used as its value HORIZON steps earlier (historical: known for the whole
  horizon without a future value).  `related_mode` says which.
- Quantiles: split conformal prediction (Residuals): the model's signed errors on
  earlier HORIZON-step windows, each divided by its item's scale, pooled over items
  and windows per horizon step; a quantile of them, times the item's scale, is added
  to the point forecast.  Each backtest window is calibrated on the other windows
  (cross-conformal); the final forecast on all of them.
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
# the search's two candidates: the model on each item's standardised levels, and on
# its standardised first differences (which lets trees follow a trend they could
# not extrapolate on levels; worse on stationary seasonal series, hence both)
VARIANTS = {NAME: False, NAME + "Diff": True}
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


def _engine(frequency: str, season: int, horizon: int, longest: int, differenced: bool, threads: int = 1):
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean
    from mlforecast.target_transforms import Differences, LocalStandardScaler
    from xgboost import XGBRegressor

    lags, window = _lags(season, horizon, longest)
    model = XGBRegressor(n_estimators=150, max_depth=6, learning_rate=0.08, subsample=0.9,
                         colsample_bytree=0.9, min_child_weight=2, tree_method="hist",
                         n_jobs=threads, random_state=0, verbosity=0)
    return MLForecast(models={NAME: model}, freq=FREQUENCIES[frequency][0], lags=lags,
                      lag_transforms={1: [RollingMean(window_size=window)]},
                      date_features=list(_CALENDAR[frequency]),
                      target_transforms=[Differences([1]), LocalStandardScaler()] if differenced
                      else [LocalStandardScaler()],
                      num_threads=1)


def calibration_windows(windows: int) -> int:
    """Extra windows (of HORIZON steps) before the backtest's, whose errors calibrate
    its quantiles: none when the backtest has two windows (each is calibrated on the
    other: cross-conformal, with models trained on histories of nearly the same
    length; windows further back are trained on much less and overstate the errors),
    one for a single window."""
    return 0 if windows >= 2 else 1


def trim(history: pd.DataFrame, horizon: int, season: int, windows: int) -> pd.DataFrame:
    """Each item's last steps: enough for the longest lag, the backtest and the
    calibration windows (at least 200), within MAX_ROWS rows in all."""
    items = max(1, history["unique_id"].nunique())
    need = 2 * season + (windows + 3) * horizon + 8
    keep = max(need, min(max(200, need), MAX_ROWS // items))
    return history.groupby("unique_id", sort=False).tail(keep).reset_index(drop=True)


def fit_count(windows: int, calibration: int) -> int:
    """Model fits of a backtest (its windows and the calibration windows before them)
    and of the final forecast."""
    return windows + calibration + 1


def _scales(history: pd.DataFrame) -> pd.Series:
    """Each item's scale for pooling errors across items: the mean absolute change
    from one step to the next (its deviation, or 1, when that is 0)."""
    grouped = history.groupby("unique_id", sort=False)["y"]
    change = grouped.diff().abs().groupby(history["unique_id"], sort=False).mean()
    spread = grouped.std()
    scale = change.where(change > 0, spread)
    return scale.where(scale > 0, 1.0).fillna(1.0)


class Residuals:
    """Signed forecast errors of past windows, each divided by its item's scale, by
    horizon step: their quantiles, times an item's scale, added to its point forecast
    give its quantiles (split conformal prediction, pooled over items and windows;
    pooled over steps too while a step has fewer than MIN_PER_STEP errors)."""

    MIN_PER_STEP = 20

    def __init__(self, errors: np.ndarray, steps: np.ndarray, horizon: int) -> None:
        self.errors, self.steps, self.horizon = errors, steps, horizon

    @classmethod
    def of(cls, cv: pd.DataFrame, scales: pd.Series, horizon: int) -> Residuals:
        step = cv.groupby(["unique_id", "cutoff"], sort=False).cumcount().to_numpy()
        scale = cv["unique_id"].map(scales).to_numpy(float)
        errors = (cv["y"].to_numpy(float) - cv[NAME].to_numpy(float)) / scale
        keep = np.isfinite(errors)
        return cls(errors[keep], step[keep], horizon)

    def quantile(self, q: float) -> np.ndarray:
        """One offset per horizon step (in scale units)."""
        if not len(self.errors):
            return np.zeros(self.horizon)
        pooled = float(np.quantile(self.errors, q))
        out = np.full(self.horizon, pooled)
        for k in range(self.horizon):
            at = self.errors[self.steps == k]
            if len(at) >= self.MIN_PER_STEP:
                out[k] = float(np.quantile(at, q))
        return out

    def add_intervals(self, frame: pd.DataFrame, scales: pd.Series, levels: list[int]) -> pd.DataFrame:
        """statsforecast's interval columns NAME-lo-L / NAME-hi-L on a forecast frame
        ordered by item then time (one row per HORIZON step)."""
        step = frame.groupby("unique_id", sort=False).cumcount().to_numpy()
        scale = frame["unique_id"].map(scales).fillna(1.0).to_numpy(float)
        point = frame[NAME].to_numpy(float)
        out = frame.copy()
        for level in levels:
            low, high = (1 - level / 100) / 2, (1 + level / 100) / 2
            out[f"{NAME}-lo-{level}"] = point + self.quantile(low)[step] * scale
            out[f"{NAME}-hi-{level}"] = point + self.quantile(high)[step] * scale
        return out


def backtest(history: pd.DataFrame, frequency: str, season: int, horizon: int, windows: int,
             levels: list[int], calibration: int, differenced: bool = False) -> tuple[pd.DataFrame, Residuals]:
    """statsforecast-shaped cross-validation frame of the last `windows` windows
    (unique_id, ds, cutoff, y, NAME, NAME-lo-L, NAME-hi-L), each window's quantiles
    calibrated on the errors of the other windows (never its own); and the errors of
    every window, which calibrate the final forecast."""
    longest = int(history.groupby("unique_id").size().max())
    engine = _engine(frequency, season, horizon, longest, differenced)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = engine.cross_validation(history, n_windows=windows + calibration, h=horizon, step_size=horizon,
                                     static_features=[], dropna=False)
    cv = cv.sort_values(["cutoff", "unique_id", "ds"]).reset_index(drop=True)
    scales = _scales(history)
    cutoffs = sorted(cv["cutoff"].unique())
    scored = []
    for cutoff in cutoffs[calibration:]:
        others = Residuals.of(cv[cv["cutoff"] != cutoff], scales, horizon)
        scored.append(others.add_intervals(cv[cv["cutoff"] == cutoff], scales, levels))
    return pd.concat(scored, ignore_index=True), Residuals.of(cv, scales, horizon)


def forecast(history: pd.DataFrame, future: pd.DataFrame | None, frequency: str, season: int, horizon: int,
             levels: list[int], residuals: Residuals, differenced: bool = False) -> pd.DataFrame:
    """statsforecast-shaped forecast frame: unique_id, ds, NAME, NAME-lo-L, NAME-hi-L."""
    longest = int(history.groupby("unique_id").size().max())
    engine = _engine(frequency, season, horizon, longest, differenced)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine.fit(history, static_features=[], dropna=False)
        out = engine.predict(horizon, X_df=future)
    out = out.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    return residuals.add_intervals(out, _scales(history), levels)


def probe_seconds_per_row(history: pd.DataFrame, frequency: str, season: int, horizon: int,
                          rows: int = 20_000) -> float:
    """Seconds per training row of one fit, measured on the first items (up to `rows`)."""
    import time

    sizes = history.groupby("unique_id", sort=False).size()
    keep = sizes.index[np.cumsum(sizes.to_numpy()) <= rows]
    sample = history[history["unique_id"].isin(keep if len(keep) else sizes.index[:1])]
    longest = int(sample.groupby("unique_id").size().max())
    engine = _engine(frequency, season, horizon, longest, False)
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

