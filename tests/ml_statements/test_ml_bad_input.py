"""The bad-input corpus (bad_input.txt): SQLSTATE, message and cursor for each case."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from proxy.errors import PgError
from proxy.ml_statements import parse_ml_statement, parse_statements

CORPUS = Path(__file__).with_name("bad_input.txt")


class BadInput(NamedTuple):
    sql: str
    sqlstate: str
    position: int
    message: str
    line: int


def load_corpus(path: Path = CORPUS) -> list[BadInput]:
    cases: list[BadInput] = []
    header: tuple[str, int] | None = None
    body: list[str] = []

    def close() -> None:
        if header is None:
            return
        spec, line = header
        sql = "\n".join(body).rstrip("\n")
        state_and_position, message = spec.split(" | ", 1)
        sqlstate, where = state_and_position.split(" ", 1)
        if where == "end":
            position = len(sql) + 1
        elif where.startswith("@"):
            assert where[1:] in sql, f"line {line}: {where[1:]!r} not in statement"
            position = sql.index(where[1:]) + 1
        else:
            position = int(where)
        cases.append(BadInput(sql, sqlstate, position, message, line))

    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("=== "):
            close()
            header, body = (line[4:], number), []
        elif line.startswith("#"):
            continue
        elif header is not None:
            body.append(line)
    close()
    return cases


BAD_INPUT = load_corpus()


def test_corpus_is_substantial():
    assert len(BAD_INPUT) >= 50
    assert len({case.sql for case in BAD_INPUT}) == len(BAD_INPUT)


@pytest.mark.parametrize("case", BAD_INPUT, ids=lambda c: f"line{c.line}")
def test_bad_input(case: BadInput):
    with pytest.raises(PgError) as info:
        parse_ml_statement(case.sql)
    error = info.value
    assert (error.sqlstate, error.message, error.position) == (case.sqlstate, case.message, case.position)
    if error.sqlstate == "42601" and error.message.startswith("syntax error"):
        assert error.hint, "syntax errors say what was expected"


@pytest.mark.parametrize("case", BAD_INPUT[:10], ids=lambda c: f"line{c.line}")
def test_positions_shift_with_the_statement_offset(case: BadInput):
    prefix = "SELECT 'prefix; é'; "
    with pytest.raises(PgError) as info:
        parse_statements(prefix + case.sql)
    assert info.value.position == case.position + len(prefix)
