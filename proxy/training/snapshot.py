"""A training job's directory: the exported data snapshot and the job's state files.

A job is a directory under `<data dir>/jobs/<database>/<model id>` holding:

- `job.json`     what to train (options, column names and types, catalog ids)
- `data.csv`     the training data as exported with COPY (CSV), then
- `data.parquet` the same data as Parquet (converted once, at CREATE MODEL or by the
                 worker, in row groups of ROW_GROUP_CELLS): the snapshot that the
                 snapshot store keeps and shares, and that a training cluster's
                 workers read in partitions
- `progress.json` the latest progress report of the worker (atomically replaced)
- `result.json` + `artifact.bin`  the outcome, or `error.json` on failure

Everything is plain files, so a job outlives the proxy process that started it: a
restarted proxy finds the directory and resumes (or stores a finished result). The
snapshot (job.json + data.parquet) is also what the snapshot store
(snapshot_store.py) publishes, for any proxy of a fleet to train from.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

# Postgres type name (format_type output, without modifiers) -> Arrow type of the
# exported column. Anything else is exported as text and left to automl to judge.
_ARROW_TYPES: dict[str, pa.DataType] = {
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "numeric": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
}


def base_type(type_name: str) -> str:
    """`numeric(10,2)` -> `numeric`, `character varying(20)` -> `character varying`."""
    return re.sub(r"\(.*\)", "", type_name).strip()


def arrow_type(type_name: str) -> pa.DataType:
    return _ARROW_TYPES.get(base_type(type_name), pa.string())


def export_expression(column_sql: str, type_name: str) -> str:
    """SQL that renders one column for CSV export in a form Arrow parses exactly,
    whatever DateStyle, TimeZone or extra_float_digits the client's session has."""
    kind = base_type(type_name)
    if kind == "date":
        return f"to_char({column_sql}, 'YYYY-MM-DD')"
    if kind == "timestamp without time zone":
        return f"to_char({column_sql}, 'YYYY-MM-DD HH24:MI:SS.US')"
    if kind == "timestamp with time zone":
        return f"to_char({column_sql} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US\"Z\"')"
    if kind in ("real", "double precision", "numeric"):
        return f"CASE WHEN {column_sql}::float8 = 'NaN'::float8 THEN NULL ELSE {column_sql}::float8 END"
    if kind in ("smallint", "integer", "bigint"):
        return column_sql
    if kind == "boolean":
        return f"{column_sql}::int"
    return f"{column_sql}::text"


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Name `path` in the OSError of a failed write (write() and close() name no
    file), so that the error says which file could not be written."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


class JobDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def for_model(cls, data_dir: Path, database: str, model_id: int) -> "JobDir":
        safe_db = re.sub(r"[^A-Za-z0-9_.-]", "_", database)
        return cls(Path(data_dir) / "jobs" / safe_db / str(model_id))

    @property
    def spec_file(self) -> Path:
        return self.path / "job.json"

    @property
    def csv_file(self) -> Path:
        return self.path / "data.csv"

    @property
    def parquet_file(self) -> Path:
        return self.path / "data.parquet"

    @property
    def arrow_file(self) -> Path:
        """(Arrow IPC: what earlier versions converted to; still read.)"""
        return self.path / "data.arrow"

    @property
    def progress_file(self) -> Path:
        return self.path / "progress.json"

    @property
    def result_file(self) -> Path:
        return self.path / "result.json"

    @property
    def artifact_file(self) -> Path:
        return self.path / "artifact.bin"

    @property
    def error_file(self) -> Path:
        return self.path / "error.json"

    def has_snapshot(self) -> bool:
        return self.spec_file.exists() and any(
            f.exists() for f in (self.parquet_file, self.arrow_file, self.csv_file))

    def snapshot_files(self) -> list[Path]:
        """The files a snapshot consists of, as they are now (job.json first)."""
        data = next((f for f in (self.parquet_file, self.arrow_file, self.csv_file) if f.exists()), None)
        return [self.spec_file] + ([data] if data is not None else [])

    def read_json(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def write_json(self, path: Path, value: dict[str, Any]) -> None:
        """Write atomically: readers see the old or the new file, never half of one
        (the temporary file is the writer's own: a proxy and its worker both write
        the spec and error files)."""
        tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
        try:
            with writing(path):
                tmp.write_text(json.dumps(value, default=str))
                os.replace(tmp, path)
        except OSError:  # a full disk: leave no partial file taking space
            tmp.unlink(missing_ok=True)
            raise

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def load_table(job: JobDir) -> pa.Table:
    """The snapshot as an Arrow table: converts data.csv to data.parquet once."""
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    if job.parquet_file.exists():
        return pq.read_table(job.parquet_file)
    if job.arrow_file.exists():
        with ipc.open_file(job.arrow_file) as reader:
            return reader.read_all()
    spec = job.read_json(job.spec_file) or {}
    return convert_csv(job, spec["column_names"], spec["column_types"])


#: cells (rows x columns) per Parquet row group of a snapshot: the conversion holds
#: one row group at a time, and a cluster worker reads a partition by row groups
ROW_GROUP_CELLS = 1_000_000


#: CSV block sizes the conversion tries: small blocks keep Arrow's streaming reader
#: small (8 MB blocks peaked at ~170 MB of buffers, 1 MB at ~60 MB); a row longer than
#: a block (a huge text value) is read again with larger ones
CSV_BLOCK_SIZES = (1 << 20, 8 << 20, 64 << 20)


def convert_csv(job: JobDir, names: list[str], type_names: list[str], keep: float = 1.0) -> pa.Table:
    """data.csv -> data.parquet, streamed: memory holds one row group (ROW_GROUP_CELLS),
    a few CSV blocks and what is returned. CREATE MODEL does it while checking the
    data, so the worker reads Parquet. Returns the rows kept: all of them (`keep` 1),
    or a uniform sample, each row kept with probability `keep` (seeded: the same data
    gives the same sample), for a check whose memory must not grow with MAX_CELLS."""
    import pyarrow as pa

    for block_size in CSV_BLOCK_SIZES:
        try:
            kept = _convert(job, names, type_names, keep, block_size)
            break
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc) or block_size == CSV_BLOCK_SIZES[-1]:
                raise
    job.csv_file.unlink(missing_ok=True)
    return kept


def _convert(job: JobDir, names: list[str], type_names: list[str], keep: float, block_size: int) -> pa.Table:
    import numpy as np
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    types = {n: arrow_type(t) for n, t in zip(names, type_names)}
    # COPY's CSV: NULL is an empty unquoted field, "" an empty string.
    reader = pacsv.open_csv(
        job.csv_file,
        read_options=pacsv.ReadOptions(column_names=names, block_size=block_size),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False,
            null_values=[""], true_values=["1", "t"], false_values=["0", "f"]))
    schema = reader.schema
    group_rows = max(1024, ROW_GROUP_CELLS // max(1, len(names)))
    rng = np.random.default_rng(0)
    kept: list[pa.RecordBatch] = []
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    tmp = job.parquet_file.with_suffix(".parquet.tmp")
    with writing(job.parquet_file):
        try:
            with pq.ParquetWriter(tmp, schema) as writer:
                for batch in reader:
                    kept.append(batch if keep >= 1.0 else batch.filter(pa.array(rng.random(batch.num_rows) < keep)))
                    pending.append(batch)
                    pending_rows += batch.num_rows
                    while pending_rows >= group_rows:
                        table = pa.Table.from_batches(pending, schema)
                        writer.write_table(table.slice(0, group_rows))
                        rest = table.slice(group_rows)
                        pending, pending_rows = rest.to_batches(), rest.num_rows
                if pending_rows:
                    writer.write_table(pa.Table.from_batches(pending, schema))
            os.replace(tmp, job.parquet_file)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return pa.Table.from_batches(kept, schema)
