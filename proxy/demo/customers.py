"""The demo table `customers`: a synthetic customer-churn data set.

Generated, not downloaded: the same 6000 rows on every machine (a fixed seed, no
network, no licence to carry), from a simple story the models can learn: customers on
the basic plan, new customers and light users churn more often, with noise. Every
fifth row is a held-out test row (`test_row`), so the README trains on 4800 rows.
"""

from __future__ import annotations

import datetime
import math
import random
from typing import Any

import asyncpg

from ..config import Upstream

TABLE = "customers"
ROWS = 6000
SEED = 17
COLUMNS = ("id", "age", "plan", "monthly_usage", "signup_date", "churned", "test_row")
DDL = """
CREATE TABLE customers (
    id            integer PRIMARY KEY,
    age           integer NOT NULL,
    plan          text NOT NULL,
    monthly_usage double precision NOT NULL,
    signup_date   date NOT NULL,
    churned       boolean NOT NULL,
    test_row      boolean NOT NULL
)"""
PLANS = (("basic", 0.45, 0.9), ("standard", 0.35, 0.0), ("premium", 0.20, -0.8))
LAST_DAY = datetime.date(2024, 12, 31)


def generate(rows: int = ROWS, seed: int = SEED) -> list[tuple[Any, ...]]:
    """The table's rows, in COLUMNS order; the same for the same arguments."""
    rng = random.Random(seed)
    names = [p[0] for p in PLANS]
    weights = [p[1] for p in PLANS]
    plan_effect = {p[0]: p[2] for p in PLANS}
    out = []
    for i in range(1, rows + 1):
        age = min(80, max(18, round(rng.gauss(41, 13))))
        plan = rng.choices(names, weights)[0]
        usage = round(max(0.0, rng.gammavariate(2.0, 10.0 if plan == "basic" else 14.0)), 1)
        tenure = rng.randrange(0, 4 * 365)
        signup = LAST_DAY - datetime.timedelta(days=tenure)
        logit = (-0.6 + plan_effect[plan] - 0.07 * (usage - 22.0)
                 + (1.1 if tenure < 180 else -0.4 if tenure > 730 else 0.0)
                 + (0.4 if age < 26 else -0.3 if age > 60 else 0.0) + rng.gauss(0, 0.5))
        churned = rng.random() < 1 / (1 + math.exp(-logit))
        out.append((i, age, plan, usage, signup, churned, i % 5 == 0))
    return out


async def load(upstream: Upstream, database: str, *, replace: bool = False) -> str:
    """Create and fill `customers` in `database` as the proxy's service identity;
    returns what was done. An existing table is kept unless `replace`."""
    conn = await asyncpg.connect(**upstream.connect_kwargs(database))
    try:
        async with conn.transaction():
            exists = await conn.fetchval("SELECT to_regclass('public.customers') IS NOT NULL")
            if exists and not replace:
                count = await conn.fetchval("SELECT count(*) FROM public.customers")
                return (f"table {TABLE} already exists in database {database!r} "
                        f"({count} rows): kept (--replace loads it again)")
            if exists:
                await conn.execute("DROP TABLE public.customers")
            await conn.execute("SET LOCAL search_path = public")
            await conn.execute(DDL)
            await conn.copy_records_to_table(TABLE, schema_name="public", records=generate(),
                                             columns=list(COLUMNS))
        return f"loaded {ROWS} rows into table {TABLE} in database {database!r}"
    finally:
        await conn.close()
