"""The snapshot's Parquet file (proxy/training/snapshot.py): COPY's CSV is converted
streaming, in row groups a cluster's workers read as partitions, and the rows the
proxy keeps in memory for its check are all of them or a bounded uniform sample."""

from __future__ import annotations

import math

import pyarrow.parquet as pq

from proxy.training.snapshot import JobDir, convert_csv

NAMES = ["n", "x", "flag", "word"]
TYPES = ["integer", "double precision", "boolean", "text"]


def _csv(job: JobDir, rows: int) -> list[tuple]:
    """COPY's CSV: NULL unquoted empty, "" an empty string, a newline quoted."""
    job.path.mkdir(parents=True, exist_ok=True)
    expected, lines = [], []
    for i in range(rows):
        x = None if i % 7 == 0 else i / 4
        word = ["plain", "", "two\nlines", None][i % 4]
        expected.append((i, x, i % 3 == 0, word))
        fields = [str(i), "" if x is None else repr(x), "1" if i % 3 == 0 else "0",
                  "" if word is None else '"' + word.replace('"', '""') + '"']
        lines.append(",".join(fields))
    job.csv_file.write_text("\n".join(lines) + "\n")
    return expected


def test_the_csv_becomes_parquet_in_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr("proxy.training.snapshot.ROW_GROUP_CELLS", 1024 * len(NAMES))  # 1024 rows a group
    job = JobDir(tmp_path / "job")
    expected = _csv(job, 5000)
    kept = convert_csv(job, NAMES, TYPES)
    assert not job.csv_file.exists()
    meta = pq.read_metadata(job.parquet_file)
    assert meta.num_rows == 5000 and meta.num_row_groups == math.ceil(5000 / 1024)
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups - 1)] == [1024] * 4
    table = pq.read_table(job.parquet_file)
    assert table.equals(kept)
    assert list(zip(*(table.column(c).to_pylist() for c in NAMES))) == expected


def test_the_check_keeps_a_bounded_uniform_sample(tmp_path, monkeypatch):
    monkeypatch.setattr("proxy.training.snapshot.ROW_GROUP_CELLS", 4096 * len(NAMES))
    samples = []
    for run in range(2):
        job = JobDir(tmp_path / f"job{run}")
        _csv(job, 20_000)
        samples.append(convert_csv(job, NAMES, TYPES, keep=0.1))
        assert pq.read_metadata(job.parquet_file).num_rows == 20_000  # the snapshot has every row
    sample = samples[0]
    assert 1700 < sample.num_rows < 2300
    ns = sample.column("n").to_pylist()
    assert ns == sorted(ns) and max(ns) > 18_000 and min(ns) < 2_000  # spread over the whole table
    assert samples[1].equals(sample)  # seeded: the same data gives the same sample


def test_a_value_longer_than_a_csv_block_is_read_with_larger_blocks(tmp_path):
    job = JobDir(tmp_path / "job")
    job.path.mkdir()
    long = "x" * (3 << 20)  # longer than the first block size (1 MB)
    job.csv_file.write_text(f'1,0.5,1,"{long}"\n2,,0,short\n')
    table = convert_csv(job, NAMES, TYPES)
    assert table.column("word").to_pylist() == [long, "short"]
    assert pq.read_table(job.parquet_file).equals(table)
