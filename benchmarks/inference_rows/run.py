"""Row-batch codec benchmark: vectorized DataRowBatch vs a per-row Python codec.

Batches look like the reply to a rewritten `SELECT id, fn(...) FROM t`: the user's
`id`, the NULL placeholder, then the model's arguments as text columns. For each
batch size it times, in rows/second (best of --repeat runs):

  scan    finding the DataRow messages in the received bytes (scan_data_rows)
  parse   field positions of every column (DataRowBatch.from_buffer)
  decode  the argument columns to numpy (floats and text)
  encode  the predictions as float8 text (encode_values)
  splice  the outgoing rows (prediction in, arguments out)
  total   all of the above: what the proxy adds per batch
  copy    moving the batch's bytes unchanged (the pass-through floor, one memcpy)

Rates are rows per CPU-second of this process (best of --repeat rounds), so they
say what one core does even on a busy machine. The per-row column is a
straightforward Python codec (struct per field, float() per value, bytes joined per
row) doing the same work. Prints a table and writes JSON under benchmarks/results/.

    python -m benchmarks.inference_rows               # 1e3, 1e4, 1e5 rows; 2 float + 1 text
    python -m benchmarks.inference_rows --wide        # 10 float + 2 text features too
    python -m benchmarks.inference_rows --quick       # small sizes, one repeat
"""

from __future__ import annotations

import argparse
import json
import platform
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from proxy import protocol as p  # noqa: E402
from proxy.inference.pgvalues import encode_values  # noqa: E402
from proxy.inference.rows import DataRowBatch, scan_data_rows  # noqa: E402
from proxy.inference.small_batch import split_rows  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
USER_COLUMNS = 2  # id, placeholder
PLACEHOLDER = 1


def make_rows(n: int, n_float: int, n_text: int, seed: int = 0) -> bytes:
    """n DataRows: id, NULL placeholder, n_float float8 texts, n_text short texts
    (about 1% NULLs in every argument column)."""
    rng = np.random.default_rng(seed)
    floats = rng.standard_normal((n, n_float)) * 10.0 ** rng.integers(-2, 5, (n, n_float))
    plans = np.array(["basic", "standard", "premium", "enterprise", "trial-é"])
    texts = plans[rng.integers(0, len(plans), (n, n_text))]
    nulls = rng.random((n, n_float + n_text)) < 0.01
    rows = []
    for i in range(n):
        values: list[str | None] = [str(i), None]
        values += [None if nulls[i, j] else repr(float(floats[i, j])) for j in range(n_float)]
        values += [None if nulls[i, n_float + j] else str(texts[i, j]) for j in range(n_text)]
        rows.append(p.data_row(values))
    return b"".join(rows)


def predict(features: list[np.ndarray]) -> np.ndarray:
    """A stand-in model: the same for both codecs, cheap next to the codec."""
    return features[0] * 0.5 + 1.0


# -- the codec under test -------------------------------------------------------

def vectorized_stages(buf: bytes, n_float: int, n_text: int) -> dict[str, Callable[[], Any]]:
    offsets, _ = scan_data_rows(buf)
    batch = DataRowBatch.from_buffer(buf, offsets)
    float_cols = range(USER_COLUMNS, USER_COLUMNS + n_float)
    text_cols = range(USER_COLUMNS + n_float, USER_COLUMNS + n_float + n_text)

    indices = [*float_cols, *text_cols]
    kinds = ["float"] * n_float + ["text"] * n_text

    def decode(b: DataRowBatch = batch) -> list[np.ndarray]:
        return b.columns(indices, kinds)

    prediction = predict(decode())
    encoded = encode_values(prediction, "float8", 0)

    def total() -> bytes:
        offs, _ = scan_data_rows(buf)
        b = DataRowBatch.from_buffer(buf, offs)
        values = encode_values(predict(decode(b)), "float8", 0)
        return b.splice({PLACEHOLDER: values}, USER_COLUMNS)

    return {
        "scan": lambda: scan_data_rows(buf),
        "parse": lambda: DataRowBatch.from_buffer(buf, offsets),
        "decode": decode,
        "encode": lambda: encode_values(prediction, "float8", 0),
        "splice": lambda: batch.splice({PLACEHOLDER: encoded}, USER_COLUMNS),
        "total": total,
        "copy": lambda: bytearray(buf),
    }


# -- the per-row reference --------------------------------------------------------

_len = struct.Struct("!I")  # the per-row reference's length words


def per_row_fields(buf: bytes) -> list[list[bytes | None]]:
    """The fields of every DataRow, one row at a time in Python (what the proxy's
    small-batch path does)."""
    return split_rows(buf)


