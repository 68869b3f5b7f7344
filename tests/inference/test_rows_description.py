"""RowDescription parsing and rewriting (appended argument columns cut off)."""

from __future__ import annotations

import pytest

from proxy import protocol as p
from proxy.inference.rowdesc import (FieldDescription, build_row_description,
                                     parse_row_description, rewrite_row_description)

FIELDS = [
    FieldDescription(b"id", 16384, 1, 23, 4, -1, 1),
    FieldDescription("prédiction".encode(), 0, 0, 701, 8, -1, 0),
    FieldDescription(b"__mlproxy_0_0", 0, 0, 701, 8, -1, 0),
    FieldDescription(b"__mlproxy_0_1", 0, 0, 25, -1, -1, 0),
]


def test_round_trip_of_the_fields():
    raw = build_row_description(FIELDS)
    assert parse_row_description(raw) == FIELDS
    assert build_row_description(FIELDS[:0]) == p.message(b"T", b"\x00\x00")


def test_protocol_builder_agrees():
    raw = p.row_description([("a", 25), ("b", 701)])
    assert [(f.name, f.type_oid, f.format) for f in parse_row_description(raw)] == \
        [(b"a", 25, 0), (b"b", 701, 0)]


def test_appended_columns_are_dropped():
    raw = build_row_description(FIELDS)
    assert parse_row_description(rewrite_row_description(raw, 2)) == FIELDS[:2]
    assert rewrite_row_description(raw, 4) == raw
    assert rewrite_row_description(raw, 0) == p.message(b"T", b"\x00\x00")


@pytest.mark.parametrize("formats, expect", [([], [1, 0]), ([1], [1, 1]), ([0, 1], [0, 1])])
def test_format_codes(formats, expect):
    raw = build_row_description(FIELDS)
    fields = parse_row_description(rewrite_row_description(raw, 2, formats))
    assert [f.format for f in fields] == expect


def test_bad_input():
    raw = build_row_description(FIELDS)
    with pytest.raises(ValueError):
        rewrite_row_description(raw, 5)
    with pytest.raises(ValueError):
        rewrite_row_description(raw, 2, [0, 0, 0])
    with pytest.raises(ValueError):
        parse_row_description(p.command_complete("SELECT 1"))
    with pytest.raises(ValueError):
        parse_row_description(raw + b"\x00")
