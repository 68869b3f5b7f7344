"""The global gradient-boosted candidate and related time series: a related series
given over the horizon is used at the forecast's own steps (and wins the search
where it explains the target), one not given there is used HORIZON steps earlier,
a related column without future values never leaks the target's future, and the
global model's quantiles do not cross."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from automl.forecast import forecast
from automl.forecast import global_model as gm
from automl.forecast.series import series_frames

H = 4


def promo_data(items: int = 4, months: int = 36, future: bool = True) -> pd.DataFrame:
    """item, month, qty (NULL over the horizon when `future`), promo: qty jumps by 40
    in promo months, which follow no season (m^2 + 3i mod 7)."""
    parts = []
    for i in range(items):
        n = months + (H if future else 0)
        m = np.arange(n)
        promo = ((m * m + 3 * i) % 7 == 0).astype(float)
        qty = 100 + 20 * i + 40 * promo + 3 * np.sin(m * np.pi / 6)
        if future:
            qty[-H:] = np.nan
        parts.append(pd.DataFrame({"item": f"item{i}", "month": pd.date_range("2021-01-01", periods=n, freq="MS"),
                                   "qty": qty, "promo": promo}))
    return pd.concat(parts, ignore_index=True)


def options(runtime: int = 20) -> dict:
    return {"forecast": {"horizon": H, "frequency": "M", "percentiles": ["0.1", "0.5", "0.9"],
                         "columns": ["p10", "p50", "p90"], "objective": "WAPE"},
            "settings": {"max_runtime": runtime}}


def test_history_ends_at_the_last_target_and_the_future_holds_the_related_values():
    history, future = series_frames(promo_data(items=2), "M", H)
    assert list(history.columns) == ["unique_id", "ds", "y", "related_1"]
    assert history.groupby("unique_id").size().tolist() == [36, 36] and history["y"].notna().all()
    assert future is not None and future.groupby("unique_id").size().tolist() == [H, H]
    assert future["ds"].min() == pd.Timestamp("2024-01-01")
    # a missing future value: the horizon is not covered, no future frame
    data = promo_data(items=2)
    _, none = series_frames(data.drop(index=data.index[-1]), "M", H)
    assert none is None


def test_a_related_series_not_given_over_the_horizon_is_used_horizon_steps_earlier():
    history, _ = series_frames(promo_data(items=2, future=False), "M", H)
    shaped, ahead, mode = gm.with_related(history, None, H, "M")
    assert mode == "historical"
    for item, group in shaped.groupby("unique_id"):
        original = history[history["unique_id"] == item]["related_1"].to_numpy()
        assert np.isnan(group["related_1"].to_numpy()[:H]).all()
        assert np.array_equal(group["related_1"].to_numpy()[H:], original[:-H])  # no look-ahead
        later = ahead[ahead["unique_id"] == item]
        assert list(later["related_1"]) == list(original[-H:])  # known for every future step
        assert later["ds"].min() == group["ds"].max() + pd.DateOffset(months=1)


@pytest.fixture(scope="module")
def promo_result():
    data = promo_data()[["item", "month", "qty", "promo"]]
    return forecast(data, options())


def test_the_global_model_uses_a_forward_looking_related_series(promo_result):
    r = promo_result
    assert r.model in gm.VARIANTS, (r.leaderboard, r.report)
    assert any('"promo"' in line and "forecast's own time steps" in line for line in r.report)
    scores = {e["model"]: e["WAPE"] for e in r.leaderboard}
    assert scores[r.model] < 0.5 * min(v for k, v in scores.items() if k not in gm.VARIANTS)
    truth = promo_data()
    truth["truth"] = [100 + 20 * int(i[-1]) + 40 * p + 3 * np.sin((k % 40) * np.pi / 6)
                      for k, (i, p) in enumerate(zip(truth["item"], truth["promo"]))]
    expected = {(i, t): (v, p) for i, t, v, p in zip(truth["item"], truth["month"], truth["truth"], truth["promo"])}
    assert len(r.rows) == 4 * H
    for item, time, (p10, p50, p90) in r.rows:
        value, promo = expected[(item, time)]
        assert p10 <= p50 <= p90
        if promo:  # a promo month no statistical model could see coming
            assert abs(p50 - value) < 12, (item, time, p50, value)
        assert abs(p50 - value) < 30, (item, time, p50, value)
