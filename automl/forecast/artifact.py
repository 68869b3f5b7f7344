"""A FORECAST model's artifact is its forecast: UTF-8 JSON, never a pickle.

    {"format": "mlproxy.forecast/1", "model": "AutoETS", "frequency": "M",
     "horizon": 6, "percentiles": ["0.1", "0.5", "0.9"], "columns": ["p10", "p50", "p90"],
     "rows": [["item1", "2021-01-01T00:00:00", 9.8, 10.4, 11.0], ...]}

`rows` holds one entry per item and future time step, ordered by item then time:
the item id as text, the time as ISO 8601 without zone, one float per column.  The
catalog's mlproxy.forecast() reads exactly this.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .search import Forecast

FORMAT = "mlproxy.forecast/1"


def encode(result: Forecast, frequency: str, horizon: int) -> tuple[bytes, str]:
    """The artifact bytes and their sha256 (hex)."""
    doc = {
        "format": FORMAT, "model": result.model, "frequency": frequency, "horizon": horizon,
        "percentiles": result.percentiles, "columns": result.columns,
        "rows": [[item, time.strftime("%Y-%m-%dT%H:%M:%S"), *values] for item, time, values in result.rows],
    }
    data = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    return data, hashlib.sha256(data).hexdigest()


def decode(data: bytes) -> dict[str, Any]:
    doc = json.loads(data)
    if doc.get("format") != FORMAT:
        raise ValueError(f"not a forecast artifact: format {doc.get('format')!r}")
    return doc
