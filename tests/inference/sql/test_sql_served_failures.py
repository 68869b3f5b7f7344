"""A general-path execution served with its Parse (Parse/Bind/Execute/Sync in one
write, as drivers send a statement they do not prepare) that fails after the
statement parsed: a parameter value Postgres refuses, an error at planning. Postgres
makes the statement, answers its ParseComplete, then fails the Bind; so must the
proxy, and the statement must be there afterwards, for a Describe or a Bind of the
unnamed statement, inside a block or after it. A statement Postgres refuses gets no
ParseComplete.

Where Postgres can answer the same writes (a Describe; the errors) the answers are
compared with its own (its model functions are stubs that refuse to run); where it
cannot (an execution), with the offline predictor."""

from __future__ import annotations

import pytest

from tests.proxy.test_conformance import SYNC, bind, describe, execute, parse, query
from tests.proxy.test_malformed import errors_of

from .test_sql_malformed import ALIVE, GENERAL, side_by_side, via_proxy

REFUSED = parse(GENERAL) + bind((b"abc",)) + execute() + SYNC  # $1 is compared with an integer
AT_PLANNING = parse(GENERAL.replace("id = $1", "id = 10 / $1::int")) + bind((b"0",)) + execute() + SYNC
# two steps: the inner call's predictions, then the outer's; the first fails
NESTED = parse(GENERAL.replace("predict_price(rooms, area, city)",
                               "predict_price(rooms, predict_price(rooms, area, city), city)")) \
    + bind((b"abc",)) + execute() + SYNC
NOT_PARSED = parse(GENERAL.replace("area, city", "area")) + bind((b"abc",)) + execute() + SYNC
# (a simple Query would drop the unnamed statement: ROLLBACK goes as a named one)
ROLLBACK = parse("ROLLBACK", "rollback") + bind(stmt="rollback") + execute() + SYNC


def kinds(replies: list[list]) -> list[list[bytes]]:
    return [[r[0] for r in per_write] for per_write in replies]


@pytest.mark.parametrize("failing, sqlstate", [(REFUSED, "22P02"), (AT_PLANNING, "22012"), (NESTED, "22P02")],
                         ids=["value_refused", "at_planning", "nested"])
def test_parse_complete_before_the_bind_error_like_postgres(failing, sqlstate, suite, upstream):
    """ParseComplete, the error, ReadyForQuery; then a Describe of the statement
    answers as Postgres's (the proxy sends the Parse it kept, with the parameter
    types the input queries give)."""
    got, _ = side_by_side(suite, upstream, [failing, describe(b"S") + SYNC, ALIVE])
    assert kinds(got)[:2] == [[b"1", b"E", b"Z"], [b"t", b"T", b"Z"]]
    assert errors_of(got[0])[0][1] == sqlstate


def test_a_statement_postgres_refuses_gets_no_parse_complete(suite, upstream):
    got, _ = side_by_side(suite, upstream, [NOT_PARSED, describe(b"S") + SYNC, ALIVE])
    assert kinds(got)[:2] == [[b"E", b"Z"], [b"E", b"Z"]]
    assert [e[1] for e in errors_of(got[0] + got[1])] == ["42883", "26000"]


def test_in_a_block_the_statement_stays_past_the_rollback(suite, upstream):
    """The failed Bind aborts the block: a Describe of the statement gets 25P02, as
    on Postgres; after ROLLBACK it describes it."""
    writes = [query("BEGIN"), REFUSED, describe(b"S") + SYNC, ROLLBACK, describe(b"S") + SYNC]
    got, _ = side_by_side(suite, upstream, writes)
    assert kinds(got) == [[b"C", b"Z"], [b"1", b"E", b"Z"], [b"E", b"Z"], [b"1", b"2", b"C", b"Z"],
                          [b"t", b"T", b"Z"]]
    assert [e[1] for e in errors_of(got[1] + got[2])] == ["22P02", "25P02"]


@pytest.mark.parametrize("shape", ["implicit", "one_write", "block"])
def test_the_next_bind_runs_the_statement_that_failed(shape, suite):
    """The unnamed statement is the one whose Bind failed, not the one before it:
    earlier, another statement was served under the same (unnamed) name."""
    earlier = parse(GENERAL.replace("> 0", "< 0")) + bind((b"2",)) + execute() + SYNC  # no row
    run = bind((b"2",)) + execute() + SYNC
    writes = [earlier, REFUSED, run, ALIVE]
    expect = [4, 3, 4, 4]
    if shape == "one_write":
        replies = via_proxy(suite, [earlier + REFUSED + run, ALIVE], [11, 4])
        assert kinds(replies) == [[b"1", b"2", b"C", b"Z", b"1", b"E", b"Z", b"2", b"D", b"C", b"Z"],
                                  [b"T", b"D", b"C", b"Z"]]
        return
    in_block = shape == "block"
    if in_block:
        writes = [query("BEGIN"), earlier, REFUSED, run, ROLLBACK, run, ALIVE]
        expect = [2, 4, 3, 2, 4, 4, 4]
    replies = via_proxy(suite, writes, expect)
    assert kinds(replies)[-2:] == [[b"2", b"D", b"C", b"Z"], [b"T", b"D", b"C", b"Z"]]
    assert replies[-2][1][1][2:] == b"\x00\x00\x00\x012"  # house 2: its prediction is > 0
    if in_block:
        assert kinds(replies)[1:5] == [[b"1", b"2", b"C", b"Z"], [b"1", b"E", b"Z"], [b"E", b"Z"],
                                       [b"1", b"2", b"C", b"Z"]]
        assert [e[1] for e in errors_of(replies[2] + replies[3])] == ["22P02", "25P02"]
