"""Spans and positions: rewritten text keeps the client's, and maps back to it."""

from __future__ import annotations

from pglast import parse_sql

from proxy.inference.rewrite.syntax import TokenList
from proxy.inference.rewrite.text import Copy, Insert, Param, assemble

from .harness import plan


def test_locations_are_character_offsets():
    """pglast reports str indexes (not UTF-8 byte offsets), even past astral characters."""
    sql = "SELECT 'é€😀' AS \"ü\", predict_score(1)"
    call = parse_sql(sql)[0].stmt.targetList[1].val
    assert call.location == sql.index("predict_score")
    tokens = TokenList(sql)
    assert tokens[tokens.index_at(call.location)].text == "predict_score"


def test_map_position_through_copies_and_inserts():
    source = "SELECT f(x) FROM t WHERE y = $2"
    text = assemble(source, [Copy(0, 7), Insert("(CASE WHEN false THEN ", 7), Copy(7, 11), Insert(" END)", 7),
                             Copy(11, 29), Param(2, 29, 31)], renumber=True)
    assert text.text == "SELECT (CASE WHEN false THEN f(x) END) FROM t WHERE y = $1"
    assert text.params == (2,)
    assert text.map_position(1) == 1
    assert text.map_position(text.text.index("f(x)") + 1) == 8  # the call, copied
    assert text.map_position(text.text.index("CASE") + 1) == 8  # inserted text: its anchor
    assert text.map_position(text.text.index("FROM") + 1) == source.index("FROM") + 1
    assert text.map_position(text.text.index("$1") + 1) == source.index("$2") + 1
    assert text.map_position(len(text.text) + 1) == len(source) + 1


def test_non_ascii_before_the_call():
    sql = "SELECT 'é€😀' AS \"ü\", predict_score(score) FROM customers WHERE id > 1"
    streaming, general = plan(sql), plan(sql + " ORDER BY 2")
    for p, text in ((streaming, streaming.sql), (general, general.steps[0].input)):
        out = text.text
        assert text.map_position(out.index("predict_score(score)") + 1) == sql.index("predict_score") + 1
        assert text.map_position(out.index("id > 1") + 1) == sql.index("id > 1") + 1


def test_comments_and_odd_spacing_survive():
    sql = "SELECT id, predict_churn /* c1 */ (\n  age -- c2\n , plan)\tAS p FROM customers"
    p = plan(sql)
    assert "predict_churn /* c1 */ (\n  age -- c2\n , plan)" in p.sql.text
    parse_sql(p.sql.text)
    q = plan(sql + " ORDER BY p")
    parse_sql(q.sql.text)
    parse_sql(q.steps[0].input.text)
    assert "-- c2\n" in q.steps[0].input.text


def test_trailing_semicolon_and_whitespace():
    p = plan("  SELECT predict_score(score) FROM customers ;  ")
    assert p.sql.text.startswith("  SELECT (CASE")
    parse_sql(p.sql.text)


def test_unaliased_calls_keep_their_column_name_on_the_general_path():
    p = plan("SELECT predict_score(count(*))::int, predict_score(1) FROM customers ORDER BY 1")
    assert "AS predict_score" in p.sql.text
    assert p.sql.text.count("_lookup(") == 1  # count(*) is evaluated outside any sub-query
