"""Tables for the automl tests: scikit-learn's bundled datasets as Arrow tables and
generated tables with the awkward parts of real Postgres data."""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pyarrow as pa
from sklearn import datasets

LOADERS = {
    "breast_cancer": datasets.load_breast_cancer,
    "wine": datasets.load_wine,
    "digits": datasets.load_digits,
    "diabetes": datasets.load_diabetes,
    "iris": datasets.load_iris,
}


def bundled(name: str, target: str = "target") -> pa.Table:
    d = LOADERS[name]()
    cols = {f"f{i}": d.data[:, i] for i in range(d.data.shape[1])}
    y = d.target
    cols[target] = y.astype(np.int64) if name != "diabetes" else y.astype(np.float64)
    return pa.table(cols)


def columns_of(table: pa.Table, drop: str | None = None) -> dict[str, np.ndarray]:
    """Raw input columns as the predictor receives them."""
    return {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names if c != drop}


def churn(n: int = 800, seed: int = 0, positive_share: float = 0.15) -> pa.Table:
    """A skewed binary target driven by a categorical, a numeric with NULLs, a date,
    a boolean and a decimal; plus an ID column and a constant column."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(np.array(["basic", "pro", "team", None], dtype=object), n, p=[0.5, 0.3, 0.15, 0.05])
    age = rng.normal(40, 10, n)
    age[rng.random(n) < 0.1] = np.nan
    days = rng.integers(0, 1500, n)
    signup = [dt.date(2019, 1, 1) + dt.timedelta(days=int(d)) for d in days]
    paid = rng.random(n) < 0.5
    price = [decimal.Decimal(f"{x:.2f}") if x > 5 else None for x in rng.uniform(0, 100, n)]
    risk = ((plan == "basic") * 1.2 + (np.nan_to_num(age, nan=40.0) < 35) * 1.0 + (days > 1000) * 0.8
            - paid * 0.6 + rng.normal(0, 0.5, n))
    churned = risk > np.quantile(risk, 1 - positive_share)
    return pa.table({
        "customer_id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
        "plan": pa.array(list(plan), type=pa.string()),
        "age": pa.array(age, from_pandas=True),
        "signup": pa.array(signup, type=pa.date32()),
        "paid": pa.array(paid),
        "price": pa.array(price, type=pa.decimal128(10, 2)),
        "region": pa.array(["eu"] * n),
        "churned": pa.array(churned),
    })
