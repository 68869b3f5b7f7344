"""FORECAST benchmark: mlproxy's forecaster (automl.forecast) vs its global
gradient-boosted model alone (mlforecast + XGBoost), statsforecast's AutoETS alone
and SeasonalNaive, on series that ship inside installed packages.

Sets (nothing is downloaded at run time):
- `public`: statsmodels' bundled monthly series (elec_equip; elnino as one series;
  co2 as monthly means) and statsforecast's AirPassengers, horizon 12; statsmodels'
  yearly sunspots and nile, horizon 6.
- `synthetic`: statsforecast.utils.generate_series monthly series (seeded), horizon
  12, for accuracy at scale and training time per 1,000 series.
Each series' last HORIZON steps are held out; every contestant trains on the rest
with the same MAX_RUNTIME (the forecaster's budget; the single models run once).
Scores over the held-out steps: MASE (seasonal-naive scaled), WAPE and the weighted
quantile loss averaged over p10/p50/p90.

    python -m benchmarks.forecast                   # public + 300 synthetic series
    python -m benchmarks.forecast --series 1000     # the full per-1,000 timing
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from automl.forecast import forecast
from automl.forecast import metrics as m
from automl.forecast.series import season_for

PERCENTILES = ["0.1", "0.5", "0.9"]


def public_sets() -> list[tuple[str, str, int, pd.DataFrame]]:
    from statsforecast.utils import AirPassengersDF
    from statsmodels.datasets import co2, elec_equip, elnino, nile, sunspots

    monthly = []
    e = elec_equip.load().data
    monthly.append(("elec_equip", pd.Series(e.iloc[:, 0].to_numpy(float), index=pd.to_datetime(e.index))))
    n = elnino.load().data
    values = n.drop(columns="YEAR").to_numpy(float).ravel()
    monthly.append(("elnino", pd.Series(values, index=pd.date_range(f"{int(n.YEAR.iloc[0])}-01-01",
                                                                     periods=len(values), freq="MS"))))
    c = co2.load().data["co2"].resample("MS").mean().interpolate()
    monthly.append(("co2", c))
    a = AirPassengersDF
    monthly.append(("air_passengers", pd.Series(a["y"].to_numpy(float), index=pd.to_datetime(a["ds"]))))
    yearly = []
    s = sunspots.load().data
    yearly.append(("sunspots", pd.Series(s["SUNACTIVITY"].to_numpy(float), index=pd.to_datetime(
        s["YEAR"].astype(int).astype(str) + "-01-01"))))
    nl = nile.load().data
    yearly.append(("nile", pd.Series(nl["volume"].to_numpy(float), index=pd.to_datetime(
        nl["year"].astype(int).astype(str) + "-01-01"))))

    def frame(items):
        return pd.concat([pd.DataFrame({"item": k, "ts": v.index, "v": v.to_numpy()}) for k, v in items],
                         ignore_index=True)

    return [("public monthly (4 series)", "M", 12, frame(monthly)),
            ("public yearly (2 series)", "Y", 6, frame(yearly))]


def synthetic(n: int) -> pd.DataFrame:
    from statsforecast.utils import generate_series

    df = generate_series(n_series=n, freq="MS", min_length=60, max_length=120, seed=0)
    return pd.DataFrame({"item": df["unique_id"].astype(str), "ts": df["ds"], "v": df["y"].astype(float)})


def split(frame: pd.DataFrame, h: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = frame.sort_values(["item", "ts"])
    position = frame.groupby("item").cumcount(ascending=False)
    return frame[position >= h], frame[position < h]


def single_model(train: pd.DataFrame, name: str, frequency: str, h: int) -> tuple[pd.DataFrame, float]:
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, SeasonalNaive

    from automl.forecast.series import FREQUENCIES, to_long_frame

    long = to_long_frame(train, frequency)
    season = season_for(frequency, int(long.groupby("unique_id").size().max()))
    model = AutoETS(season_length=season if season <= 24 else 1) if name == "AutoETS" else SeasonalNaive(season)
    started = time.monotonic()
    out = StatsForecast(models=[model], freq=FREQUENCIES[frequency][0], n_jobs=1).forecast(
        df=long, h=h, level=[80])
    seconds = time.monotonic() - started
    alias = [c for c in out.columns if c not in ("unique_id", "ds") and "-" not in c][0]
    pred = pd.DataFrame({"item": out["unique_id"].astype(str), "ts": out["ds"],
                         "p10": out[f"{alias}-lo-80"], "p50": out[alias], "p90": out[f"{alias}-hi-80"]})
    return pred, seconds


def global_alone(train: pd.DataFrame, frequency: str, h: int) -> tuple[pd.DataFrame, float]:
    """automl.forecast's global model fitted once on all the training data (no search)."""
    from automl.forecast import global_model as gm
    from automl.forecast.series import series_frames

    started = time.monotonic()
    history, future = series_frames(train, frequency, h)
    sizes = history.groupby("unique_id").size()
    season = season_for(frequency, int(sizes.max()))
    shaped, ahead, _ = gm.with_related(history, future, h, frequency)
    shaped = gm.trim(shaped, h, season, 2)
    # its quantiles need its errors on past windows: two, as the search's backtest has
    _, residuals = gm.backtest(shaped, frequency, season, h, 2, [80], gm.calibration_windows(2))
    out = gm.forecast(shaped, ahead, frequency, season, h, [80], residuals)
    seconds = time.monotonic() - started
    pred = pd.DataFrame({"item": out["unique_id"].astype(str), "ts": out["ds"], "p10": out[f"{gm.NAME}-lo-80"],
                         "p50": out[gm.NAME], "p90": out[f"{gm.NAME}-hi-80"]})
    return pred, seconds


