"""automl.forecast on small synthetic series: a clean seasonal series is forecast
close to the truth, quantiles do not cross, gaps and short items are handled, and
the artifact is the documented JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from automl.forecast import FORMAT, decode, encode, forecast
from automl.forecast.series import to_long_frame


def seasonal(items: int, months: int, short: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    parts = []
    for i in range(items + short):
        n = months if i < items else 5
        ds = pd.date_range("2020-01-01", periods=n, freq="MS")
        y = 50 + 10 * i + 8 * np.sin(np.arange(n) * 2 * np.pi / 12) + rng.normal(0, 0.2, n)
        parts.append(pd.DataFrame({"item": f"s{i}", "ts": ds, "v": y}))
    return pd.concat(parts, ignore_index=True)


def options(objective="MASE", percentiles=("0.1", "0.5", "0.9"), horizon=6, runtime=60):
    columns = ["mean" if p == "mean" else f"p{round(float(p) * 100)}" for p in percentiles]
    return {"forecast": {"horizon": horizon, "frequency": "M", "percentiles": list(percentiles),
                         "columns": columns, "objective": objective}, "settings": {"max_runtime": runtime}}


@pytest.fixture(scope="module")
def result():
    data = seasonal(3, 48, short=1).sample(frac=1, random_state=2)
    return forecast(data.drop(index=data.index[:4]), options())  # shuffled, with gaps


def test_clean_seasonal_series_is_forecast_near_the_truth(result):
    assert result.items == 4 and result.fallback_items == 1
    assert any("1 of 4 items" in line for line in result.report)
    by_item = {}
    for item, time, values in result.rows:
        by_item.setdefault(item, []).append((time, values))
    assert sorted(by_item) == ["s0", "s1", "s2", "s3"] and all(len(v) == 6 for v in by_item.values())
    for i in range(3):
        for step, (time, (p10, p50, p90)) in enumerate(by_item[f"s{i}"]):
            n = 48 + step
            truth = 50 + 10 * i + 8 * np.sin(n * 2 * np.pi / 12)
            assert time == pd.Timestamp("2020-01-01") + pd.DateOffset(months=n)
            assert abs(p50 - truth) < 1.5, (i, step, p50, truth)
            assert p10 <= p50 <= p90
    assert result.metrics["MASE"] < 2 and {e["model"] for e in result.leaderboard} >= {"SeasonalNaive"}


def test_artifact_is_documented_json(result):
    data, sha = encode(result, "M", 6)
    doc = decode(data)
    assert doc["format"] == FORMAT and doc["columns"] == ["p10", "p50", "p90"] and len(sha) == 64
    assert doc["rows"][0][:2] == ["s0", "2024-01-01T00:00:00"] and len(doc["rows"]) == 24
    assert b"NaN" not in data and json.loads(data) == doc


def test_mean_only_and_a_tiny_budget():
    r = forecast(seasonal(2, 36), options(objective="WAPE", percentiles=("mean",), runtime=1))
    assert r.columns == ["mean"] and all(len(v) == 1 for _, _, v in r.rows)
    tried = [e["model"] for e in r.leaderboard]
    skipped = [line.split()[0] for line in r.report if "skipped" in line]
    assert tried[0] == "SeasonalNaive" and sorted(tried + skipped) == sorted(
        ["SeasonalNaive", "AutoTheta", "AutoETS", "GlobalXGBoost", "GlobalXGBoostDiff", "AutoARIMA"])
    assert r.model in tried and r.metrics["WAPE"] == min(e["WAPE"] for e in r.leaderboard)


def test_irregular_timestamps_go_on_the_grid():
    frame = pd.DataFrame({"item": [1, 1, 1, 1], "ts": pd.to_datetime(
        ["2021-01-03 10:00", "2021-01-20 00:00", "2021-03-05 00:00", "2021-04-30 23:59"]), "v": [1.0, 2.0, 5.0, 7.0]})
    long = to_long_frame(frame, "M")
    assert list(long["ds"].dt.strftime("%Y-%m")) == ["2021-01", "2021-02", "2021-03", "2021-04"]
    assert list(long["y"]) == [3.0, 4.0, 5.0, 7.0]  # summed within January, February interpolated
