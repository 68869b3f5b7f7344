"""What a report shows, read as the user: the catalog's own view and SHOW MODEL.

The report connects with the user's credentials (through the proxy or straight to
Postgres) and reads only `mlproxy.visible_models` and `mlproxy.show_model`, so it
sees exactly what that role may see: a model it may not see is the catalog's 42501,
one that does not exist 42704, and owner-only columns stay blank for others.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import asyncpg

_PART = re.compile(r'"((?:[^"]|"")+)"|([^".\s]+)')


class ReportError(Exception):
    """A failure to report to the user as it is (a Postgres error, a bad name)."""

    def __init__(self, message: str, sqlstate: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.hint = hint

    def __str__(self) -> str:
        text = f"ERROR {self.sqlstate}: {self.message}" if self.sqlstate else self.message
        return text + (f"\nHINT: {self.hint}" if self.hint else "")


def parse_model_name(text: str) -> tuple[str | None, str]:
    """`schema.model` or `model` as SQL spells it: unquoted parts fold to lower case,
    "quoted" parts keep theirs (with "" for a quote)."""
    parts: list[str] = []
    pos = 0
    text = text.strip()
    while True:
        m = _PART.match(text, pos)
        if not m:
            raise ReportError(f"invalid model name: {text!r}", "42601")
        parts.append(m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2).lower())
        pos = m.end()
        if pos == len(text):
            break
        if text[pos] != "." or len(parts) == 2:
            raise ReportError(f"invalid model name: {text!r} (expected schema.model)", "42601")
        pos += 1
    return (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])


@dataclass
class ModelData:
    """One model as the connected role sees it."""

    schema: str | None
    name: str
    row: dict[str, Any]                     # mlproxy.visible_models, jsonb columns decoded
    settings: list[tuple[str, str | None]]  # SHOW MODEL's Key/Value rows, in order
    user: str = ""
    database: str = ""
    details: dict[str, Any] = field(init=False)
    evaluation: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        details = self.row.get("details")
        self.details = details if isinstance(details, dict) else {}
        evaluation = self.details.get("evaluation")
        self.evaluation = evaluation if isinstance(evaluation, dict) else {}

    @property
    def state(self) -> str:
        return str(self.row.get("state") or "")

    @property
    def title(self) -> str:
        return f"{self.row.get('schema_name') or self.schema}.{self.row.get('model_name') or self.name}"


async def load_model(dsn: str | None, schema: str | None, name: str) -> ModelData:
    """Read the model through the user's own connection (PG* variables apply when
    `dsn` is None); a Postgres error becomes a ReportError with its SQLSTATE."""
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.PostgresError as exc:
        raise _as_report_error(exc) from None
    except (OSError, asyncpg.exceptions.InterfaceError, ValueError) as exc:
        raise ReportError(f"could not connect: {exc}", "08001") from None
    try:
        model_id = await conn.fetchval("SELECT mlproxy.visible_model_id($1, $2)", schema, name)
        row = await conn.fetchval(
            "SELECT pg_catalog.to_jsonb(v) FROM mlproxy.visible_models v WHERE v.id = $1", model_id)
        settings = await conn.fetch('SELECT "Key", "Value" FROM mlproxy.show_model($1, $2)', schema, name)
        who = await conn.fetchrow("SELECT current_user AS u, current_database() AS d")
    except asyncpg.UndefinedFunctionError:
        raise ReportError("this database has no mlproxy model catalog (mlproxy.visible_models)",
                          "42883", "connect to the database the models were created in") from None
    except asyncpg.PostgresError as exc:
        raise _as_report_error(exc) from None
    finally:
        await conn.close()
    if row is None:  # the model went away between the two statements
        raise ReportError(f'model "{name}" does not exist', "42704")
    return ModelData(schema, name, json.loads(row), [(r["Key"], r["Value"]) for r in settings],
                     user=who["u"], database=who["d"])


def _as_report_error(exc: asyncpg.PostgresError) -> ReportError:
    return ReportError(getattr(exc, "message", None) or str(exc), getattr(exc, "sqlstate", None),
                       getattr(exc, "hint", None))