def per_row_stages(buf: bytes, n_float: int, n_text: int) -> dict[str, Callable[[], Any]]:
    float_cols = range(USER_COLUMNS, USER_COLUMNS + n_float)
    text_cols = range(USER_COLUMNS + n_float, USER_COLUMNS + n_float + n_text)
    rows = per_row_fields(buf)

    def decode(rows: list = rows) -> list[list]:
        out = [[float(r[c]) if r[c] is not None else float("nan") for r in rows] for c in float_cols]
        out += [[r[c].decode() if r[c] is not None else None for r in rows] for c in text_cols]
        return out

    prediction = [x * 0.5 + 1.0 for x in decode()[0]]

    def encode(values: list[float] = prediction) -> list[bytes | None]:
        return [None if v != v else repr(v).encode() for v in values]

    encoded = encode()

    def splice(rows: list = rows, encoded: list = encoded) -> bytes:
        out = []
        for fields, new in zip(rows, encoded):
            kept = fields[:USER_COLUMNS]
            kept[PLACEHOLDER] = new
            body = b"".join(b"\xff\xff\xff\xff" if f is None else _len.pack(len(f)) + f
                            for f in kept)
            out.append(b"D" + _len.pack(len(body) + 6) + b"\x00\x02" + body)
        return b"".join(out)

    def total() -> bytes:
        r = per_row_fields(buf)
        values = encode([x * 0.5 + 1.0 for x in decode(r)[0]])
        return splice(r, values)

    return {"scan": lambda: None, "parse": lambda: per_row_fields(buf), "decode": decode,
            "encode": encode, "splice": splice, "total": total, "copy": lambda: bytearray(buf)}


def best_time(fn: Callable[[], Any], repeat: int, min_time: float = 0.02) -> float:
    """Best per-call CPU time over `repeat` rounds of at least `min_time` each.

    CPU time of this process (all its threads), not wall time: on a shared machine
    wall time mostly measures the other processes, while the question asked here
    is how many rows one core gets through."""
    best = float("inf")
    for _ in range(repeat):
        calls, start = 0, time.process_time()
        while True:
            fn()
            calls += 1
            elapsed = time.process_time() - start
            if elapsed >= min_time:
                break
        best = min(best, elapsed / calls)
    return best


def run_case(n: int, n_float: int, n_text: int, repeat: int) -> list[dict[str, Any]]:
    buf = make_rows(n, n_float, n_text)
    vec, ref = vectorized_stages(buf, n_float, n_text), per_row_stages(buf, n_float, n_text)
    out_vec, out_ref = vec["total"](), ref["total"]()
    assert out_vec == out_ref, "vectorized and per-row codecs disagree"
    results = []
    for stage in vec:
        t_vec = best_time(vec[stage], repeat)
        t_ref = None if stage == "scan" else best_time(ref[stage], repeat)
        results.append({
            "rows": n, "float_columns": n_float, "text_columns": n_text,
            "batch_bytes": len(buf), "stage": stage,
            "vectorized_rows_per_s": n / t_vec,
            "per_row_rows_per_s": None if t_ref is None else n / t_ref,
            "speedup": None if t_ref is None else t_ref / t_vec,
        })
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"{'rows':>7} {'features':>9} {'stage':>7} {'vectorized':>13} {'per-row':>11} {'speedup':>8}")
    for r in results:
        ref = "-" if r["per_row_rows_per_s"] is None else f"{r['per_row_rows_per_s'] / 1e6:8.2f} M/s"
        speed = "-" if r["speedup"] is None else f"{r['speedup']:7.1f}x"
        features = f"{r['float_columns']}f+{r['text_columns']}t"
        print(f"{r['rows']:>7} {features:>9} {r['stage']:>7} "
              f"{r['vectorized_rows_per_s'] / 1e6:9.2f} M/s {ref:>11} {speed:>8}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--wide", action="store_true", help="also 10 float + 2 text features")
    ap.add_argument("--quick", action="store_true", help="sizes 1e3 and 1e4, one repeat")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON file (default: benchmarks/results/inference_rows.json)")
    args = ap.parse_args(argv)
    sizes, repeat = ([1_000, 10_000], 1) if args.quick else (args.sizes, args.repeat)
    shapes = [(2, 1)] + ([(10, 2)] if args.wide else [])
    results = []
    for n_float, n_text in shapes:
        for n in sizes:
            results.extend(run_case(n, n_float, n_text, repeat))
    print_table(results)
    out = args.out or RESULTS / ("inference_rows-quick.json" if args.quick else "inference_rows.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": sys.version.split()[0], "numpy": np.__version__,
            "machine": platform.machine(), "processor": platform.processor()}
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0
