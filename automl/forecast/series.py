"""Training data -> regular series: one row per item and time step of FREQUENCY.

Input columns by position, as Redshift's FORECAST takes them: item id, timestamp,
target (related series after it are carried but not used by the statistical models).
Timestamps are put on the frequency's grid (floored: a day's 10:17 reading is that
day's), readings that fall into one step are summed (Amazon Forecast's default
aggregation), and missing steps inside an item's span are interpolated linearly
(Amazon Forecast fills with zeros; interpolation keeps a continuous series such as
a temperature or a price sensible; a NULL target counts as missing).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# FREQUENCY -> (pandas frequency of the grid, season length used by the models)
FREQUENCIES: dict[str, tuple[str, int]] = {
    "Y": ("YS", 1), "M": ("MS", 12), "W": ("W-MON", 52), "D": ("D", 7), "H": ("h", 24),
    "30min": ("30min", 48), "15min": ("15min", 96), "10min": ("10min", 144),
    "5min": ("5min", 288), "1min": ("min", 1440),
}


def to_long_frame(table: Any, frequency: str) -> pd.DataFrame:
    """An Arrow table (or DataFrame) with columns item, time, target[, ...] -> the
    `unique_id, ds, y` frame statsforecast takes, regular and sorted."""
    frame = table.to_pandas() if hasattr(table, "to_pandas") else table
    frame = frame.iloc[:, :3].copy()
    frame.columns = ["unique_id", "ds", "y"]
    frame["unique_id"] = frame["unique_id"].astype(str)
    frame["ds"] = pd.to_datetime(frame["ds"], utc=True).dt.tz_localize(None)
    frame["y"] = pd.to_numeric(frame["y"], errors="coerce").astype(float)
    frame = frame.dropna(subset=["ds"])
    freq = FREQUENCIES[frequency][0]
    frame["ds"] = floor_to(frame["ds"], frequency)
    frame = frame.groupby(["unique_id", "ds"], sort=True, as_index=False)["y"].sum(min_count=1)
    parts = []
    for item, group in frame.groupby("unique_id", sort=True):
        grid = pd.date_range(group["ds"].iloc[0], group["ds"].iloc[-1], freq=freq)
        y = group.set_index("ds")["y"].reindex(grid)
        y = y.interpolate(limit_direction="both") if y.notna().any() else y.fillna(0.0)
        parts.append(pd.DataFrame({"unique_id": item, "ds": grid, "y": y.to_numpy(dtype=float)}))
    if not parts:
        return pd.DataFrame({"unique_id": pd.Series(dtype=str), "ds": pd.Series(dtype="datetime64[ns]"),
                             "y": pd.Series(dtype=float)})
    out = pd.concat(parts, ignore_index=True)
    out["y"] = out["y"].fillna(0.0)
    return out


def floor_to(times: pd.Series, frequency: str) -> pd.Series:
    if frequency in ("Y", "M"):
        return times.dt.to_period(frequency if frequency == "M" else "Y").dt.to_timestamp()
    if frequency == "W":
        return (times - pd.to_timedelta(times.dt.dayofweek, unit="D")).dt.normalize()
    return times.dt.floor(FREQUENCIES[frequency][0])


def lengths(frame: pd.DataFrame) -> pd.Series:
    return frame.groupby("unique_id", sort=True).size()


def season_for(frequency: str, longest: int) -> int:
    """The season length the models use: the frequency's, if at least two seasons fit."""
    season = FREQUENCIES[frequency][1]
    return season if 2 * season <= longest else 1


def future_times(last: np.datetime64, frequency: str, horizon: int) -> pd.DatetimeIndex:
    freq = FREQUENCIES[frequency][0]
    return pd.date_range(pd.Timestamp(last), periods=horizon + 1, freq=freq)[1:]
