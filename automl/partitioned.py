"""Training data that stays where it is: a Parquet snapshot read in row partitions by
the cluster's workers (`--training-cluster`, docs/dask-training.md).

The job process reads only the file's metadata (schema, row count). Every row has a
fixed part, decided by a hash of its position and the seed, so any worker can tell
it from the row alone, without seeing the others:

- `test`: u < test_share, held out for the metrics (at most MAX_TEST_ROWS rows
  expected, TEST_FRACTION of a smaller table), never in a fit;
- `sample`: test_share <= u < test_share + sample_share, the search's rows (at most
  SAMPLE_CELLS cells expected);
- every row that is not `test` is in the final fit's data.

`sample_task` runs once per partition on a worker and returns its test and sample
rows; `training_partition` builds a partition's matrix, target and weights on a
worker from the fitted preprocessing spec (the futures stay on the workers, for
xgboost.dask). Both return plain data (Arrow tables, numpy arrays), never objects
with code. Reading goes through pyarrow (plain paths) or fsspec (`s3://...`,
`file://...`).

This module is light (numpy and pyarrow): the proxy takes SAMPLE_CELLS from here for
its own bounded check of the exported data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

#: the search's sample, in cells (rows x columns), drawn per partition on the
#: workers; tables up to this size are searched on all their (non-test) rows
SAMPLE_CELLS = 2_000_000
#: rows per partition of the data read on the workers (at least two per worker)
PARTITION_ROWS = 250_000
#: a table with fewer rows is simply read by the job (a sample of it would be all of it)
MIN_PARTITIONED_ROWS = 1_000

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def row_uniforms(seed: int, start: int, count: int) -> np.ndarray:
    """A uniform number in [0, 1) per row `start .. start+count-1` of the table, the
    same on every host (splitmix64 of the row's position and the seed)."""
    with np.errstate(over="ignore"):
        z = (np.arange(start, start + count, dtype=np.uint64) + np.uint64(seed & 0xFFFFFFFF) * _GOLDEN) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class ParquetData:
    """A Parquet file (a path, or an fsspec URL such as s3://bucket/key) that the
    cluster's workers read. `local`: a copy the job process can read itself, when
    the workers cannot reach `url` (the in-memory path, as before)."""

    url: str
    local: str | None = None

    def open(self, here: bool = False) -> Any:
        """The file as a worker reads it (`url`), or, `here`, as this process does
        (its own copy when it has one: reading the metadata costs no transfer)."""
        import pyarrow.parquet as pq

        url = self.local if here and self.local else self.url
        if "://" not in url:
            return pq.ParquetFile(url)
        import fsspec

        fs, path = fsspec.core.url_to_fs(url)
        return pq.ParquetFile(fs.open(path, "rb"))

    def read_all(self) -> pa.Table:
        """The whole table, in this process (the in-memory path)."""
        import pyarrow.parquet as pq

        return pq.read_table(self.local) if self.local else self.open(here=True).read()


@dataclass(frozen=True)
class Plan:
    """How the table is cut and which rows go where (the same for every task)."""

    rows: int
    columns: int
    seed: int
    test_share: float
    sample_share: float
    bounds: tuple[int, ...]  # partition row bounds, len = partitions + 1
    sample_cells: int = SAMPLE_CELLS

    @classmethod
    def make(cls, rows: int, columns: int, seed: int, workers: int, test_fraction: float,
             max_test_rows: int, sample_cells: int | None = None) -> "Plan":
        test_share = min(test_fraction, max_test_rows / max(1, rows))
        sample_cells = sample_cells or SAMPLE_CELLS
        sample_rows = max(1, sample_cells // max(1, columns))
        sample_share = min(1.0 - test_share, sample_rows / max(1, rows))
        count = max(2 * max(1, workers), math.ceil(rows / PARTITION_ROWS))
        count = max(1, min(count, rows))
        bounds = tuple(int(b) for b in np.linspace(0, rows, count + 1).astype(np.int64))
        return cls(rows, columns, seed, test_share, sample_share, bounds, sample_cells)

    @property
    def partitions(self) -> list[tuple[int, int]]:
        return list(zip(self.bounds[:-1], self.bounds[1:]))

    @property
    def sampled(self) -> bool:
        """Whether the search sees only part of the non-test rows."""
        return self.test_share + self.sample_share < 1.0 - 1e-12


def read_rows(source: ParquetData, start: int, stop: int, columns: list[str] | None = None) -> pa.Table:
    """Rows `start .. stop-1` of the file: only the row groups they fall in are read."""
    pf = source.open()
    meta = pf.metadata
    groups, first, offset = [], None, 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if offset < stop and offset + n > start:
            groups.append(g)
            first = offset if first is None else first
        offset += n
    if not groups:
        return pf.schema_arrow.empty_table() if columns is None else pf.schema_arrow.empty_table().select(columns)
    table = pf.read_row_groups(groups, columns=columns)
    return table.slice(start - first, stop - start)


def sample_task(source: ParquetData, plan: Plan, start: int, stop: int) -> tuple[pa.Table, np.ndarray]:
    """On a worker: the partition's test and sample rows, and which of them are test."""
    u = row_uniforms(plan.seed, start, stop - start)
    keep = u < plan.test_share + plan.sample_share
    rows = np.flatnonzero(keep)
    table = read_rows(source, start, stop).take(pa.array(rows)) if len(rows) else \
        read_rows(source, start, start)
    return table, u[rows] < plan.test_share


@dataclass(frozen=True)
class TargetCoding:
    """How a partition's target column becomes the model's target (as
    automl.dataset encoded the sample's): class codes by value, or floats."""

    name: str
    text: bool                 # a text target: classes compared as strings
    classes: tuple[Any, ...] | None   # None: regression
    weights: tuple[float, ...] | None = None   # per class code (balanced class weights)


def training_partition(source: ParquetData, plan: Plan, start: int, stop: int, features: list[str],
                       spec: dict[str, Any], target: TargetCoding) -> tuple[np.ndarray, np.ndarray, Any, int]:
    """On a worker: the partition's final-fit rows (not test, target known and of a
    class the sample has) as (X, y, weight or None, rows dropped for an unseen class)."""
    from .columns import to_raw
    from .spec import is_null, transform

    u = row_uniforms(plan.seed, start, stop - start)
    table = read_rows(source, start, stop, [*features, target.name])
    y_raw = to_raw(table.column(target.name))
    keep = (u >= plan.test_share) & ~is_null(y_raw)
    unseen = 0
    if target.classes is None:
        y = y_raw[keep].astype(np.float64)
    else:
        values = y_raw[keep]
        keys = values.astype(str) if target.text else values.astype(np.float64)
        lookup = {(str(c) if target.text else float(c)): i for i, c in enumerate(target.classes)}
        codes = np.array([lookup.get(k, -1) for k in keys.tolist()], dtype=np.int64)
        known = codes >= 0
        unseen = int((~known).sum())
        where = np.flatnonzero(keep)
        keep = np.zeros(len(keep), dtype=bool)
        keep[where[known]] = True
        y = codes[known].astype(np.float64)
    rows = np.flatnonzero(keep)
    raw = {name: to_raw(table.column(name))[rows] for name in features}
    X = transform(spec, raw)
    weight = None
    if target.weights is not None:
        weight = np.asarray(target.weights, dtype=np.float64)[y.astype(np.int64)]
    return X, y, weight, unseen