def mlproxy(train: pd.DataFrame, frequency: str, h: int, budget: int) -> tuple[pd.DataFrame, float, str]:
    opts = {"forecast": {"horizon": h, "frequency": frequency, "percentiles": PERCENTILES,
                         "columns": ["p10", "p50", "p90"], "objective": "AverageWeightedQuantileLoss"},
            "settings": {"max_runtime": budget}}
    started = time.monotonic()
    result = forecast(train, opts)
    seconds = time.monotonic() - started
    pred = pd.DataFrame([(i, t, *v) for i, t, v in result.rows], columns=["item", "ts", "p10", "p50", "p90"])
    return pred, seconds, result.model


def score(train: pd.DataFrame, test: pd.DataFrame, pred: pd.DataFrame, frequency: str) -> dict[str, float]:
    test = test.assign(item=test["item"].astype(str), ts=pd.to_datetime(test["ts"]))
    pred = pred.assign(ts=pd.to_datetime(pred["ts"]))
    test = test.assign(step=test.groupby("item").cumcount())
    pred = pred.sort_values(["item", "ts"]).assign(step=lambda d: d.groupby("item").cumcount())
    joined = test.merge(pred, on=["item", "step"], how="inner")
    y = joined["v"].to_numpy(float)
    season = season_for(frequency, int(train.groupby("item").size().max()))
    scales = {str(k): m.naive_scale(g.to_numpy(float), season) for k, g in train.groupby("item")["v"]}
    return {
        "MASE": m.mase(y, joined["p50"].to_numpy(float), joined["item"].to_numpy(str), scales),
        "WAPE": m.wape(y, joined["p50"].to_numpy(float)),
        "wQL": float(np.mean([m.weighted_quantile_loss(y, joined[c].to_numpy(float), q)
                              for c, q in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.forecast")
    parser.add_argument("--series", type=int, default=300, help="synthetic series (default 300)")
    parser.add_argument("--budget", type=int, default=120, help="MAX_RUNTIME in seconds (default 120)")
    args = parser.parse_args(argv)
    sets = public_sets() + [(f"synthetic monthly ({args.series} series)", "M", 12, synthetic(args.series))]
    rows = []
    for label, frequency, h, frame in sets:
        train, test = split(frame, h)
        n_items = frame["item"].nunique()
        pred, seconds, chosen = mlproxy(train, frequency, h, args.budget)
        rows.append({"set": label, "method": f"mlproxy ({chosen})", **score(train, test, pred, frequency),
                     "seconds": seconds, "per_1000": seconds * 1000 / n_items})
        pred, seconds = global_alone(train, frequency, h)
        rows.append({"set": label, "method": "GlobalXGBoost alone", **score(train, test, pred, frequency),
                     "seconds": seconds, "per_1000": seconds * 1000 / n_items})
        for name in ("AutoETS", "SeasonalNaive"):
            pred, seconds = single_model(train, name, frequency, h)
            rows.append({"set": label, "method": name, **score(train, test, pred, frequency),
                         "seconds": seconds, "per_1000": seconds * 1000 / n_items})
        for r in rows[-4:]:
            print(f"{r['set']:32} {r['method']:28} MASE {r['MASE']:.3f}  WAPE {r['WAPE']:.3f}  "
                  f"wQL {r['wQL']:.3f}  {r['seconds']:.1f} s ({r['per_1000']:.0f} s / 1,000 series)", flush=True)
    out = Path(__file__).resolve().parents[1] / "results" / "forecast.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "budget": args.budget, "rows": rows}, indent=1))
    return 0
