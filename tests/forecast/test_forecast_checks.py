"""CREATE MODEL ... MODEL_TYPE FORECAST through the proxy: the data's shape and
content are checked on the client's session (22023 at the clause) before anything
is exported or registered."""

from __future__ import annotations

import psycopg
import pytest

SETTINGS = "SETTINGS (S3_BUCKET 'b', HORIZON 2, FREQUENCY 'M')"


@pytest.fixture(scope="module")
def conn(proxy):
    with psycopg.connect(proxy.dsn(), autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS fc_sales")
        c.execute("""CREATE TABLE fc_sales AS
            SELECT 'item' || i AS item, (date '2020-01-01' + make_interval(months => m))::date AS month,
                   (10 + i + 3 * sin(m * pi() / 6))::numeric(10,2) AS qty, (m % 12)::int AS promo,
                   'x'::text AS note
              FROM generate_series(1, 3) i, generate_series(0, 11) m""")
        yield c


def create(conn, source: str, settings: str = SETTINGS, target: str = "qty") -> psycopg.errors.Error:
    sql = f"CREATE MODEL fc_m FROM {source} TARGET {target} IAM_ROLE default MODEL_TYPE FORECAST {settings}"
    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql)
    return sql, info.value


@pytest.mark.parametrize(("source", "target", "message"), [
    ("(SELECT item, qty, month FROM fc_sales)", "month", "not a timestamp"),
    ("(SELECT item, month, note FROM fc_sales)", "note", "TARGET column \"note\" of a FORECAST model is text"),
    ("(SELECT item, month, qty, note FROM fc_sales)", "qty", "related time series column \"note\""),
    ("(SELECT item, month FROM fc_sales)", "month", "at least three columns"),
    ("(SELECT item, month, qty FROM fc_sales WHERE false)", "qty", "is empty"),
    ("(SELECT item, month, qty FROM fc_sales UNION ALL SELECT 'item1', date '2020-03-01', 1)", "qty",
     "more than one row for an item and timestamp (item1, 2020-03-01)"),
    ("(SELECT item, CASE WHEN qty > 12 THEN month END, qty FROM fc_sales)", "qty", "NULL timestamp"),
])
def test_bad_data_is_refused_up_front(conn, source, target, message):
    sql, err = create(conn, source, target=target)
    assert err.sqlstate == "22023" and message in err.diag.message_primary, err.diag.message_primary
    assert conn.execute("SELECT count(*) FROM mlproxy.models WHERE model_name = 'fc_m'").fetchone()[0] == 0


def test_horizon_longer_than_history_allows(conn):
    sql, err = create(conn, "(SELECT item, month, qty, promo FROM fc_sales)", settings="SETTINGS (HORIZON 5, FREQUENCY 'M')")
    assert err.sqlstate == "22023" and "HORIZON 5 is too long" in err.diag.message_primary
    assert int(err.diag.statement_position) == sql.index("SETTINGS") + 1
    # 12 months: HORIZON 4 is the longest allowed; rows with a NULL target (related
    # series' future values) do not lengthen the history
    sql, err = create(conn, "(SELECT item, month, CASE WHEN month < date '2020-10-01' "
                            "THEN qty END AS qty, promo FROM fc_sales)", settings="SETTINGS (HORIZON 4, FREQUENCY 'M')")
    assert err.sqlstate == "22023" and "HORIZON 4 is too long" in err.diag.message_primary, err.diag.message_primary


def test_grammar_errors_keep_the_session(conn):
    sql, err = create(conn, "(SELECT item, month, qty, promo FROM fc_sales)", settings="SETTINGS (HORIZON 2, FREQUENCY 'fortnight')")
    assert err.sqlstate == "22023" and int(err.diag.statement_position) == sql.index("'fortnight'") + 1
    assert conn.execute("SELECT 1").fetchone() == (1,)
