"""The expected answer of a model function, computed offline.

The artifact is read straight from the upstream catalog and loaded with the compiler,
as a user's own program would; its inputs are the raw column values fetched straight
from Postgres (not through the proxy), typed as the function's arguments. Whatever
the proxy answers must equal what this predictor says for those values.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compiler.artifact import load
from compiler.predictor import Predictor, load_predictor

_INTEGERS = ("smallint", "integer", "bigint")
_FLOATS = ("double precision", "real", "numeric")


@dataclass
class Model:
    """A READY model, its SQL function and the offline predictor of its artifact."""

    name: str
    function: str
    arg_names: list[str]
    arg_types: list[str]
    return_type: str
    predictor: Predictor

    @classmethod
    def from_catalog(cls, direct, name: str, cache_dir: Path) -> "Model":
        row = direct.execute(
            "SELECT function_name, arg_names, arg_types, return_type, artifact, artifact_sha256 "
            "FROM mlproxy.models WHERE model_name = %s", (name,)).fetchone()
        function, names, types, returns, artifact, sha = row
        predictor = load_predictor(load(bytes(artifact), sha), cache_dir)
        return cls(name, function, list(names), list(types), returns, predictor)

    def call(self, *args: str, prob: bool = False) -> str:
        """The SQL text of a call: fn(arg, ...), the function's own names by default."""
        name = self.function + ("_prob" if prob else "")
        return f"{name}({', '.join(args or self.arg_names)})"

    def columns(self, rows: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
        """The predictor's input for rows of raw argument values (as psycopg returns
        them from Postgres), one array per argument, typed as the argument."""
        out = {}
        for i, (name, pg_type) in enumerate(zip(self.arg_names, self.arg_types)):
            out[name] = typed([row[i] for row in rows], pg_type)
        return out

    def predict(self, rows: Sequence[Sequence[Any]]) -> list[Any]:
        return [_plain(v) for v in self.predictor.predict(self.columns(rows))] if rows else []

    def proba(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        return self.predictor.predict_proba(self.columns(rows))

    def by_id(self, direct, sql: str) -> dict[Any, Any]:
        """id -> expected prediction for `sql`, a direct query returning the id and
        then the argument values."""
        rows = direct.execute(sql).fetchall()
        return dict(zip((r[0] for r in rows), self.predict([r[1:] for r in rows])))


def typed(values: list[Any], pg_type: str) -> np.ndarray:
    """Raw Postgres values as the predictor takes them: integers int64, floats and
    numerics float64 (NULL as NaN), dates datetime64, text and NULL-holding integer or
    boolean columns as objects (NULL as None)."""
    has_null = any(v is None for v in values)
    if pg_type.startswith(_INTEGERS) or pg_type == "boolean":
        dtype = np.int64 if pg_type != "boolean" else bool
        return np.array(values, dtype=object) if has_null else np.array(values, dtype=dtype)
    if pg_type.startswith(_FLOATS):
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    if pg_type in ("date", "timestamp without time zone"):
        return np.array(values, dtype="datetime64[us]")
    return np.array(values, dtype=object)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def parse_prob(value: Any) -> dict[str, Any]:
    """A `_prob` result: psycopg and asyncpg hand jsonb over as dict or text."""
    return json.loads(value) if isinstance(value, str) else value
