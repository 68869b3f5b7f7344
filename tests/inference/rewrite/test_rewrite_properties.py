"""Property tests: spelling does not change the plan's shape; nothing but PgError escapes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pglast import parse_sql
from pglast.parser import scan

from proxy.errors import PgError
from proxy.inference.rewrite import ExplainPlan, GeneralPlan, StreamingPlan

from .harness import plan
from .test_rewrite_general import CASES, DML
from .test_rewrite_streaming import CASES as STREAMING

TEMPLATES = [c[0] for c in STREAMING] + [c[0] for c in CASES] + [c[0] for c in DML] + [
    "EXPLAIN ANALYZE SELECT id FROM customers WHERE predict_score(score) > 1",
    "COPY (SELECT predict_score(score) FROM customers) TO STDOUT",
]
SEPARATORS = st.sampled_from([" ", "  ", "\n", "\t", " /* c */ ", " /* ü * / */ ", " -- note\n", "\n\t "])
ALLOWED_STATES = {"0A000", "42809"}


def respell(sql: str, draw) -> str:
    """The same statement with other whitespace, comments and letter case between tokens."""
    out, previous = [], None
    for token in scan(sql):
        text = sql[token.start : token.end + 1]
        if token.kind != "NO_KEYWORD" or (token.name == "IDENT" and not text.startswith('"')):
            text = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in text)
        if previous is not None:
            out.append(draw(SEPARATORS))
        out.append(text)
        previous = token
    return "".join(out)


def texts(p) -> list[str]:
    found = [p.sql.text]
    inner = p.inner if isinstance(p, ExplainPlan) else p
    if isinstance(inner, GeneralPlan):
        found += [s.input.text for s in inner.steps] + [s.probe.text for s in inner.steps]
    return found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TEMPLATES), st.data())
def test_spelling_does_not_change_the_plan(template, data):
    canonical = plan(template)
    sql = respell(template, data.draw)
    p = plan(sql)
    assert type(p) is type(canonical)
    if isinstance(p, GeneralPlan):
        assert [s.calls for s in p.steps] == [s.calls for s in canonical.steps]
    if isinstance(p, StreamingPlan):
        assert [(c.column, [a.index for a in c.args]) for c in p.calls] == \
            [(c.column, [a.index for a in c.args]) for c in canonical.calls]
    for text in texts(p):
        parse_sql(text)
    # every output position maps into the client's text, copied characters to themselves
    out = p.sql
    for position in range(1, len(out.text) + 2):
        mapped = out.map_position(position)
        assert 1 <= mapped <= len(sql) + 1
    for start, length, source, copied in out.segments:
        if copied:
            assert out.text[start : start + length] == sql[source : source + length]


VOCABULARY = st.sampled_from([
    "SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "HAVING", "UNION", "JOIN", "ON", "AND", "OR", "NOT",
    "WITH", "AS", "(", ")", ",", "*", "=", ">", "1", "'x'", "$1", "customers", "orders", "c", "id", "age", "score",
    "predict_score(", "predict_churn(", "mlrw.predict_score(", "count(*)", "EXISTS", "IN", "LATERAL", "VALUES",
    "INSERT INTO audit", "UPDATE customers SET score =", "DELETE FROM", "RETURNING", "DISTINCT", "OVER (", ";",
    "LIMIT", "CASE WHEN", "THEN", "END", "::int", "random()", "generate_series(1, 2)", "EXPLAIN", "--", "/*", "*/",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(VOCABULARY, max_size=25))
def test_arbitrary_text_gives_a_plan_none_or_pg_error(words):
    sql = " ".join(words)
    try:
        p = plan(sql)
    except PgError as e:
        assert e.sqlstate in ALLOWED_STATES, e
        assert e.message.startswith("mlproxy: ") or e.sqlstate == "42809"
        return
    if p is not None:
        for text in texts(p):
            parse_sql(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_unicode_text(sql):
    try:
        plan(sql + " predict_score(1)")
        plan("SELECT " + sql)
    except PgError as e:
        assert e.sqlstate in ALLOWED_STATES, e
