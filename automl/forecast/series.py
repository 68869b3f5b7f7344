"""Training data -> regular series: one row per item and time step of FREQUENCY.

Input columns by position, as Redshift's FORECAST takes them: item id, timestamp,
target, then related time series (numeric; used by the global model only, see
global_model.py).
Timestamps are put on the frequency's grid (floored: a day's 10:17 reading is that
day's), readings that fall into one step are summed (Amazon Forecast's default
aggregation), and missing steps inside an item's span are interpolated linearly
(Amazon Forecast fills with zeros; interpolation keeps a continuous series such as
a temperature or a price sensible; a NULL target counts as missing).  An item's
history ends at its last non-NULL target: rows after it carry the related series'
future values (Amazon Forecast's forward-looking related time series).  Related
values are averaged within a step and interpolated over gaps.
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
    """An Arrow table (or DataFrame) with columns item, time, target[, related ...] ->
    the `unique_id, ds, y[, related_1, ...]` frame statsforecast and mlforecast take,
    regular and sorted: each item's history up to its last non-NULL target."""
    return series_frames(table, frequency, 0)[0]


def series_frames(table: Any, frequency: str, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(history, future): `history` as to_long_frame gives it; `future` the related
    series' values at each item's HORIZON steps after its last target (`unique_id, ds,
    related_1, ...`), or None when there is no related column or a value is missing
    there: the forecast horizon is not covered (Amazon Forecast's rule for a
    forward-looking related time series)."""
    frame = table.to_pandas() if hasattr(table, "to_pandas") else table
    related = [f"related_{i}" for i in range(1, frame.shape[1] - 2)]
    frame = frame.copy()
    frame.columns = ["unique_id", "ds", "y", *related]
    frame["unique_id"] = frame["unique_id"].astype(str)
    frame["ds"] = pd.to_datetime(frame["ds"], utc=True).dt.tz_localize(None)
    for column in ["y", *related]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    frame = frame.dropna(subset=["ds"])
    freq = FREQUENCIES[frequency][0]
    frame["ds"] = floor_to(frame["ds"], frequency)
    steps = frame.groupby(["unique_id", "ds"], sort=True)
    frame = steps["y"].sum(min_count=1).to_frame().join(steps[related].mean()).reset_index()
    parts, futures, covered = [], [], bool(related)
    for item, group in frame.groupby("unique_id", sort=True):
        known = group["ds"][group["y"].notna()]
        last = known.iloc[-1] if len(known) else group["ds"].iloc[-1]
        grid = pd.date_range(group["ds"].iloc[0], last, freq=freq)
        values = group.set_index("ds")
        y = values["y"].reindex(grid)
        y = y.interpolate(limit_direction="both") if y.notna().any() else y.fillna(0.0)
        part = {"unique_id": item, "ds": grid, "y": y.to_numpy(dtype=float)}
        ahead = future_times(last, frequency, horizon) if horizon else grid[:0]
        for column in related:
            # inside the history: interpolated, and held flat beyond the readings
            inside = values[column].reindex(grid).interpolate(limit_direction="both")
            part[column] = inside.fillna(0.0).to_numpy(dtype=float)
        if related and horizon:
            future = values[related].reindex(ahead)
            covered = covered and not future.isna().to_numpy().any()
            futures.append(pd.DataFrame({"unique_id": item, "ds": ahead, **{c: future[c].to_numpy(float)
                                                                             for c in related}}))
        parts.append(pd.DataFrame(part))
    if not parts:
        columns = {"unique_id": pd.Series(dtype=str), "ds": pd.Series(dtype="datetime64[ns]"),
                   "y": pd.Series(dtype=float), **{c: pd.Series(dtype=float) for c in related}}
        return pd.DataFrame(columns), None
    out = pd.concat(parts, ignore_index=True)
    out["y"] = out["y"].fillna(0.0)
    future = pd.concat(futures, ignore_index=True) if covered and futures else None
    return out, future


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
